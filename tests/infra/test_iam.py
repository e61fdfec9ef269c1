"""IAM least privilege: named actions only; Resource "*" only where AWS offers nothing narrower."""

from __future__ import annotations

import json

import pytest

from infra import iam
from infra.policy.rules import (
    ACTIONS_WITHOUT_RESOURCES,
    ROLE_POLICY_ATTACHMENT,
    Declared,
    iam_violations,
    statement_violations,
)
from tests.infra.conftest import Stack

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
BUCKET_ARN = "arn:aws:s3:eu-west-1:123456789012:storage-artifacts"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1"
PIPELINE_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secrets-db-pipeline"
SERVICE_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secrets-db-service"
API_KEYS = "arn:aws:secretsmanager:eu-west-1:123456789012:secrets-api-keys"
LOGIN_SECRETS = [
    f"arn:aws:secretsmanager:eu-west-1:123456789012:secrets-db-{key}"
    for key in ("service", "monitoring", "pipeline", "training", "bootstrap")
]


def statements(stack: Stack, name: str) -> list[dict]:
    return json.loads(stack.named(ROLE_POLICY, name).inputs["policy"])["Statement"]


def granted(stack: Stack, name: str) -> dict[str, list[str]]:
    """Action -> resources, for one role policy."""
    out: dict[str, list[str]] = {}
    for statement in statements(stack, name):
        for action in statement["Action"]:
            out.setdefault(action, []).extend(statement["Resource"])
    return out


def test_no_policy_in_the_stack_breaks_the_rules(stack: Stack) -> None:
    assert iam_violations(stack.resources) == []


def test_every_wildcard_resource_is_for_an_unscoped_action(stack: Stack) -> None:
    wildcard_actions = {
        action
        for _, document in stack.policies()
        for statement in document.get("Statement", [])
        if statement.get("Effect") == "Allow" and "*" in statement.get("Resource", [])
        for action in statement["Action"]
    }
    assert wildcard_actions
    assert wildcard_actions <= ACTIONS_WITHOUT_RESOURCES


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, "grants every action ('*')"),
        ({"Effect": "Allow", "Action": ["s3:*"], "Resource": [BUCKET_ARN]}, "('s3:*')"),
        (
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
            "can be scoped: ['s3:GetObject']",
        ),
        ({"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"}, "NotAction"),
    ],
)
def test_the_iam_rule_catches_a_broad_statement(statement: dict, expected: str) -> None:
    # Given a role policy with one over-broad statement
    policy = Declared(ROLE_POLICY, "bad", {"policy": json.dumps({"Statement": [statement]})})
    # Then the rule names the policy and the problem
    problems = iam_violations([policy])
    assert problems
    assert all(p.startswith("RolePolicy 'bad':") for p in problems)
    assert any(expected in p for p in problems)


def test_deny_statements_may_be_broad() -> None:
    # The bucket's TLS guard denies s3:* to everyone: broad on purpose, and allowed
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"}
    assert statement_violations("BucketPolicy", deny) == []


def test_an_aws_managed_policy_attachment_is_reported() -> None:
    attachment = Declared(
        ROLE_POLICY_ATTACHMENT,
        "ssm",
        {"policyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"},
    )
    assert iam_violations([attachment]) == [
        "RolePolicyAttachment 'ssm' attaches arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore;"
        " write the statements instead"
    ]


def test_the_policy_helpers_refuse_wildcard_actions_and_unexplained_wildcards() -> None:
    with pytest.raises(ValueError, match=r"name the actions instead of 's3:\*'"):
        iam.allow(["s3:*"], BUCKET_ARN)
    with pytest.raises(ValueError, match="say why"):
        iam.any_resource(" ")


def test_the_mlflow_instance_may_use_its_prefix_and_its_secret_only(stack: Stack) -> None:
    actions = granted(stack, "mlflow-instance")
    assert actions["secretsmanager:GetSecretValue"] == [SECRET]
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert actions[action] == [f"{BUCKET_ARN}/mlflow/*"]
    [listing] = [s for s in statements(stack, "mlflow-instance") if "s3:ListBucket" in s["Action"]]
    assert listing["Resource"] == [BUCKET_ARN]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["mlflow", "mlflow/*"]}}


def test_only_ingest_may_put_events_and_only_as_its_source(stack: Stack) -> None:
    [put] = [s for s in statements(stack, "pipeline-ingest") if "events:PutEvents" in s["Action"]]
    assert put["Resource"] == ["arn:aws:events:eu-west-1:123456789012:event-bus/default"]
    assert put["Condition"] == {"StringEquals": {"events:source": "pricebot.klines"}}
    assert "events:PutEvents" not in granted(stack, "pipeline-transform")


def test_each_function_may_write_only_its_own_logs_and_dead_letter_queue(stack: Stack) -> None:
    for key in ("ingest", "transform"):
        actions = granted(stack, f"pipeline-{key}")
        assert actions["logs:PutLogEvents"] == [
            f"arn:aws:logs:eu-west-1:123456789012:pipeline-{key}:*"
        ]
        assert actions["sqs:SendMessage"] == [
            f"arn:aws:sqs:eu-west-1:123456789012:pipeline-{key}-dlq"
        ]
        assert actions["secretsmanager:GetSecretValue"] == [PIPELINE_SECRET]


