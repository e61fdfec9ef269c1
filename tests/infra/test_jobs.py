"""The job image's tasks: what each runs, as whom, and how the deploy, the retrain workflow and
the scheduler start them."""

from __future__ import annotations

import json

import pytest

from pricebot.roles import GROUP_ROLES, parse_login_roles
from tests.infra.conftest import Stack, build_stack, variant

TASK = "aws:ecs/taskDefinition:TaskDefinition"
SCHEDULE = "aws:scheduler/schedule:Schedule"
JOB_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pricebot-test-training:2026.11.21-abc1234"
NETWORK = {
    "subnets": ["network-app-0-id", "network-app-1-id"],
    "securityGroups": ["network-training-id"],
}


def container(stack: Stack, key: str) -> dict:
    [definition] = json.loads(stack.named(TASK, f"{key}-task").inputs["containerDefinitions"])
    return definition


def env(stack: Stack, key: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(stack, key)["environment"]}


@pytest.mark.parametrize(
    ("task", "command"),
    [
        ("migrate", ["db", "upgrade"]),
        ("bootstrap", ["bootstrap", "--history-days", "90", "--trials", "30"]),
        ("score", ["score", "--publish-metrics"]),
        ("predict", ["predict", "--publish-metrics"]),
    ],
)
def test_each_job_runs_its_pricebot_command_on_the_job_image(
    stack: Stack, task: str, command: list[str]
) -> None:
    assert container(stack, task)["image"] == JOB_IMAGE
    assert container(stack, task)["command"] == command


def test_training_has_no_fixed_command_but_a_template_for_whoever_starts_it(stack: Stack) -> None:
    assert "command" not in container(stack, "training")
    [parameter] = stack.of_type("aws:ssm/parameter:Parameter")
    assert parameter.inputs["name"] == "/pricebot-test/training-task"
    assert json.loads(parameter.inputs["value"]) == {
        "cluster": "pricebot-test",
        "taskDefinition": "pricebot-test-training",
        "container": "training",
        **NETWORK,
        "symbols": ["BTCUSDT", "ETHUSDT", "ADAUSDT"],
        "targets": ["ret24h"],
        "command": ["train", "--symbol", "{symbol}", "--target", "{target}", "--trials",
                    "{trials}", "--quiet"],
    }  # fmt: skip
    assert stack.outputs["training_task_parameter"] == "/pricebot-test/training-task"


def test_the_migration_task_knows_every_login_role_and_its_groups(stack: Stack) -> None:
    # Given the migration task's environment, as pricebot.roles reads it
    roles = {
        role.name: role
        for role in parse_login_roles(env(stack, "migrate")["PRICEBOT_DB_ROLE_SECRETS"])
    }

    # Then every component login is there with its own secret, and every group has a member
    assert {name: role.member_of for name, role in roles.items()} == {
        "pricebot_service_login": ("pricebot_service_group",),
        "pricebot_monitoring_login": ("pricebot_monitoring_group",),
        "pricebot_pipeline_login": ("pricebot_pipeline_group",),
        "pricebot_training_login": ("pricebot_training_group",),
        "pricebot_bootstrap_login": ("pricebot_pipeline_group", "pricebot_training_group"),
    }
    assert roles["pricebot_service_login"].secret_arn.endswith("secrets-db-service")
    assert {group for role in roles.values() for group in role.member_of} == set(GROUP_ROLES)
    assert env(stack, "migrate")["PRICEBOT_API_KEYS_SECRET_ARN"].endswith("secrets-api-keys")


def test_the_component_secrets_are_created_empty(stack: Stack) -> None:
    secrets = {s.inputs["name"] for s in stack.of_type("aws:secretsmanager/secret:Secret")}
    assert secrets == {
        "pricebot-test/api-keys",
        *(f"pricebot-test/db/{k}" for k in ("service", "monitoring", "pipeline", "training",
                                            "bootstrap")),
    }  # fmt: skip
    assert stack.of_type("aws:secretsmanager/secretVersion:SecretVersion") == []


def schedule(stack: Stack, key: str) -> dict:
    return stack.named(SCHEDULE, f"jobs-{key}").inputs


def test_the_scheduler_runs_the_scoring_and_the_batch_prediction_jobs(stack: Stack) -> None:
    assert sorted(s.inputs["name"] for s in stack.of_type(SCHEDULE)) == [
        "pricebot-test-predict",
        "pricebot-test-score",
    ]


def test_the_scoring_job_runs_hourly_from_the_scheduler(stack: Stack) -> None:
    score = schedule(stack, "score")
    assert score["scheduleExpression"] == "rate(1 hour)"
    assert score["state"] == "ENABLED"
    target = score["target"]
    assert target["arn"] == "arn:aws:ecs:eu-west-1:123456789012:serving-cluster"
    ecs = target["ecsParameters"]
    assert ecs["taskDefinitionArn"] == "arn:aws:ecs:eu-west-1:123456789012:score-task"
    assert ecs["launchType"] == "FARGATE"
    assert ecs["networkConfiguration"] == {
        "subnets": NETWORK["subnets"], "securityGroups": NETWORK["securityGroups"],
        "assignPublicIp": False,
    }  # fmt: skip
    assert target["deadLetterConfig"]["arn"].endswith("jobs-schedules-dlq")
    assert target["retryPolicy"]["maximumRetryAttempts"] == 2
    assert env(stack, "score")["PRICEBOT_MODEL_HEALTH_WINDOW_HOURS"] == "24.0"


