"""GitHub's OpenID Connect provider in IAM, and the roles the workflows assume through it.

- The deploy role trusts only jobs of one repository running in the ``production`` environment
  (the OIDC subject ``repo:<owner>/<name>:environment:production``), so a pull request or another
  branch cannot assume it, and a required reviewer on that environment gates every deploy. It
  gets the policies ``pulumi up`` needs (AdministratorAccess unless configured).
- The retrain role trusts only the ``retrain`` environment and may do exactly what retrain.yml
  does: read the training task's description from SSM, start that task, watch it, and pass the
  stack's roles to it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ISSUER = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
ADMINISTRATOR = "arn:aws:iam::aws:policy/AdministratorAccess"


class OidcSettingsError(ValueError):
    """A bootstrap setting is wrong; the message names the key."""


@dataclass(frozen=True)
class OidcSettings:
    """What the bootstrap stack needs to know (Pulumi config keys in camelCase)."""

    github_repository: str
    deploy_environment: str = "production"
    retrain_environment: str = "retrain"
    #: ``<project>-<stack>`` of the main stack: the prefix of the names the retrain role may use.
    stack_prefix: str = "pricebot-production"
    deploy_policy_arns: tuple[str, ...] = (ADMINISTRATOR,)
    #: An account has one provider per URL; reuse it when another project made it already.
    existing_provider_arn: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+", self.github_repository):
            raise OidcSettingsError(
                f"githubRepository is {self.github_repository!r}; give owner/name, e.g. "
                "acme/pricebot"
            )
        if self.deploy_environment == self.retrain_environment:
            raise OidcSettingsError(
                "deployEnvironment and retrainEnvironment must differ, or the retrain job could "
                "assume the deploy role"
            )
        if not self.deploy_policy_arns:
            raise OidcSettingsError("deployPolicyArns is empty; pulumi up needs permissions")

    @property
    def training_task_parameter(self) -> str:
        """The SSM parameter where the main stack describes its training task (JSON)."""
        return f"/{self.stack_prefix}/training-task"


@dataclass
class OidcOutputs:
    provider_arn: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]
    retrain_role_arn: pulumi.Output[str]
    training_task_parameter: str


def trust_policy(provider_arn: str, repository: str, environment: str) -> str:
    """Only jobs of ``repository`` running in GitHub environment ``environment`` may assume."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{ISSUER}:aud": AUDIENCE,
                            f"{ISSUER}:sub": f"repo:{repository}:environment:{environment}",
                        }
                    },
                }
            ],
        }
    )


def retrain_policy(partition: str, account: str, settings: OidcSettings) -> str:
    """Start and watch the training task, nothing more."""
    prefix = settings.stack_prefix
    ecs = f"arn:{partition}:ecs:*:{account}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadTrainingTaskDescription",
                    "Effect": "Allow",
                    "Action": "ssm:GetParameter",
                    "Resource": f"arn:{partition}:ssm:*:{account}:parameter"
                    f"{settings.training_task_parameter}",
                },
                {
                    "Sid": "RunTrainingTask",
                    "Effect": "Allow",
                    "Action": "ecs:RunTask",
                    "Resource": f"{ecs}:task-definition/{prefix}-training:*",
                    "Condition": {"ArnLike": {"ecs:cluster": f"{ecs}:cluster/{prefix}*"}},
                },
                {
                    "Sid": "WatchTrainingTasks",
                    "Effect": "Allow",
                    "Action": "ecs:DescribeTasks",
                    "Resource": f"{ecs}:task/{prefix}*/*",
                },
                {
                    "Sid": "PassTheTaskRoles",
                    "Effect": "Allow",
                    "Action": "iam:PassRole",
                    "Resource": f"arn:{partition}:iam::{account}:role/{prefix}-*",
                    "Condition": {
                        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
                    },
                },
            ],
        }
    )


def build(settings: OidcSettings) -> OidcOutputs:
    """Declare the provider (unless reused) and the two roles."""
    if settings.existing_provider_arn:
        provider_arn = pulumi.Output.from_input(settings.existing_provider_arn)
    else:
        provider = aws.iam.OpenIdConnectProvider(
            "github",
            url=f"https://{ISSUER}",
            client_id_lists=[AUDIENCE],
            tags={"project": "pricebot", "managed-by": "pulumi"},
        )
        provider_arn = provider.arn
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output()
    deploy = aws.iam.Role(
        "deploy",
        name=f"github-{settings.stack_prefix}-deploy",
        description=f"pulumi up from {settings.github_repository} ({settings.deploy_environment})",
        assume_role_policy=provider_arn.apply(
            lambda arn: trust_policy(arn, settings.github_repository, settings.deploy_environment)
        ),
        max_session_duration=7200,
    )
    for index, policy_arn in enumerate(settings.deploy_policy_arns):
        aws.iam.RolePolicyAttachment(f"deploy-{index}", role=deploy.name, policy_arn=policy_arn)
    retrain = aws.iam.Role(
        "retrain",
        name=f"github-{settings.stack_prefix}-retrain",
        description=f"daily training task from {settings.github_repository}",
        assume_role_policy=provider_arn.apply(
            lambda arn: trust_policy(arn, settings.github_repository, settings.retrain_environment)
        ),
    )
    aws.iam.RolePolicy(
        "retrain",
        role=retrain.id,
        policy=pulumi.Output.all(partition.partition, identity.account_id).apply(
            lambda args: retrain_policy(args[0], args[1], settings)
        ),
    )
    return OidcOutputs(
        provider_arn=provider_arn,
        deploy_role_arn=deploy.arn,
        retrain_role_arn=retrain.arn,
        training_task_parameter=settings.training_task_parameter,
    )
