"""The secrets the deployed components log in with, created empty: values never pass Pulumi.

One secret per component login role (``<prefix>/db/<component>``), holding
``{"username": "<login role>", "password": "..."}``, and one for the prediction service's API
keys (``<prefix>/api-keys``, a comma-separated list, so a key can rotate with overlap). The stack
creates them without a value, so no password is in the Pulumi state or config; the migration
task (``pricebot db upgrade``, as the database owner) fills each empty one with a value Secrets
Manager generates, and sets each login role's password from its secret (pricebot.roles). A
component reads its own secret only (its task or function role says so).

Which component logs in as which role, member of which group roles of migration 0004:
:data:`LOGINS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions


@dataclass(frozen=True)
class Login:
    """A component's login role and the group roles (migration 0004) it is a member of."""

    key: str
    role: str
    member_of: tuple[str, ...]
    used_by: str


LOGINS = (
    Login("service", "pricebot_service_login", ("pricebot_service_group",),
          "the prediction service"),
    Login("monitoring", "pricebot_monitoring_login", ("pricebot_monitoring_group",),
          "the monitoring page"),
    Login("pipeline", "pricebot_pipeline_login", ("pricebot_pipeline_group",),
          "the ingest and transform Lambdas and the scoring job"),
    Login("training", "pricebot_training_login", ("pricebot_training_group",),
          "the training task"),
    Login("bootstrap", "pricebot_bootstrap_login",
          ("pricebot_pipeline_group", "pricebot_training_group"),
          "the bootstrap job (backfill, features, first training)"),
)  # fmt: skip
LOGIN_KEYS = tuple(login.key for login in LOGINS)


@dataclass(frozen=True)
class SecretsArgs:
    name: str
    force_destroy: bool = False


class Secrets(pulumi.ComponentResource):
    """The empty secrets; outputs their ARNs and the migration task's view of them."""

    login_secret_arns: dict[str, pulumi.Output[str]]
    api_keys_secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: SecretsArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Secrets", name, None, opts)
        child = ResourceOptions(parent=self)
        # A deleted secret lingers (and blocks its name) for the recovery window; a stack meant
        # to be torn down and recreated deletes at once.
        recovery = 0 if args.force_destroy else 7
        self.login_secrets = {
            login.key: aws.secretsmanager.Secret(
                f"{name}-db-{login.key}",
                name=f"{args.name}/db/{login.key}",
                description=(
                    f"PostgreSQL login {login.role} of {login.used_by}: "
                    '{"username", "password"}, filled and synced by the migration task'
                ),
                recovery_window_in_days=recovery,
                opts=child,
            )
            for login in LOGINS
        }
        self.api_keys = aws.secretsmanager.Secret(
            f"{name}-api-keys",
            name=f"{args.name}/api-keys",
            description=(
                "API keys of the prediction service (PRICEBOT_API_KEYS, comma-separated); "
                "the migration task generates the first"
            ),
            recovery_window_in_days=recovery,
            opts=child,
        )
        self.login_secret_arns = {k: s.arn for k, s in self.login_secrets.items()}
        self.api_keys_secret_arn = self.api_keys.arn
        self.register_outputs(
            {
                "login_secret_arns": self.login_secret_arns,
                "api_keys_secret_arn": self.api_keys_secret_arn,
            }
        )

    def role_secrets_json(self) -> pulumi.Output[str]:
        """``PRICEBOT_DB_ROLE_SECRETS`` for the migration task (pricebot.roles)."""
        arns = pulumi.Output.all(*[self.login_secret_arns[login.key] for login in LOGINS])
        return arns.apply(
            lambda values: json.dumps(
                {
                    login.role: {"secret_arn": arn, "member_of": list(login.member_of)}
                    for login, arn in zip(LOGINS, values, strict=True)
                },
                sort_keys=True,
            )
        )
