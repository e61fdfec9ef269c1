"""The bootstrap program: read its configuration, declare the OIDC provider, the boundary and the
roles, export what to paste into the GitHub environments and the main stack (docs/ci.md)."""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this directory as a script: put the repository root on the path for ``infra``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pulumi

from infra.bootstrap_oidc.oidc import OidcSettings, build

config = pulumi.Config()
outputs = build(
    OidcSettings(
        github_repository=config.require("githubRepository"),
        deploy_environment=config.get("deployEnvironment") or "production",
        retrain_environment=config.get("retrainEnvironment") or "retrain",
        branch=config.get("branch") or "main",
        subject_includes_ref=config.get_bool("subjectIncludesRef") is not False,
        stack_prefix=config.get("stackPrefix") or "pricebot-production",
        stack_name=config.get("stackName") or "production",
        region=config.get("region") or "*",
        deploy_policy_arns=tuple(config.get_object("deployPolicyArns") or ()),
        state_bucket=config.get("stateBucket"),
        secrets_kms_key_arn=config.get("secretsKmsKeyArn"),
        hosted_zone_id=config.get("hostedZoneId"),
        existing_provider_arn=config.get("existingProviderArn"),
    )
)
pulumi.export("AWS_DEPLOY_ROLE_ARN", outputs.deploy_role_arn)
pulumi.export("AWS_RETRAIN_ROLE_ARN", outputs.retrain_role_arn)
pulumi.export("RETRAIN_TASK_PARAMETER", outputs.training_task_parameter)
pulumi.export("rolePermissionsBoundaryArn", outputs.boundary_arn)
pulumi.export("oidc_subject_template", outputs.subject_template)
pulumi.export("oidc_provider_arn", outputs.provider_arn)
