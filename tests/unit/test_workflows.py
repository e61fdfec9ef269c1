"""The GitHub Actions workflows: triggers, least-privilege permissions, pinned actions, the deploy's
order and guards, and a clean bill from actionlint and zizmor (offline)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
SHA_PIN = re.compile(
    r"^\s*(?:-\s+)?uses:\s*(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)(?:\s+#\s*(?P<comment>.*))?$"
)


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The ``on:`` block (YAML 1.1 reads a bare ``on`` key as True)."""
    on = workflow.get("on", workflow.get(True))
    return {on: None} if isinstance(on, str) else dict(on)


def jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return workflow["jobs"]


def step_named(job: dict[str, Any], text: str) -> tuple[int, dict[str, Any]]:
    for index, step in enumerate(job["steps"]):
        if text in step.get("name", "") or text in step.get("uses", ""):
            return index, step
    raise AssertionError(f"no step named like {text!r}")


def remote_uses(text: str) -> list[re.Match[str]]:
    """Every ``uses: owner/repo@ref`` line (local ``./`` workflows are not third-party)."""
    return [m for line in text.splitlines() if (m := SHA_PIN.match(line))]


def pin_problems(text: str) -> list[str]:
    """Third-party actions not pinned to a full commit SHA with a version comment."""
    problems = []
    for match in remote_uses(text):
        if not re.fullmatch(r"[0-9a-f]{40}", match["ref"]):
            problems.append(f"{match['action']}@{match['ref']} is not pinned to a commit SHA")
        elif not re.match(r"v\d+(\.\d+)*\b", match["comment"] or ""):
            problems.append(f"{match['action']}@{match['ref']} has no '# vX.Y.Z' comment")
    return problems


ALL = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def test_the_three_workflows_exist() -> None:
    # Any other workflow added later goes through the parametrised checks below as well.
    assert {"ci.yml", "deploy.yml", "retrain.yml"} <= set(ALL)


def test_ci_runs_on_pull_requests_pushes_and_when_called() -> None:
    on = triggers(load("ci.yml"))
    assert {"pull_request", "push", "workflow_call"} <= set(on)
    # main is tested through deploy.yml's call, so that it is not tested twice per push.
    assert on["push"] == {"branches-ignore": ["main"]}


def test_ci_and_dot_ci_run_call_the_same_make_test() -> None:
    # Given the command .ci/run ends with, and the test job's commands
    ci_run = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    test_job = jobs(load("ci.yml"))["test"]
    runs = [step["run"].strip() for step in test_job["steps"] if "run" in step]

    # Then both are exactly `make test`
    assert ci_run[-1] == "make test"
    assert runs == ["make test"]


def test_ci_lints_ruff_and_the_workflows() -> None:
    lint = jobs(load("ci.yml"))["lint"]
    runs = [step["run"].strip() for step in lint["steps"] if "run" in step]
    assert runs == ["make lint", "make lint-workflows"]
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\nlint-workflows:")[1].split("\n\n")[0]
    assert "$(BIN)/actionlint" in target
    assert "$(BIN)/zizmor --offline .github/workflows" in target


def test_ci_uses_python_311_and_caches_uv() -> None:
    workflow = load("ci.yml")
    assert workflow["env"]["PYTHON_VERSION"] == "3.11"
    for job in jobs(workflow).values():
        _, uv = step_named(job, "astral-sh/setup-uv")
        assert uv["with"]["enable-cache"] is True
        assert uv["with"]["cache-dependency-glob"] == "uv.lock"


