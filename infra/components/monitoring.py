"""The Streamlit monitoring page: a second Fargate service, behind a sign-in, or not at all.

The page shows everything the database and the registry hold, so it is never open: the load
balancer routes ``/monitor`` to it only behind an ``authenticate-cognito`` or
``authenticate-oidc`` action, which needs an HTTPS listener (the configuration refuses auth
without a certificate). With ``monitoringAuth: none`` the path is not routed at all and no
task runs (the task definition still exists, so the page can be run by hand). Sticky sessions
keep a browser's websocket on one task; the page logs in to PostgreSQL as its read-only role.

Cognito: the stack creates a user pool that only administrators add users to (no sign-up),
its app client (authorization-code flow, callback ``https://<domainName>/oauth2/idpresponse``)
and its hosted-UI domain. Adding users is a manual step (docs/deploy.md). Generic OIDC: the
provider's endpoints and client id come from config, the client secret from the Pulumi secret
``pricebot:oidcClientSecret`` (encrypted in the stack file; the load balancer needs it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra.components.fargate import FargateService, FargateTask, ServiceSpec, TaskSpec
from infra.components.network import MONITORING_PORT

BASE_PATH = "monitor"
COMMAND = ("monitor", "--host", "0.0.0.0")  # noqa: S104 - inside the task's own network namespace
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class OidcProvider:
    """A generic OpenID Connect provider the load balancer signs users in with."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    user_info_endpoint: str
    client_id: str
    client_secret: pulumi.Input[str]


@dataclass(frozen=True)
class MonitoringArgs:
    name: str
    region: str
    vpc_id: pulumi.Input[str]
    app_subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    listener: aws.lb.Listener
    base_url: pulumi.Input[str]
    repository_url: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    image_tag: str | None
    db_secret_arn: pulumi.Input[str]
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    auth: str = "none"  # none | cognito | oidc
    domain_name: str | None = None
    cognito_domain_prefix: pulumi.Input[str] | None = None
    oidc: OidcProvider | None = None
    cpu: int = 512
    memory_mb: int = 1024
    log_retention_days: int = 30


