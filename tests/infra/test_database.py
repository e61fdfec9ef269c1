"""The database: private, encrypted, TLS only, password owned by RDS, backed up, protected."""

from __future__ import annotations

import json

import pytest

from infra.config import StackSettingsError
from infra.policy.rules import RDS_INSTANCE, Declared, database_violations
from tests.infra.conftest import Stack, build_stack, variant

SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1"


@pytest.fixture(scope="module")
def instance(stack: Stack) -> Declared:
    [db] = stack.of_type(RDS_INSTANCE)
    return db


def test_the_default_database_passes_every_rule(stack: Stack) -> None:
    assert database_violations(stack.resources) == []


def test_it_is_postgres_16_private_and_encrypted(instance: Declared) -> None:
    assert instance.inputs["engine"] == "postgres"
    assert instance.inputs["engineVersion"] == "16"
    assert instance.inputs["publiclyAccessible"] is False
    assert instance.inputs["storageEncrypted"] is True


def _keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return {str(k).lower() for k in value} | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_rds_manages_the_password_so_no_input_carries_one(stack: Stack, instance: Declared) -> None:
    # Given the declared stack, then RDS owns the password and no input holds one
    assert instance.inputs["manageMasterUserPassword"] is True
    assert not {
        k
        for r in stack.resources
        for k in _keys(dict(r.inputs))
        if "password" in k and k != "managemasteruserpassword"
    }
    # and readers get the secret's ARN instead
    assert stack.outputs["database_secret_arn"].startswith("arn:aws:secretsmanager:")


def login_secret(key: str) -> str:
    return f"arn:aws:secretsmanager:eu-west-1:123456789012:secrets-db-{key}"


def container(stack: Stack, key: str) -> dict:
    task = stack.named("aws:ecs/taskDefinition:TaskDefinition", f"{key}-task")
    [definition] = json.loads(task.inputs["containerDefinitions"])
    return definition


def environment(stack: Stack, key: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(stack, key)["environment"]}


@pytest.mark.parametrize(
    ("task", "secret"),
    [
        ("service", login_secret("service")),
        ("monitoring", login_secret("monitoring")),
        ("bootstrap", login_secret("bootstrap")),
        ("training", login_secret("training")),
        ("score", login_secret("pipeline")),
        ("migrate", SECRET),  # the owner: it creates the schema and the roles
    ],
)
def test_each_task_logs_in_with_its_own_secret_read_at_run_time(
    stack: Stack, task: str, secret: str
) -> None:
    variables = environment(stack, task)
    assert variables["PRICEBOT_DATABASE_SECRET_ARN"] == secret
    # no password in the environment, none injected once at start, none in the URL
    assert not [name for name in variables if "PASSWORD" in name or name == "PGUSER"]
    assert not [s for s in container(stack, task)["secrets"] if s["name"].startswith("PG")]
    assert "@" not in variables["PRICEBOT_DATABASE_URL"]


def test_only_the_migration_task_and_mlflow_use_the_owners_secret(stack: Stack) -> None:
    readers = {
        policy.name
        for policy in stack.of_type("aws:iam/rolePolicy:RolePolicy")
        if SECRET in policy.inputs["policy"]
    }
    assert readers == {"migrate-task", "mlflow-instance"}


def test_each_task_role_may_read_its_own_login_secret_only(stack: Stack) -> None:
    policy = json.loads(
        stack.named("aws:iam/rolePolicy:RolePolicy", "service-task").inputs["policy"]
    )
    [read] = [s for s in policy["Statement"] if "secretsmanager:GetSecretValue" in s["Action"]]
    assert read["Resource"] == [login_secret("service")]


def test_lambdas_get_the_pipeline_logins_secret_arn_not_the_password(stack: Stack) -> None:
    for function in stack.of_type("aws:lambda/function:Function"):
        variables = function.inputs["environment"]["variables"]
        assert variables["PRICEBOT_DATABASE_SECRET_ARN"] == login_secret("pipeline")
        assert not [name for name in variables if "PASSWORD" in name]


def test_backups_are_kept_a_week_and_deletion_is_protected(instance: Declared) -> None:
    assert instance.inputs["backupRetentionPeriod"] >= 7
    assert instance.inputs["deletionProtection"] is True
    assert instance.inputs["skipFinalSnapshot"] is False


def test_tls_is_forced_by_the_parameter_group(stack: Stack, instance: Declared) -> None:
    [params] = stack.of_type("aws:rds/parameterGroup:ParameterGroup")
    assert params.inputs["family"] == "postgres16"
    assert {"name": "rds.force_ssl", "value": "1"} in params.inputs["parameters"]
    assert instance.inputs["parameterGroupName"] == params.inputs["name"]


def test_only_the_database_security_group_guards_it(instance: Declared) -> None:
    assert instance.inputs["vpcSecurityGroupIds"] == ["network-database-id"]


def test_turning_deletion_protection_off_is_allowed_but_reported() -> None:
    # Given a stack being torn down (the documented way: protection off, up, destroy)
    stack = build_stack(variant(db_deletion_protection=False))
    # Then the rule reports it, so a policy run would flag it on a live stack
    assert database_violations(stack.resources) == [
        "Instance 'database-postgres' has deletion protection off"
    ]


def test_fewer_than_seven_days_of_backups_are_refused() -> None:
    with pytest.raises(StackSettingsError, match="dbBackupRetentionDays is 3; keep at least 7"):
        variant(db_backup_retention_days=3)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"publiclyAccessible": True}, "publicly_accessible=False"),
        ({"storageEncrypted": False}, "encrypt its storage"),
        ({"manageMasterUserPassword": False, "password": "hunter2"}, "manage the master password"),
        ({"backupRetentionPeriod": 1}, "backups under 7 days"),
        ({"parameterGroupName": "default.postgres16"}, "rds.force_ssl=1"),
    ],
)
def test_the_database_rule_catches_each_weakness(
    stack: Stack, instance: Declared, change: dict, expected: str
) -> None:
    # Given the stack's instance with one property weakened
    weakened = Declared(instance.type, instance.name, {**instance.inputs, **change})
    others = [r for r in stack.resources if r is not instance]
    # Then exactly that weakness is reported
    problems = database_violations([*others, weakened])
    assert len(problems) == 1
    assert expected in problems[0]