def test_the_batch_prediction_job_runs_hourly_from_the_scheduler(stack: Stack) -> None:
    predict = schedule(stack, "predict")
    assert predict["scheduleExpression"] == "rate(1 hour)"
    assert predict["state"] == "ENABLED"
    target = predict["target"]
    assert target["arn"] == "arn:aws:ecs:eu-west-1:123456789012:serving-cluster"
    ecs = target["ecsParameters"]
    assert ecs["taskDefinitionArn"] == "arn:aws:ecs:eu-west-1:123456789012:predict-task"
    assert (ecs["launchType"], ecs["taskCount"]) == ("FARGATE", 1)
    assert ecs["networkConfiguration"] == {
        "subnets": NETWORK["subnets"], "securityGroups": NETWORK["securityGroups"],
        "assignPublicIp": False,
    }  # fmt: skip
    # the same role and dead-letter queue as the scoring job's schedule
    assert target["roleArn"] == schedule(stack, "score")["target"]["roleArn"]
    assert target["deadLetterConfig"]["arn"].endswith("jobs-schedules-dlq")


def test_the_batch_prediction_schedule_is_configurable() -> None:
    stack = build_stack(variant(predict_schedule="cron(5 * * * ? *)"))

    assert schedule(stack, "predict")["scheduleExpression"] == "cron(5 * * * ? *)"
    assert schedule(stack, "score")["scheduleExpression"] == "rate(1 hour)"


def test_the_batch_prediction_job_logs_in_as_the_service_and_predicts_what_it_serves(
    stack: Stack,
) -> None:
    variables = env(stack, "predict")
    # The service's own login: the same path to the database as the service (read features,
    # add predictions)
    assert variables["PRICEBOT_DATABASE_SECRET_ARN"].endswith("secrets-db-service")
    assert (
        variables["PRICEBOT_DATABASE_SECRET_ARN"]
        == env(stack, "service")["PRICEBOT_DATABASE_SECRET_ARN"]
    )
    # and the service's view of what to serve, from which registry
    served = ("PRICEBOT_DATABASE_URL", "MLFLOW_TRACKING_URI", "PRICEBOT_MODEL_ALIAS",
              "PRICEBOT_SYMBOLS", "PRICEBOT_TARGETS", "PRICEBOT_FEATURE_SET")  # fmt: skip
    assert {k: variables[k] for k in served} == {k: env(stack, "service")[k] for k in served}
    # but no API keys: it calls no API
    assert container(stack, "predict")["secrets"] == []


def test_the_deploy_finds_every_job_in_the_stack_outputs(stack: Stack) -> None:
    jobs = stack.outputs["jobs"]
    assert {k: v for k, v in jobs.items() if k != "tasks"} == {
        "cluster": "pricebot-test",
        **NETWORK,
    }
    assert jobs["tasks"]["migrate"] == {
        "taskDefinition": "pricebot-test-migrate", "container": "migrate",
        "command": ["db", "upgrade"],
    }  # fmt: skip
    assert set(jobs["tasks"]) == {"migrate", "bootstrap", "training", "score", "predict"}
    assert jobs["tasks"]["predict"] == {
        "taskDefinition": "pricebot-test-predict", "container": "predict",
        "command": ["predict", "--publish-metrics"],
    }  # fmt: skip


def test_the_deploy_can_update_the_migration_task_alone(stack: Stack) -> None:
    # The URNs `pulumi up --target` takes: the task definition and both its role policies
    targets = stack.outputs["migrate_targets"]
    assert [urn.rsplit("::", 1)[-1] for urn in targets] == [
        "migrate-task",
        "migrate-execution",
        "migrate-task",
    ]
    assert "aws:ecs/taskDefinition:TaskDefinition" in targets[0]
    assert all(urn.startswith("urn:pulumi:test::pricebot::") for urn in targets)


def test_every_task_is_declared_with_its_image_role_and_command(stack: Stack) -> None:
    declared = {
        key: (d.image_role, d.family, d.command) for key, d in stack.outputs["declarations"].items()
    }
    assert declared == {
        "service": ("service", "pricebot-test-service", None),
        "monitoring": ("monitoring", "pricebot-test-monitoring", ("monitor", "--host", "0.0.0.0")),
        "migrate": ("job", "pricebot-test-migrate", ("db", "upgrade")),
        "bootstrap": (
            "job",
            "pricebot-test-bootstrap",
            ("bootstrap", "--history-days", "90", "--trials", "30"),
        ),
        "training": ("job", "pricebot-test-training", None),
        "score": ("job", "pricebot-test-score", ("score", "--publish-metrics")),
        "predict": ("job", "pricebot-test-predict", ("predict", "--publish-metrics")),
    }


@pytest.mark.parametrize(
    "task",
    [
        "migrate",
        "monitoring",
        "bootstrap",
        "score",
        "predict",
    ],
)
def test_each_declared_command_is_a_real_pricebot_command(stack: Stack, task: str) -> None:
    from tests.infra.cli import command_problems

    assert command_problems(list(stack.outputs["declarations"][task].command)) == []


def test_the_training_command_template_is_a_real_pricebot_command() -> None:
    from infra.components.jobs import TRAIN_COMMAND
    from tests.infra.cli import command_problems

    values = {"symbol": "BTCUSDT", "target": "ret24h", "trials": "30"}
    assert command_problems([word.format(**values) for word in TRAIN_COMMAND]) == []


def test_a_command_that_does_not_exist_is_caught() -> None:
    from tests.infra.cli import command_problems

    assert command_problems(["db", "migrate"]) == [
        "`pricebot db migrate`: there is no command 'migrate'"
    ]
