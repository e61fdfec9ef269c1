"""The Streamlit monitoring page: a second Fargate service behind the same load balancer.

Routed by path: ``/monitor`` and below go to Streamlit (served under that base path), the rest
to the prediction service. Sticky sessions keep a browser's websocket on one task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra.components.fargate import FargateApp, FargateAppSpec
from infra.components.network import MONITORING_PORT

BASE_PATH = "monitor"


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
    cpu: int = 512
    memory_mb: int = 1024
    log_retention_days: int = 30


class Monitoring(pulumi.ComponentResource):
    """Task definition, service, target group and the listener rule for ``/monitor``."""

    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: ResourceOptions | None = None
    ) -> None:
        super().__init__("pricebot:infra:Monitoring", name, None, opts)
        streamlit = {
            "STREAMLIT_SERVER_PORT": str(MONITORING_PORT),
            "STREAMLIT_SERVER_BASE_URL_PATH": BASE_PATH,
            "STREAMLIT_SERVER_HEADLESS": "true",
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        }
        app = FargateApp(
            FargateAppSpec(
                key="monitoring",
                name=args.name,
                region=args.region,
                cluster_arn=args.cluster_arn,
                vpc_id=args.vpc_id,
                subnet_ids=args.app_subnet_ids,
                security_group_id=args.security_group_id,
                repository_url=args.repository_url,
                repository_arn=args.repository_arn,
                image_tag=args.image_tag,
                port=MONITORING_PORT,
                health_check_path=f"/{BASE_PATH}/_stcore/health",
                cpu=args.cpu,
                memory_mb=args.memory_mb,
                db_secret_arn=args.db_secret_arn,
                environment={**args.environment, **streamlit},
                log_retention_days=args.log_retention_days,
                sticky=True,
            ),
            parent=self,
        )
        rule = aws.lb.ListenerRule(
            f"{name}-route",
            listener_arn=args.listener.arn,
            priority=10,
            actions=[{"type": "forward", "target_group_arn": app.target_group.arn}],
            conditions=[{"path_pattern": {"values": [f"/{BASE_PATH}", f"/{BASE_PATH}/*"]}}],
            opts=ResourceOptions(parent=self),
        )
        app.service(depends_on=[rule])
        self.url = pulumi.Output.concat(args.base_url, f"/{BASE_PATH}/")
        self.register_outputs({"url": self.url})
