"""The deploy's task runner against stand-ins for ECS and CloudWatch Logs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import run_task

JOBS = {
    "cluster": "pricebot-test",
    "subnets": ["subnet-a", "subnet-b"],
    "securityGroups": ["sg-jobs"],
    "tasks": {
        "migrate": {"taskDefinition": "pricebot-test-migrate", "container": "migrate",
                    "command": ["db", "upgrade"]},
        "training": {"taskDefinition": "pricebot-test-training", "container": "training",
                     "command": None},
    },
}  # fmt: skip
ARN = "arn:aws:ecs:eu-west-1:123456789012:task/pricebot-test/0123abcd"


class FakeEcs:
    """Answers like ECS: the task runs for ``polls`` describes, then stops with ``exit_code``."""

    def __init__(self, *, exit_code: int | None = 0, polls: int = 2, failures: list | None = None):
        self.exit_code, self.polls, self.failures = exit_code, polls, failures or []
        self.calls: list[tuple[str, dict]] = []

    def run_task(self, **kwargs: Any) -> dict:
        self.calls.append(("run_task", kwargs))
        if self.failures:
            return {"tasks": [], "failures": self.failures}
        return {"tasks": [{"taskArn": ARN}], "failures": []}

    def describe_tasks(self, **kwargs: Any) -> dict:
        self.calls.append(("describe_tasks", kwargs))
        self.polls -= 1
        if self.polls > 0:
            return {"tasks": [{"taskArn": ARN, "lastStatus": "RUNNING"}]}
        container = {"name": "migrate"}
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        return {"tasks": [{"taskArn": ARN, "lastStatus": "STOPPED",
                           "stoppedReason": "Essential container in task exited",
                           "containers": [container]}]}  # fmt: skip

    def stop_task(self, **kwargs: Any) -> dict:
        self.calls.append(("stop_task", kwargs))
        return {}


class FakeLogs:
    def __init__(self) -> None:
        self.asked: dict = {}

    def get_log_events(self, **kwargs: Any) -> dict:
        self.asked = kwargs
        return {"events": [{"message": "INFO  [alembic] Running upgrade 0001 -> 0004\n"}]}


def run(ecs: FakeEcs, logs: FakeLogs | None = None, timeout: float = 60) -> run_task.TaskOutcome:
    return run_task.run(
        ecs, logs or FakeLogs(), JOBS, "migrate", started_by="deploy-1", timeout=timeout,
        poll=0, sleep=lambda _: None,
    )  # fmt: skip


def test_the_task_runs_privately_on_the_familys_newest_revision() -> None:
    ecs = FakeEcs()
    run(ecs)
    [(_, started)] = [c for c in ecs.calls if c[0] == "run_task"]
    assert started["taskDefinition"] == "pricebot-test-migrate"  # the family: newest revision
    assert started["cluster"] == "pricebot-test"
    assert started["launchType"] == "FARGATE"
    assert started["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": ["subnet-a", "subnet-b"], "securityGroups": ["sg-jobs"],
        "assignPublicIp": "DISABLED",
    }  # fmt: skip


def test_a_zero_exit_succeeds_and_the_log_tail_is_kept() -> None:
    logs = FakeLogs()
    outcome = run(FakeEcs(exit_code=0), logs)
    assert outcome.succeeded
    assert outcome.log == ["INFO  [alembic] Running upgrade 0001 -> 0004"]
    assert logs.asked["logGroupName"] == "/ecs/pricebot-test-migrate"
    assert logs.asked["logStreamName"] == "migrate/migrate/0123abcd"


@pytest.mark.parametrize("code", [1, None])
def test_a_failed_or_never_started_container_fails(code: int | None) -> None:
    outcome = run(FakeEcs(exit_code=code))
    assert not outcome.succeeded
    assert outcome.exit_code == code


def test_a_task_past_its_timeout_is_stopped_and_fails() -> None:
    ecs = FakeEcs(polls=10**9)
    outcome = run(ecs, timeout=0)
    assert not outcome.succeeded
    assert "still RUNNING" in outcome.stopped_reason
    assert [c[0] for c in ecs.calls].count("stop_task") == 1


def test_a_task_ecs_refuses_to_start_raises_its_reasons() -> None:
    with pytest.raises(RuntimeError, match="RESOURCE:MEMORY"):
        run(FakeEcs(failures=[{"reason": "RESOURCE:MEMORY"}]))


def test_the_command_line_refuses_an_unknown_task(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(run_task.JOBS_ENV, json.dumps(JOBS))
    assert run_task.main(["--task", "seed"]) == 2
    assert "the stack has no task 'seed'" in capsys.readouterr().err


def test_a_command_after_the_options_overrides_the_containers() -> None:
    # Given an operator's command for the task that declares none (the training task)
    ecs = FakeEcs()
    command = ["promote", "--symbol", "BTCUSDT", "--version", "3", "--reason", "by hand"]

    # When it is run
    run_task.run(ecs, FakeLogs(), JOBS, "training", started_by="me", timeout=60,
                 command=command, poll=0, sleep=lambda _: None)  # fmt: skip

    # Then ECS is asked to run the training container with that command instead
    [(_, started)] = [c for c in ecs.calls if c[0] == "run_task"]
    assert started["taskDefinition"] == "pricebot-test-training"
    assert started["overrides"] == {
        "containerOverrides": [{"name": "training", "command": command}]
    }


def test_a_task_run_without_a_command_keeps_its_own() -> None:
    ecs = FakeEcs()
    run(ecs)
    [(_, started)] = [c for c in ecs.calls if c[0] == "run_task"]
    assert "overrides" not in started


def test_the_command_line_refuses_the_training_task_without_a_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(run_task.JOBS_ENV, json.dumps(JOBS))
    assert run_task.main(["--task", "training"]) == 2
    assert "the training task declares no command: give one after --" in capsys.readouterr().err


def test_the_command_line_needs_the_jobs_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(run_task.JOBS_ENV, raising=False)
    assert run_task.main(["--task", "migrate"]) == 2
