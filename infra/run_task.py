"""Run one of the stack's job tasks on ECS, wait for it, and exit with its container's code.

``python -m infra.run_task --task migrate`` (the stack output ``jobs`` in ``PRICEBOT_JOBS``, as
``pulumi stack output jobs --json`` prints it). The deploy workflow runs the migration and the
bootstrap this way: the task runs inside the VPC on the task definition's newest revision (the
family name, not a pinned ARN, so a ``pulumi up --target`` that just registered a new revision is
what runs), in the app subnets without a public IP; the workflow fails when the container exits
non-zero, stops for another reason, or outlives the timeout (then it is stopped). The end of the
task's log is printed either way, so a failed migration shows its error in the run.

Words after ``--`` replace the container's command (a RunTask override), for the task that
declares none: ``python -m infra.run_task --task training -- promote --symbol BTCUSDT
--version 3 --reason "..."`` runs an operator's command on the job image, inside the VPC, as the
training role.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

JOBS_ENV = "PRICEBOT_JOBS"
LOG_LINES = 60


@dataclass(frozen=True)
class TaskOutcome:
    task_arn: str
    exit_code: int | None
    stopped_reason: str
    log: list[str]

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1]


def start(
    ecs: Any, jobs: dict, task: str, *, started_by: str, command: Sequence[str] | None = None
) -> str:
    """Start the task (with ``command`` instead of its own, if given); returns its ARN (or
    raises with ECS's reasons)."""
    spec = jobs["tasks"][task]
    extra: dict[str, Any] = {}
    if command:
        extra["overrides"] = {
            "containerOverrides": [{"name": spec["container"], "command": list(command)}]
        }
    answer = ecs.run_task(
        cluster=jobs["cluster"],
        taskDefinition=spec["taskDefinition"],
        launchType="FARGATE",
        count=1,
        startedBy=started_by[:36],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": jobs["subnets"],
                "securityGroups": jobs["securityGroups"],
                "assignPublicIp": "DISABLED",
            }
        },
        **extra,
    )
    if answer.get("failures") or not answer.get("tasks"):
        raise RuntimeError(f"ECS did not start {task}: {answer.get('failures')}")
    return answer["tasks"][0]["taskArn"]


def wait(
    ecs: Any,
    cluster: str,
    task_arn: str,
    *,
    timeout: float,
    poll: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Poll until the task has stopped; stop it and raise TimeoutError past ``timeout``."""
    deadline = clock() + timeout
    while True:
        [described] = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"]
        if described["lastStatus"] == "STOPPED":
            return described
        if clock() >= deadline:
            ecs.stop_task(cluster=cluster, task=task_arn, reason="deploy timeout")
            raise TimeoutError(f"{task_arn} still {described['lastStatus']} after {timeout:.0f} s")
        sleep(poll)


def log_tail(logs: Any, family: str, container: str, task_arn: str) -> list[str]:
    """The last lines the container wrote (awslogs: group /ecs/<family>, stream
    <prefix>/<container>/<task id>, the stack's prefix being the container's name)."""
    try:
        events = logs.get_log_events(
            logGroupName=f"/ecs/{family}",
            logStreamName=f"{container}/{container}/{task_id(task_arn)}",
            limit=LOG_LINES,
            startFromHead=False,
        )["events"]
    except Exception as exc:  # the log may not exist: a task that never started
        return [f"(no log: {type(exc).__name__}: {exc})"]
    return [event["message"].rstrip() for event in events]


def run(
    ecs: Any,
    logs: Any,
    jobs: dict,
    task: str,
    *,
    started_by: str,
    timeout: float,
    command: Sequence[str] | None = None,
    poll: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
) -> TaskOutcome:
    spec = jobs["tasks"][task]
    arn = start(ecs, jobs, task, started_by=started_by, command=command)
    print(f"started {task}: {arn}", flush=True)
    try:
        stopped = wait(ecs, jobs["cluster"], arn, timeout=timeout, poll=poll, sleep=sleep)
        reason = stopped.get("stoppedReason", "")
        container = next(
            (c for c in stopped.get("containers", []) if c.get("name") == spec["container"]), {}
        )
        code = container.get("exitCode")
        reason = container.get("reason") or reason
    except TimeoutError as exc:
        code, reason = None, str(exc)
    return TaskOutcome(
        arn, code, reason, log_tail(logs, spec["taskDefinition"], spec["container"], arn)
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], usage="%(prog)s --task TASK [...] [-- COMMAND...]"
    )
    parser.add_argument(
        "--task", required=True, help="migrate, bootstrap, training, score or predict"
    )
    parser.add_argument("--timeout-minutes", type=float, default=30.0)
    parser.add_argument(
        "--started-by", default=f"deploy-{os.environ.get('GITHUB_RUN_ID', 'local')}"
    )
    args = parser.parse_args(argv)
    raw = os.environ.get(JOBS_ENV, "")
    if not raw:
        print(f"::error::{JOBS_ENV} is empty: pass the stack output `jobs`", file=sys.stderr)
        return 2
    jobs = json.loads(raw)
    if args.task in jobs["tasks"] and not command and not jobs["tasks"][args.task]["command"]:
        print(
            f"::error::the {args.task} task declares no command: give one after --",
            file=sys.stderr,
        )
        return 2
    if args.task not in jobs["tasks"]:
        print(
            f"::error::the stack has no task {args.task!r}: {sorted(jobs['tasks'])}",
            file=sys.stderr,
        )
        return 2
    import boto3

    outcome = run(
        boto3.client("ecs"), boto3.client("logs"), jobs, args.task,
        started_by=args.started_by, timeout=args.timeout_minutes * 60, command=command or None,
    )  # fmt: skip
    print(f"--- the end of {args.task}'s log ---")
    print("\n".join(outcome.log))
    if not outcome.succeeded:
        why = f"exit code {outcome.exit_code} ({outcome.stopped_reason})"
        print(f"::error::{args.task} failed: {why}", file=sys.stderr)
        return 1
    print(f"{args.task} succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
