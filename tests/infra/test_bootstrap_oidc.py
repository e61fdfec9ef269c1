"""The OIDC bootstrap stack under Pulumi's mocks: who may assume which role, and what for."""

from __future__ import annotations

import json

import pytest

from infra.bootstrap_oidc.oidc import (
    ADMINISTRATOR,
    OidcSettings,
    OidcSettingsError,
    build,
)
from tests.infra.conftest import ACCOUNT, Stack, run_program

SETTINGS = OidcSettings(github_repository="acme/pricebot")


@pytest.fixture(scope="module")
def bootstrap() -> Stack:
    return run_program(lambda: build(SETTINGS))


def _role(stack: Stack, name: str) -> dict:
    return stack.named("aws:iam/role:Role", name).inputs


def _trust(stack: Stack, name: str) -> dict:
    [statement] = json.loads(_role(stack, name)["assumeRolePolicy"])["Statement"]
    return statement


def test_the_provider_is_githubs_issuer_for_sts(bootstrap: Stack) -> None:
    [provider] = bootstrap.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]


def test_deploy_role_trusts_only_the_production_environment_of_the_repository(
    bootstrap: Stack,
) -> None:
    statement = _trust(bootstrap, "deploy")
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith(":github")  # the provider's ARN
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": "repo:acme/pricebot:environment:production",
        }
    }


def test_retrain_role_trusts_only_the_retrain_environment(bootstrap: Stack) -> None:
    sub = _trust(bootstrap, "retrain")["Condition"]["StringEquals"]
    assert sub["token.actions.githubusercontent.com:sub"] == (
        "repo:acme/pricebot:environment:retrain"
    )


def test_deploy_role_gets_the_configured_policies(bootstrap: Stack) -> None:
    attached = [
        r.inputs["policyArn"]
        for r in bootstrap.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    ]
    assert attached == [ADMINISTRATOR]


def test_retrain_role_may_only_start_and_watch_the_training_task(bootstrap: Stack) -> None:
    policy = json.loads(
        bootstrap.named("aws:iam/rolePolicy:RolePolicy", "retrain").inputs["policy"]
    )
    actions = {s["Action"]: s for s in policy["Statement"]}

    assert set(actions) == {"ssm:GetParameter", "ecs:RunTask", "ecs:DescribeTasks", "iam:PassRole"}
    assert actions["ssm:GetParameter"]["Resource"] == (
        f"arn:aws:ssm:*:{ACCOUNT}:parameter/pricebot-production/training-task"
    )
    assert actions["ecs:RunTask"]["Resource"] == (
        f"arn:aws:ecs:*:{ACCOUNT}:task-definition/pricebot-production-training:*"
    )
    assert actions["iam:PassRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert all("*" not in s["Action"] for s in policy["Statement"])


def test_retrain_cannot_pass_the_deploy_role(bootstrap: Stack) -> None:
    # The PassRole pattern covers the main stack's roles, not the bootstrap's own roles.
    policy = json.loads(
        bootstrap.named("aws:iam/rolePolicy:RolePolicy", "retrain").inputs["policy"]
    )
    [pass_role] = [s for s in policy["Statement"] if s["Action"] == "iam:PassRole"]
    pattern = pass_role["Resource"].split(":role/")[1].rstrip("*")
    assert not _role(bootstrap, "deploy")["name"].startswith(pattern)


def test_an_existing_provider_is_reused_not_created() -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    stack = run_program(
        lambda: build(OidcSettings(github_repository="acme/pricebot", existing_provider_arn=arn))
    )
    assert stack.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    assert _trust(stack, "deploy")["Principal"]["Federated"] == arn


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"github_repository": "pricebot"}, "githubRepository is 'pricebot'; give owner/name"),
        ({"retrain_environment": "production"}, "must differ"),
        ({"deploy_policy_arns": ()}, "deployPolicyArns is empty"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(changes: dict, message: str) -> None:
    arguments = {"github_repository": "acme/pricebot", **changes}
    with pytest.raises(OidcSettingsError, match=message):
        OidcSettings(**arguments)
