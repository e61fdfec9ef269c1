"""The OIDC bootstrap stack under Pulumi's mocks: who may assume which role, and what for.

The deploy role's policy is also checked against the main stack as the mocks declare it: every
AWS service it declares is covered, every named resource falls under a pattern on the prefix,
and the permissions boundary admits every action the stack's own roles are given.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from infra.bootstrap_oidc.deploy_policy import (
    MANAGED_POLICY_MAX_CHARS,
    MAX_ATTACHED_POLICIES,
    PASSED_TO,
    Scope,
    boundary_statements,
    deploy_policies,
    policy_chars,
)
from infra.bootstrap_oidc.oidc import (
    ADMINISTRATOR,
    OidcSettings,
    OidcSettingsError,
    build,
)
from tests.infra.conftest import ACCOUNT, REGION, Stack, build_stack, run_program, variant

SETTINGS = OidcSettings(github_repository="acme/pricebot")
ROLE = "aws:iam/role:Role"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
# The main stack of tests/infra/conftest.py: prefix pricebot-test, stack test.
TEST_SCOPE = Scope(
    partition="aws",
    account=ACCOUNT,
    region=REGION,
    prefix="pricebot-test",
    stack="test",
    boundary_arn=f"arn:aws:iam::{ACCOUNT}:policy/pricebot-test-boundary",
    hosted_zone_id="Z0123456789ABCDEFGHIJ",
)


@pytest.fixture(scope="module")
def bootstrap() -> Stack:
    return run_program(lambda: build(SETTINGS))


def _role(stack: Stack, name: str) -> dict:
    return stack.named(ROLE, name).inputs


def _trust(stack: Stack, name: str) -> dict:
    [statement] = json.loads(_role(stack, name)["assumeRolePolicy"])["Statement"]
    return statement


def _statements(policies: dict[str, str]) -> list[dict]:
    return [s for doc in policies.values() for s in json.loads(doc)["Statement"]]


def _allowed(statements: list[dict], action: str, arn: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and action in s["Action"]
        and any(fnmatch.fnmatchcase(arn, pattern) for pattern in s["Resource"])
        for s in statements
    )


# --- trust --------------------------------------------------------------------------------------
def test_the_provider_is_githubs_issuer_for_sts(bootstrap: Stack) -> None:
    [provider] = bootstrap.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]


def test_deploy_role_trusts_only_the_production_environment_on_main(bootstrap: Stack) -> None:
    statement = _trust(bootstrap, "deploy")
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith(":github")  # the provider's ARN
    # Exact match: the subject GitHub issues once the repository's template includes the ref
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": (
                "repo:acme/pricebot:environment:production:ref:refs/heads/main"
            ),
        }
    }


def test_without_the_subject_template_the_trust_is_the_environment_alone() -> None:
    settings = OidcSettings(github_repository="acme/pricebot", subject_includes_ref=False)
    stack = run_program(lambda: build(settings))
    sub = _trust(stack, "deploy")["Condition"]["StringEquals"]
    assert sub["token.actions.githubusercontent.com:sub"] == (
        "repo:acme/pricebot:environment:production"
    )


def test_retrain_role_trusts_only_the_retrain_environment_on_main(bootstrap: Stack) -> None:
    sub = _trust(bootstrap, "retrain")["Condition"]["StringEquals"]
    assert sub["token.actions.githubusercontent.com:sub"] == (
        "repo:acme/pricebot:environment:retrain:ref:refs/heads/main"
    )


def test_the_subject_template_to_set_on_github_is_an_output() -> None:
    outputs: dict[str, Any] = {}

    def program() -> None:
        outputs["template"] = build(SETTINGS).subject_template

    run_program(program)
    assert outputs["template"] == {
        "use_default": False,
        "include_claim_keys": ["repo", "context", "ref"],
    }


# --- what the deploy role may do ----------------------------------------------------------------
def test_the_deploy_role_gets_no_administrator_access_by_default(bootstrap: Stack) -> None:
    attached = [r.inputs["policyArn"] for r in bootstrap.of_type(ATTACHMENT)]
    assert ADMINISTRATOR not in attached
    assert len(attached) == 6
    assert all(arn.startswith(f"arn:aws:iam:{REGION}:{ACCOUNT}:deploy-") for arn in attached)


def test_extra_policies_are_attached_only_when_configured() -> None:
    settings = OidcSettings(github_repository="acme/pricebot", deploy_policy_arns=(ADMINISTRATOR,))
    stack = run_program(lambda: build(settings))
    assert ADMINISTRATOR in [r.inputs["policyArn"] for r in stack.of_type(ATTACHMENT)]


def test_each_deploy_policy_fits_iams_limits(bootstrap: Stack) -> None:
    policies = {p.name: p.inputs["policy"] for p in bootstrap.of_type(POLICY)}
    assert set(policies) == {
        "boundary",
        *(f"deploy-{k}" for k in ("network", "data", "compute", "identity", "operations", "reads")),
    }
    for name, document in policies.items():
        assert policy_chars(document) <= MANAGED_POLICY_MAX_CHARS, name
    assert len(bootstrap.of_type(ATTACHMENT)) <= MAX_ATTACHED_POLICIES


def test_no_statement_grants_a_whole_service_or_everything() -> None:
    for statement in _statements(deploy_policies(TEST_SCOPE)):
        assert "NotAction" not in statement
        for action in statement["Action"]:
            assert action != "*", statement["Sid"]
            assert not action.endswith(":*"), (statement["Sid"], action)


def test_statements_on_any_resource_are_pinned_by_region_or_tag() -> None:
    # Given the policy of a stack pinned to one region
    for statement in _statements(deploy_policies(TEST_SCOPE)):
        if statement["Effect"] != "Allow" or statement["Resource"] != ["*"]:
            continue
        condition = json.dumps(statement.get("Condition", {}))
        pinned = ("aws:RequestedRegion", "aws:RequestTag/stack", "aws:ResourceTag/stack")
        # Then each names the region or the stack's tag
        assert any(key in condition for key in pinned), statement["Sid"]


def test_ec2_resources_are_changed_only_when_they_carry_the_stacks_tag() -> None:
    [changes] = [
        s for s in _statements(deploy_policies(TEST_SCOPE)) if s["Sid"] == "Ec2ChangeOnlyThisStacks"
    ]
    assert changes["Condition"] == {"StringEquals": {"aws:ResourceTag/stack": "test"}}
    assert "ec2:TerminateInstances" in changes["Action"]
    assert "ec2:RevokeSecurityGroupIngress" in changes["Action"]  # the smoke test's own rule


def test_roles_are_created_and_changed_only_under_the_boundary() -> None:
    statements = _statements(deploy_policies(TEST_SCOPE))
    [bounded] = [s for s in statements if "iam:CreateRole" in s["Action"]]
    assert set(bounded["Action"]) == {"iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy"}
    assert bounded["Condition"] == {
        "StringEquals": {"iam:PermissionsBoundary": TEST_SCOPE.boundary_arn}
    }
    assert bounded["Resource"] == [f"arn:aws:iam::{ACCOUNT}:role/pricebot-test-*"]
    [deny] = [s for s in statements if s["Effect"] == "Deny"]
    assert set(deny["Action"]) == {
        "iam:AttachRolePolicy",
        "iam:DeleteRolePermissionsBoundary",
        "iam:PutRolePermissionsBoundary",
    }
    assert not [
        s for s in statements if s["Effect"] == "Allow" and "iam:AttachRolePolicy" in s["Action"]
    ]


def test_roles_are_passed_only_to_the_stacks_own_services() -> None:
    [passing] = [
        s for s in _statements(deploy_policies(TEST_SCOPE)) if "iam:PassRole" in s["Action"]
    ]
    assert passing["Resource"] == [f"arn:aws:iam::{ACCOUNT}:role/pricebot-test-*"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": list(PASSED_TO)}}


def test_the_only_secret_value_the_deploy_reads_is_the_api_key() -> None:
    readers = [
        s for s in _statements(deploy_policies(TEST_SCOPE))
        if "secretsmanager:GetSecretValue" in s["Action"]
    ]  # fmt: skip
    assert [r["Resource"] for r in readers] == [
        [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pricebot-test/api-keys*"]
    ]


def test_the_state_bucket_and_kms_key_are_granted_only_when_named() -> None:
    plain = json.dumps(deploy_policies(TEST_SCOPE))
    assert "PulumiState" not in plain
    assert "kms:" not in plain
    from dataclasses import replace

    named = _statements(
        deploy_policies(
            replace(TEST_SCOPE, state_bucket="state", secrets_kms_key_arn="arn:aws:kms:x:1:key/k")
        )
    )
    assert _allowed(named, "s3:PutObject", "arn:aws:s3:::state/.pulumi/stacks/production.json")
    assert _allowed(named, "kms:Decrypt", "arn:aws:kms:x:1:key/k")


# --- checked against the main stack -------------------------------------------------------------
@pytest.fixture(scope="module")
def main_stacks() -> list[Stack]:
    """The default stack and one with every optional piece (sign-in, DNS record, boundary)."""
    from tests.infra.conftest import CERTIFICATE_ARN, DOMAIN

    return [
        build_stack(variant(role_permissions_boundary_arn=TEST_SCOPE.boundary_arn)),
        build_stack(
            variant(
                certificate_arn=CERTIFICATE_ARN,
                domain_name=DOMAIN,
                hosted_zone_id=TEST_SCOPE.hosted_zone_id,
                monitoring_auth="cognito",
                role_permissions_boundary_arn=TEST_SCOPE.boundary_arn,
            )
        ),
    ]


# Pulumi resource module -> the IAM service prefix its API is under.
SERVICE_OF = {
    "ec2": "ec2", "vpc": "ec2", "lb": "elasticloadbalancing", "rds": "rds", "ecs": "ecs",
    "ecr": "ecr", "iam": "iam", "lambda": "lambda", "s3": "s3", "sqs": "sqs", "sns": "sns",
    "ssm": "ssm", "secretsmanager": "secretsmanager", "appautoscaling": "application-autoscaling",
    "scheduler": "scheduler", "cognito": "cognito-idp", "route53": "route53",
}  # fmt: skip
CLOUDWATCH = {"logGroup": "logs", "eventRule": "events", "eventTarget": "events",
              "metricAlarm": "cloudwatch"}  # fmt: skip


def test_every_service_the_main_stack_uses_is_in_the_deploy_policy(
    main_stacks: list[Stack],
) -> None:
    allowed = {
        a.split(":")[0] for s in _statements(deploy_policies(TEST_SCOPE)) for a in s["Action"]
    }
    for stack in main_stacks:
        for resource in stack.resources:
            if not resource.type.startswith("aws:"):
                continue
            module, kind = resource.type.split(":")[1].split("/")
            service = CLOUDWATCH[kind] if module == "cloudwatch" else SERVICE_OF[module]
            assert service in allowed, resource.type


def _arns(stack: Stack) -> list[tuple[str, str]]:
    """(IAM action that creates it, its ARN) for each named resource the main stack declares."""
    a = f"{REGION}:{ACCOUNT}"
    elb = "arn:aws:elasticloadbalancing:{a}"
    by_type = {
        "aws:ecr/repository:Repository": (
            "ecr:CreateRepository", "arn:aws:ecr:{a}:repository/{name}"),
        "aws:cloudwatch/logGroup:LogGroup": (
            "logs:CreateLogGroup", "arn:aws:logs:{a}:log-group:{name}"),
        "aws:secretsmanager/secret:Secret": (
            "secretsmanager:CreateSecret", "arn:aws:secretsmanager:{a}:secret:{name}-AbCdEf"),
        "aws:sqs/queue:Queue": ("sqs:CreateQueue", "arn:aws:sqs:{a}:{name}"),
        "aws:sns/topic:Topic": ("sns:CreateTopic", "arn:aws:sns:{a}:{name}"),
        "aws:cloudwatch/metricAlarm:MetricAlarm": (
            "cloudwatch:PutMetricAlarm", "arn:aws:cloudwatch:{a}:alarm:{name}"),
        "aws:cloudwatch/eventRule:EventRule": (
            "events:PutRule", "arn:aws:events:{a}:rule/{name}"),
        "aws:scheduler/schedule:Schedule": (
            "scheduler:CreateSchedule", "arn:aws:scheduler:{a}:schedule/default/{name}"),
        "aws:lambda/function:Function": (
            "lambda:CreateFunction", "arn:aws:lambda:{a}:function:{name}"),
        "aws:iam/role:Role": ("iam:CreateRole", "arn:aws:iam::" + ACCOUNT + ":role/{name}"),
        "aws:ssm/parameter:Parameter": ("ssm:PutParameter", "arn:aws:ssm:{a}:parameter{name}"),
        "aws:rds/subnetGroup:SubnetGroup": (
            "rds:CreateDBSubnetGroup", "arn:aws:rds:{a}:subgrp:{name}"),
        "aws:rds/parameterGroup:ParameterGroup": (
            "rds:CreateDBParameterGroup", "arn:aws:rds:{a}:pg:{name}"),
        "aws:ecs/cluster:Cluster": ("ecs:CreateCluster", "arn:aws:ecs:{a}:cluster/{name}"),
        "aws:lb/loadBalancer:LoadBalancer": (
            "elasticloadbalancing:CreateLoadBalancer", elb + ":loadbalancer/app/{name}/1"),
        "aws:lb/targetGroup:TargetGroup": (
            "elasticloadbalancing:CreateTargetGroup", elb + ":targetgroup/{name}/1"),
    }  # fmt: skip
    found = []
    for r in stack.resources:
        if r.type in by_type:
            action, pattern = by_type[r.type]
            found.append((action, pattern.format(a=a, name=r.inputs["name"])))
        elif r.type == "aws:rds/instance:Instance":
            found.append(("rds:CreateDBInstance", f"arn:aws:rds:{a}:db:{r.inputs['identifier']}"))
        elif r.type == "aws:ecs/taskDefinition:TaskDefinition":
            family = r.inputs["family"]
            found.append(("ecs:RunTask", f"arn:aws:ecs:{a}:task-definition/{family}:7"))
        elif r.type == "aws:lambda/layerVersion:LayerVersion":
            found.append(
                ("lambda:PublishLayerVersion", f"arn:aws:lambda:{a}:layer:{r.inputs['layerName']}")
            )
        elif r.type == "aws:s3/bucket:Bucket":
            found.append(("s3:CreateBucket", f"arn:aws:s3:::{r.inputs['bucketPrefix']}20261202"))
    return found


def test_every_named_resource_of_the_main_stack_is_within_the_deploy_policy(
    main_stacks: list[Stack],
) -> None:
    statements = _statements(deploy_policies(TEST_SCOPE))
    checked = 0
    for stack in main_stacks:
        for action, arn in _arns(stack):
            assert _allowed(statements, action, arn), (action, arn)
            checked += 1
    assert checked > 60  # the check covered the stack, not an empty list


SECRETS = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}"


def test_a_resource_outside_the_prefix_is_not_within_the_deploy_policy() -> None:
    statements = _statements(deploy_policies(TEST_SCOPE))
    for action, arn in [
        ("ecr:CreateRepository", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/other-prod-service"),
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/github-pricebot-test-deploy"),
        ("rds:DeleteDBInstance", f"arn:aws:rds:{REGION}:{ACCOUNT}:db:payroll"),
        ("secretsmanager:GetSecretValue", f"{SECRETS}:secret:pricebot-test/db/service-x"),
    ]:  # fmt: skip
        assert not _allowed(statements, action, arn), (action, arn)


def test_the_boundary_admits_every_action_the_main_stacks_roles_are_given(
    main_stacks: list[Stack],
) -> None:
    boundary = {a for s in boundary_statements(TEST_SCOPE) for a in s["Action"]}
    given = {
        action
        for stack in main_stacks
        for policy in stack.of_type("aws:iam/rolePolicy:RolePolicy")
        for statement in json.loads(policy.inputs["policy"])["Statement"]
        for action in statement["Action"]
    }
    assert given
    assert given - boundary == set()


def test_every_role_of_the_main_stack_carries_the_boundary(main_stacks: list[Stack]) -> None:
    for stack in main_stacks:
        for role in stack.of_type(ROLE):
            assert role.inputs["permissionsBoundary"] == TEST_SCOPE.boundary_arn, role.name


# --- the retrain role ---------------------------------------------------------------------------
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
        ({"stack_prefix": "pricebot-staging"}, "does not end with stackName"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(changes: dict, message: str) -> None:
    arguments = {"github_repository": "acme/pricebot", **changes}
    with pytest.raises(OidcSettingsError, match=message):
        OidcSettings(**arguments)