class Monitoring(pulumi.ComponentResource):
    """Task definition; when signed-in access is configured, the sign-in, route and service."""

    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: ResourceOptions | None = None
    ) -> None:
        super().__init__("pricebot:infra:Monitoring", name, None, opts)
        if args.auth not in ("none", "cognito", "oidc"):
            raise ValueError(f"monitoring auth {args.auth!r}: use none, cognito or oidc")
        streamlit = {
            "PRICEBOT_MONITOR_PORT": str(MONITORING_PORT),
            "STREAMLIT_SERVER_BASE_URL_PATH": BASE_PATH,
            "STREAMLIT_SERVER_HEADLESS": "true",
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        }
        self.task = FargateTask(
            TaskSpec(
                key="monitoring",
                image_role="monitoring",
                name=args.name,
                region=args.region,
                repository_url=args.repository_url,
                repository_arn=args.repository_arn,
                image_tag=args.image_tag,
                cpu=args.cpu,
                memory_mb=args.memory_mb,
                log_retention_days=args.log_retention_days,
                command=COMMAND,
                environment={**args.environment, **streamlit},
                db_secret_arn=args.db_secret_arn,
                port=MONITORING_PORT,
            ),
            parent=self,
        )
        self.routed = args.auth != "none"
        self.target_group_arn: pulumi.Output[str] | None = None
        self.service_name: pulumi.Output[str] | None = None
        self.user_pool_id: pulumi.Output[str] | None = None
        if not self.routed:
            self.url = pulumi.Output.from_input("")
            self.register_outputs({"url": self.url})
            return

        app = FargateService(
            self.task,
            ServiceSpec(
                cluster_arn=args.cluster_arn,
                vpc_id=args.vpc_id,
                subnet_ids=args.app_subnet_ids,
                security_group_id=args.security_group_id,
                health_check_path=f"/{BASE_PATH}/_stcore/health",
                sticky=True,
            ),
            parent=self,
        )
        sign_in = self._cognito(name, args) if args.auth == "cognito" else self._oidc(args.oidc)
        rule = aws.lb.ListenerRule(
            f"{name}-route",
            listener_arn=args.listener.arn,
            priority=10,
            actions=[
                {"order": 1, **sign_in},
                {"order": 2, "type": "forward", "target_group_arn": app.target_group.arn},
            ],
            conditions=[{"path_pattern": {"values": [f"/{BASE_PATH}", f"/{BASE_PATH}/*"]}}],
            opts=ResourceOptions(parent=self),
        )
        service = app.start(depends_on=[rule])
        self.target_group_arn = app.target_group.arn
        self.service_name = service.name
        self.app = app
        self.url = pulumi.Output.concat(args.base_url, f"/{BASE_PATH}/")
        self.register_outputs({"url": self.url, "target_group_arn": self.target_group_arn})

    def _cognito(self, name: str, args: MonitoringArgs) -> dict[str, Any]:
        """A user pool only administrators add users to, its client and hosted-UI domain."""
        child = ResourceOptions(parent=self)
        if not args.domain_name or args.cognito_domain_prefix is None:
            raise ValueError("Cognito sign-in needs domainName and a Cognito domain prefix")
        pool = aws.cognito.UserPool(
            f"{name}-users",
            name=f"{args.name}-monitoring",
            admin_create_user_config={"allow_admin_create_user_only": True},
            username_attributes=["email"],
            auto_verified_attributes=["email"],
            mfa_configuration="OPTIONAL",
            software_token_mfa_configuration={"enabled": True},
            password_policy={
                "minimum_length": 14,
                "require_lowercase": True,
                "require_uppercase": True,
                "require_numbers": True,
                "require_symbols": False,
                "temporary_password_validity_days": 3,
            },
            account_recovery_setting={
                "recovery_mechanisms": [{"name": "verified_email", "priority": 1}]
            },
            opts=child,
        )
        client = aws.cognito.UserPoolClient(
            f"{name}-client",
            name=f"{args.name}-monitoring-alb",
            user_pool_id=pool.id,
            generate_secret=True,
            allowed_oauth_flows=["code"],
            allowed_oauth_flows_user_pool_client=True,
            allowed_oauth_scopes=["openid", "email"],
            callback_urls=[f"https://{args.domain_name}/oauth2/idpresponse"],
            supported_identity_providers=["COGNITO"],
            prevent_user_existence_errors="ENABLED",
            opts=child,
        )
        domain = aws.cognito.UserPoolDomain(
            f"{name}-domain",
            domain=args.cognito_domain_prefix,
            user_pool_id=pool.id,
            opts=child,
        )
        self.user_pool_id = pool.id
        return {
            "type": "authenticate-cognito",
            "authenticate_cognito": {
                "user_pool_arn": pool.arn,
                "user_pool_client_id": client.id,
                "user_pool_domain": domain.domain,
                "on_unauthenticated_request": "authenticate",
                "scope": "openid email",
                "session_timeout": SESSION_SECONDS,
            },
        }

    @staticmethod
    def _oidc(provider: OidcProvider | None) -> dict[str, Any]:
        if provider is None:
            raise ValueError("OIDC sign-in needs the provider's endpoints and client")
        return {
            "type": "authenticate-oidc",
            "authenticate_oidc": {
                "issuer": provider.issuer,
                "authorization_endpoint": provider.authorization_endpoint,
                "token_endpoint": provider.token_endpoint,
                "user_info_endpoint": provider.user_info_endpoint,
                "client_id": provider.client_id,
                "client_secret": pulumi.Output.secret(provider.client_secret),
                "on_unauthenticated_request": "authenticate",
                "scope": "openid email",
                "session_timeout": SESSION_SECONDS,
            },
        }