def test_deploy_runs_on_push_to_main_after_the_tests() -> None:
    workflow = load("deploy.yml")
    on = triggers(workflow)
    assert on == {"push": {"branches": ["main"]}}
    assert jobs(workflow)["test"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs(workflow)["deploy"]["needs"] == "test"


def test_retrain_is_daily_and_can_be_started_by_hand() -> None:
    on = triggers(load("retrain.yml"))
    assert set(on) == {"schedule", "workflow_dispatch"}
    (cron,) = [entry["cron"] for entry in on["schedule"]]
    minute, hour, day, month, weekday = cron.split()
    assert (day, month, weekday) == ("*", "*", "*")
    assert minute.isdigit()
    assert hour.isdigit()


@pytest.mark.parametrize("name", ALL)
def test_top_level_permissions_are_least_privilege(name: str) -> None:
    workflow = load(name)
    assert "permissions" in workflow, f"{name} relies on the repository's default token scope"
    assert workflow["permissions"] in ({}, {"contents": "read"})


@pytest.mark.parametrize("name", ALL)
def test_id_token_only_where_aws_is_reached(name: str) -> None:
    # Given each job's permissions (a job without any inherits the top level's)
    workflow = load(name)
    for job_name, job in jobs(workflow).items():
        granted = job.get("permissions", workflow["permissions"])
        writes = {scope for scope, level in granted.items() if level == "write"}
        uses_aws = any(
            "configure-aws-credentials" in step.get("uses", "") for step in job.get("steps", [])
        )

        # Then only jobs that assume an AWS role get an id-token, and nothing else is writable
        assert writes == ({"id-token"} if uses_aws else set()), (name, job_name, granted)


def test_deploy_job_has_exactly_id_token_and_read() -> None:
    deploy = jobs(load("deploy.yml"))["deploy"]
    assert deploy["permissions"] == {"id-token": "write", "contents": "read"}


@pytest.mark.parametrize("name", ALL)
def test_every_third_party_action_is_pinned_to_a_commit_sha(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    assert remote_uses(text), f"{name} uses no actions to check"
    assert pin_problems(text) == []


def test_pin_check_catches_tags_and_missing_comments() -> None:
    text = (
        "      - uses: actions/checkout@v6\n"
        "      - uses: actions/setup-python@a309ff8b426b58ec0e2a45f0f869d46889d02405\n"
    )
    assert pin_problems(text) == [
        "actions/checkout@v6 is not pinned to a commit SHA",
        "actions/setup-python@a309ff8b426b58ec0e2a45f0f869d46889d02405 has no '# vX.Y.Z' comment",
    ]


def test_an_action_is_pinned_to_the_same_sha_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for name in ALL:
        for match in remote_uses((WORKFLOWS / name).read_text()):
            pins.setdefault(match["action"], set()).add(f"{match['ref']} {match['comment']}")
    assert {action: len(refs) for action, refs in pins.items()} == dict.fromkeys(pins, 1)


def test_deploys_never_overlap_and_wait_for_the_production_environment() -> None:
    deploy = jobs(load("deploy.yml"))["deploy"]
    assert deploy["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}
    assert deploy["environment"]["name"] == "production"


DEPLOY_ORDER = (
    "Lambda layers",
    "configure-aws-credentials",
    "first deploy",
    "build and push the images",
    "point the migration task at the new job image",
    "migrate the database",
    "pulumi up",
    "bootstrap",
    "wait for the services",
    "let this runner reach the load balancer",
    "smoke test",
    "close the load balancer",
)


def test_deploy_steps_run_in_the_documented_order() -> None:
    # test -> images -> migrate on the new image -> pulumi up -> bootstrap -> stable -> smoke
    deploy = jobs(load("deploy.yml"))["deploy"]
    order = [step_named(deploy, text)[0] for text in DEPLOY_ORDER]
    assert order == sorted(order)


def test_the_deploy_builds_all_three_images_tagged_with_the_commit() -> None:
    deploy = jobs(load("deploy.yml"))
    assert deploy["deploy"]["env"]["IMAGE_TAG"] == "${{ github.sha }}"
    _, images = step_named(deploy["deploy"], "build and push the images")
    script = images["run"]
    assert "bentoml build -f pricebot_service/bentofile.yaml" in script
    assert 'bentoml containerize "pricebot:$IMAGE_TAG" --image-tag "$service:$IMAGE_TAG"' in script
    assert "for role in job monitoring; do" in script
    assert 'docker build --target "$role" --tag "$repository:$IMAGE_TAG" .' in script
    # an immutable tag already pushed (a re-run) is not pushed again
    assert "aws ecr describe-images" in script


def test_pulumi_up_deploys_the_three_tags() -> None:
    _, up = step_named(jobs(load("deploy.yml"))["deploy"], "pulumi up")
    assert up["with"]["command"] == "up"
    config = yaml.safe_load(up["with"]["config-map"])
    assert config == {
        f"pricebot:{key}": {"value": "${{ github.sha }}", "secret": False}
        for key in ("serviceImageTag", "monitoringImageTag", "trainingImageTag")
    }


def test_the_migration_runs_on_the_new_job_image_before_pulumi_up_and_can_fail_it() -> None:
    deploy = jobs(load("deploy.yml"))["deploy"]
    _, target = step_named(deploy, "point the migration task at the new job image")
    assert '--config "pricebot:trainingImageTag=$IMAGE_TAG" "${targets[@]}"' in target["run"]
    assert target["env"]["MIGRATE_TARGETS"] == "${{ steps.stack.outputs.migrate_targets }}"
    _, migrate = step_named(deploy, "migrate the database")
    # the runner exits with the container's code; no continue-on-error anywhere near it
    assert migrate["run"] == "python -m infra.run_task --task migrate --timeout-minutes 30"
    assert "continue-on-error" not in migrate
    assert (ROOT / "infra" / "run_task.py").is_file()


def test_the_first_deploy_of_an_empty_stack_creates_it_before_anything_is_pushed() -> None:
    deploy = jobs(load("deploy.yml"))["deploy"]
    _, first = step_named(deploy, "first deploy")
    assert first["if"] == "steps.before.outputs.first == 'true'"
    assert first["with"]["command"] == "up"
    assert "config-map" not in first["with"]  # no image tags yet: nothing starts


def test_the_deploy_runs_only_tasks_the_stack_declares() -> None:
    from infra.components.jobs import JOB_TASKS

    text = (WORKFLOWS / "deploy.yml").read_text()
    used = set(re.findall(r"infra\.run_task --task (\w+)", text))
    assert used == {"migrate", "bootstrap"}
    assert used <= set(JOB_TASKS)


def test_the_deploy_reads_only_outputs_the_program_exports() -> None:
    exported = set(
        re.findall(r'pulumi\.export\("(\w+)"', (ROOT / "infra" / "__main__.py").read_text())
    )
    text = (WORKFLOWS / "deploy.yml").read_text()
    read = set(re.findall(r"steps\.up\.outputs\.(\w+)", text))
    read |= {"repository_urls", "jobs", "migrate_targets"}  # read with `pulumi stack output`
    assert read <= exported, read - exported


def _runs_pulumi(step: dict[str, Any]) -> bool:
    action = "pulumi/actions" in step.get("uses", "") and "command" in step.get("with", {})
    return action or "pulumi " in step.get("run", "")


def test_the_pulumi_secrets_reach_only_the_steps_that_run_pulumi() -> None:
    deploy = jobs(load("deploy.yml"))["deploy"]
    assert not {"PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"} & set(deploy["env"])
    for step in deploy["steps"]:
        given = {k for k in step.get("env", {}) if k.startswith("PULUMI_")}
        if _runs_pulumi(step):
            assert given == {"PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"}, step["name"]
        else:
            assert given == set(), step.get("name", step.get("uses"))


def test_the_api_key_is_read_only_by_the_smoke_test_and_never_printed() -> None:
    deploy = jobs(load("deploy.yml"))["deploy"]
    readers = [s["name"] for s in deploy["steps"] if "get-secret-value" in s.get("run", "")]
    assert readers == ["smoke test the deployed stack"]
    _, smoke = step_named(deploy, "smoke test")
    assert 'echo "::add-mask::$key"' in smoke["run"]
    assert 'PRICEBOT_SMOKE_API_KEY="$key" python scripts/smoke_test.py' in smoke["run"]
    assert smoke["env"]["API_URL"] == "${{ steps.up.outputs.api_url }}"
    assert (ROOT / "scripts" / "smoke_test.py").is_file()


def test_the_runner_is_let_in_for_the_smoke_test_and_always_shut_out_again() -> None:
    deploy = jobs(load("deploy.yml"))["deploy"]
    _, opened = step_named(deploy, "let this runner reach the load balancer")
    assert "authorize-security-group-ingress" in opened["run"]
    assert "CidrIp=$ip/32" in opened["run"]
    _, closed = step_named(deploy, "close the load balancer")
    assert closed["if"] == "always() && steps.open.outputs.rule != ''"
    assert "revoke-security-group-ingress" in closed["run"]


def test_the_deploy_waits_for_stable_services_with_healthy_targets() -> None:
    _, wait = step_named(jobs(load("deploy.yml"))["deploy"], "wait for the services")
    assert "aws ecs wait services-stable" in wait["run"]
    assert "describe-target-health" in wait["run"]


def test_retrain_runs_the_command_the_stack_publishes() -> None:
    [start] = [s for s in jobs(load("retrain.yml"))["retrain"]["steps"] if s.get("id") == "start"]
    assert "[.command[]" in start["run"]
    assert 'gsub("{symbol}"; $s)' in start["run"]
    assert "python -m" not in start["run"]


def test_no_workflow_uses_a_privileged_trigger() -> None:
    for name in ALL:
        assert not {"pull_request_target", "workflow_run"} & set(triggers(load(name))), name


def _linter(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {BIN}; run `make setup` (dev extra)")
    return path


def test_actionlint_finds_nothing() -> None:
    done = subprocess.run(
        [_linter("actionlint"), "-no-color"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_zizmor_offline_finds_nothing() -> None:
    done = subprocess.run(
        [_linter("zizmor"), "--offline", "--no-progress", "--format", "plain", str(WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


def test_the_linters_do_fail_on_a_bad_workflow(tmp_path: Path) -> None:
    # Given a workflow with an unpinned action, default permissions and script injection
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v6\n"
        '      - run: echo "${{ github.event.head_commit.message }}"\n'
    )

    # When both linters look at it, Then both fail, each for its reasons
    actionlint = subprocess.run(
        [_linter("actionlint"), "-no-color", str(bad)], capture_output=True, text=True, check=False
    )
    zizmor = subprocess.run(
        [_linter("zizmor"), "--offline", "--no-progress", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert actionlint.returncode == 1
    assert "potentially untrusted" in actionlint.stdout
    assert zizmor.returncode != 0
    assert "unpinned-uses" in zizmor.stdout
    assert "template-injection" in zizmor.stdout