@pytest.mark.parametrize(
    ("task", "repository"),
    [
        ("service", "service"),
        ("monitoring", "monitoring"),
        *[(job, "training") for job in ("migrate", "bootstrap", "training", "score", "predict")],
    ],
)
def test_task_execution_roles_pull_only_their_own_repository(
    stack: Stack, task: str, repository: str
) -> None:
    actions = granted(stack, f"{task}-execution")
    assert actions["ecr:BatchGetImage"] == [
        f"arn:aws:ecr:eu-west-1:123456789012:storage-{repository}"
    ]
    assert actions["ecr:GetAuthorizationToken"] == ["*"]


def test_only_the_service_gets_a_secret_injected_at_start_its_api_keys(stack: Stack) -> None:
    injecting = {
        policy.name: granted(stack, policy.name)["secretsmanager:GetSecretValue"]
        for policy in stack.of_type(ROLE_POLICY)
        if policy.name.endswith("-execution")
        and "secretsmanager:GetSecretValue" in granted(stack, policy.name)
    }
    assert injecting == {"service-execution": [API_KEYS]}


@pytest.mark.parametrize("task", ["service", "monitoring", "bootstrap", "training"])
def test_the_apps_task_roles_may_only_read_their_login(stack: Stack, task: str) -> None:
    actions = granted(stack, f"{task}-task")
    assert set(actions) == {"secretsmanager:GetSecretValue"}
    assert len(actions["secretsmanager:GetSecretValue"]) == 1
    assert not stack.of_type(ROLE_POLICY_ATTACHMENT)


def test_the_migration_task_may_fill_the_component_secrets_and_read_the_owners(
    stack: Stack,
) -> None:
    actions = granted(stack, "migrate-task")
    assert sorted(actions["secretsmanager:PutSecretValue"]) == sorted([*LOGIN_SECRETS, API_KEYS])
    assert sorted(actions["secretsmanager:GetSecretValue"]) == sorted(
        [SECRET, *LOGIN_SECRETS, API_KEYS]
    )
    assert actions["secretsmanager:GetRandomPassword"] == ["*"]


def test_the_scoring_job_may_publish_only_to_the_model_namespace(stack: Stack) -> None:
    [put] = [
        s for s in statements(stack, "score-task") if "cloudwatch:PutMetricData" in s["Action"]
    ]
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": "pricebot/model"}}
    assert granted(stack, "score-task")["secretsmanager:GetSecretValue"] == [PIPELINE_SECRET]


def test_the_scheduler_may_start_only_the_scoring_and_batch_prediction_tasks(
    stack: Stack,
) -> None:
    actions = granted(stack, "jobs-scheduler")
    assert sorted(actions["ecs:RunTask"]) == [
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/pricebot-test-predict:*",
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/pricebot-test-score:*",
    ]
    assert sorted(actions["iam:PassRole"]) == [
        "arn:aws:iam:eu-west-1:123456789012:predict-execution",
        "arn:aws:iam:eu-west-1:123456789012:predict-task",
        "arn:aws:iam:eu-west-1:123456789012:score-execution",
        "arn:aws:iam:eu-west-1:123456789012:score-task",
    ]


def test_the_scheduler_starts_tasks_only_in_the_stacks_cluster_and_passes_roles_only_to_ecs(
    stack: Stack,
) -> None:
    by_action = {a: s for s in statements(stack, "jobs-scheduler") for a in s["Action"]}
    assert by_action["ecs:RunTask"]["Condition"] == {
        "ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:123456789012:serving-cluster"}
    }
    assert by_action["iam:PassRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_the_batch_prediction_job_reads_the_services_login_and_publishes_its_heartbeat_only(
    stack: Stack,
) -> None:
    actions = granted(stack, "predict-task")
    assert actions == {"secretsmanager:GetSecretValue": [SERVICE_SECRET],
                       "cloudwatch:PutMetricData": ["*"]}  # fmt: skip
    [put] = [
        s for s in statements(stack, "predict-task") if "cloudwatch:PutMetricData" in s["Action"]
    ]
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": "pricebot/model"}}


def test_roles_trust_only_their_own_service(stack: Stack) -> None:
    trusted = {
        role.name: json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]
        for role in stack.of_type("aws:iam/role:Role")
    }
    ecs = {"Service": "ecs-tasks.amazonaws.com"}
    tasks = ("service", "monitoring", "migrate", "bootstrap", "training", "score", "predict")
    assert trusted == {
        "pipeline-ingest": {"Service": "lambda.amazonaws.com"},
        "pipeline-transform": {"Service": "lambda.amazonaws.com"},
        "mlflow-instance": {"Service": "ec2.amazonaws.com"},
        "jobs-scheduler": {"Service": "scheduler.amazonaws.com"},
        **{f"{task}-{role}": ecs for task in tasks for role in ("execution", "task")},
    }


def test_role_names_share_the_stack_prefix_the_retrain_role_may_pass(stack: Stack) -> None:
    names = [role.inputs["name"] for role in stack.of_type("aws:iam/role:Role")]
    assert all(name.startswith("pricebot-test-") for name in names)
