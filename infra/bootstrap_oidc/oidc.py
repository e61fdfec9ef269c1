"""GitHub's OpenID Connect provider in IAM, and the roles the workflows assume through it.

Who may assume. AWS conditions a web-identity trust on the token's ``aud`` and ``sub`` claims
only (GitHub's other claims, ``ref`` or ``job_workflow_ref``, are not IAM condition keys), and a
job running in a GitHub environment gets ``sub = repo:<owner>/<repo>:environment:<name>``, with
no branch in it. So by default the deploy role would trust the ``production`` environment of
any branch that may use it. The honest fix is on GitHub's side: the repository's OIDC subject
template set to ``["repo", "context", "ref"]`` makes the subject
``repo:<owner>/<repo>:environment:production:ref:refs/heads/main``, which the trust requires
exactly (``subjectIncludesRef: true``, the default). Setting that template is a manual step, a
repository-admin API call this stack cannot make (docs/ci.md); until it is made, the deploy
cannot assume the role at all rather than assume it from the wrong branch. With
``subjectIncludesRef: false`` the trust falls back to the environment alone and the branch rule
of the environment (GitHub's, not AWS's) is the only guard; docs/ci.md says so.

- The deploy role gets the scoped policies of :mod:`infra.bootstrap_oidc.deploy_policy` (no
  AdministratorAccess; ``deployPolicyArns`` may add more, on purpose), and every role it creates
  must carry the permissions boundary this stack creates.
- The retrain role may do exactly what retrain.yml does: read the training task's description
  from SSM, start that task, watch it, and pass the stack's roles to it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.bootstrap_oidc.deploy_policy import Scope, boundary_policy, deploy_policies

ISSUER = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
ADMINISTRATOR = "arn:aws:iam::aws:policy/AdministratorAccess"
SUBJECT_CLAIM_KEYS = ("repo", "context", "ref")  # the repository's OIDC subject template


class OidcSettingsError(ValueError):
    """A bootstrap setting is wrong; the message names the key."""


@dataclass(frozen=True)
class OidcSettings:
    """What the bootstrap stack needs to know (Pulumi config keys in camelCase)."""

    github_repository: str
    deploy_environment: str = "production"
    retrain_environment: str = "retrain"
    #: The only branch whose jobs may assume the roles (needs the subject template, see above).
    branch: str = "main"
    subject_includes_ref: bool = True
    #: ``<project>-<stack>`` of the main stack: the prefix of the names its resources carry.
    stack_prefix: str = "pricebot-production"
    #: The main stack's name (its ``stack`` tag, the scope of its EC2 resources).
    stack_name: str = "production"
    #: The main stack's region; ``*`` lets the deploy role work in any.
    region: str = "*"
    #: Extra managed policies for the deploy role (none by default; AdministratorAccess only if
    #: you put it here yourself).
    deploy_policy_arns: tuple[str, ...] = ()
    #: The Pulumi state bucket (S3 backend) and KMS key (awskms secrets provider), if used.
    state_bucket: str | None = None
    secrets_kms_key_arn: str | None = None
    hosted_zone_id: str | None = None
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
        if not self.stack_prefix.endswith(f"-{self.stack_name}"):
            raise OidcSettingsError(
                f"stackPrefix {self.stack_prefix!r} does not end with stackName "
                f"{self.stack_name!r}: the prefix is <project>-<stack>"
            )

    @property
    def training_task_parameter(self) -> str:
        """The SSM parameter where the main stack describes its training task (JSON)."""
        return f"/{self.stack_prefix}/training-task"

    def subject(self, environment: str) -> str:
        """The ``sub`` claim a job of ``environment`` on the branch presents."""
        base = f"repo:{self.github_repository}:environment:{environment}"
        return f"{base}:ref:refs/heads/{self.branch}" if self.subject_includes_ref else base


@dataclass
class OidcOutputs:
    provider_arn: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]
    retrain_role_arn: pulumi.Output[str]
    boundary_arn: pulumi.Output[str]
    training_task_parameter: str
    subject_template: dict


def trust_policy(provider_arn: str, audience: str, subject: str) -> str:
    """Only tokens for STS whose subject is exactly ``subject`` may assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {f"{ISSUER}:aud": audience, f"{ISSUER}:sub": subject}
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


def scope(partition: str, account: str, settings: OidcSettings) -> Scope:
    return Scope(
        partition=partition,
        account=account,
        region=settings.region,
        prefix=settings.stack_prefix,
        stack=settings.stack_name,
        boundary_arn=boundary_arn(partition, account, settings),
        state_bucket=settings.state_bucket,
        secrets_kms_key_arn=settings.secrets_kms_key_arn,
        hosted_zone_id=settings.hosted_zone_id,
    )


def boundary_arn(partition: str, account: str, settings: OidcSettings) -> str:
    return f"arn:{partition}:iam::{account}:policy/{settings.stack_prefix}-boundary"


def build(settings: OidcSettings) -> OidcOutputs:
    """Declare the provider (unless reused), the boundary, the deploy policies and the roles."""
    tags = {"project": "pricebot", "managed-by": "pulumi"}
    if settings.existing_provider_arn:
        provider_arn = pulumi.Output.from_input(settings.existing_provider_arn)
    else:
        provider = aws.iam.OpenIdConnectProvider(
            "github", url=f"https://{ISSUER}", client_id_lists=[AUDIENCE], tags=tags
        )
        provider_arn = provider.arn
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output()
    where = pulumi.Output.all(partition.partition, identity.account_id).apply(
        lambda v: scope(v[0], v[1], settings)
    )
    boundary = aws.iam.Policy(
        "boundary",
        name=f"{settings.stack_prefix}-boundary",
        description="Ceiling of every role the pricebot stack creates (set by its deploy)",
        policy=where.apply(boundary_policy),
        tags=tags,
    )
    deploy = aws.iam.Role(
        "deploy",
        name=f"github-{settings.stack_prefix}-deploy",
        description=f"pulumi up from {settings.github_repository} ({settings.deploy_environment})",
        assume_role_policy=provider_arn.apply(
            lambda arn: trust_policy(arn, AUDIENCE, settings.subject(settings.deploy_environment))
        ),
        max_session_duration=7200,
        tags=tags,
    )
    documents = where.apply(deploy_policies)
    for key in ("network", "data", "compute", "identity", "operations", "reads"):
        policy = aws.iam.Policy(
            f"deploy-{key}",
            name=f"github-{settings.stack_prefix}-deploy-{key}",
            description=f"pulumi up of {settings.stack_prefix}: {key}",
            policy=documents.apply(lambda d, key=key: d[key]),
            tags=tags,
        )
        aws.iam.RolePolicyAttachment(f"deploy-{key}", role=deploy.name, policy_arn=policy.arn)
    for index, policy_arn in enumerate(settings.deploy_policy_arns):
        aws.iam.RolePolicyAttachment(
            f"deploy-extra-{index}", role=deploy.name, policy_arn=policy_arn
        )
    retrain = aws.iam.Role(
        "retrain",
        name=f"github-{settings.stack_prefix}-retrain",
        description=f"daily training task from {settings.github_repository}",
        assume_role_policy=provider_arn.apply(
            lambda arn: trust_policy(arn, AUDIENCE, settings.subject(settings.retrain_environment))
        ),
        tags=tags,
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
        boundary_arn=boundary.arn,
        training_task_parameter=settings.training_task_parameter,
        subject_template={"use_default": False, "include_claim_keys": list(SUBJECT_CLAIM_KEYS)},
    )
