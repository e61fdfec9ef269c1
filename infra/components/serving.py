"""The prediction service: BentoML on ECS Fargate behind the stack's Application Load Balancer.

The load balancer is the only thing reachable from outside the VPC, on 80 (and 443 when a
certificate ARN is configured, with 80 then redirecting to it). Tasks run in the app subnets
without public IPs, are health-checked on ``/readyz`` (ready once a model is loaded) and scale
on CPU. The service follows the configured MLflow alias itself (it polls the registry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra.components.fargate import FargateApp, FargateAppSpec
from infra.components.network import SERVICE_PORT

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class ServingArgs:
    name: str
    region: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    app_subnet_ids: Sequence[pulumi.Input[str]]
    alb_security_group_id: pulumi.Input[str]
    service_security_group_id: pulumi.Input[str]
    repository_url: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    image_tag: str | None
    db_secret_arn: pulumi.Input[str]
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    certificate_arn: str | None = None
    cpu: int = 512
    memory_mb: int = 1024
    min_tasks: int = 1
    max_tasks: int = 3
    cpu_target_percent: float = 60.0
    log_retention_days: int = 30


class Serving(pulumi.ComponentResource):
    """Cluster, load balancer, listeners and the autoscaled service."""

    url: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    listener_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ServingArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Serving", name, None, opts)
        child = ResourceOptions(parent=self)

        cluster = aws.ecs.Cluster(f"{name}-cluster", name=args.name, opts=child)
        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=f"{args.name}"[:32],
            load_balancer_type="application",
            internal=False,
            security_groups=[args.alb_security_group_id],
            subnets=list(args.public_subnet_ids),
            drop_invalid_header_fields=True,
            idle_timeout=120,  # Streamlit keeps a websocket open
            opts=child,
        )
        app = FargateApp(
            FargateAppSpec(
                key="service",
                name=args.name,
                region=args.region,
                cluster_arn=cluster.arn,
                vpc_id=args.vpc_id,
                subnet_ids=args.app_subnet_ids,
                security_group_id=args.service_security_group_id,
                repository_url=args.repository_url,
                repository_arn=args.repository_arn,
                image_tag=args.image_tag,
                port=SERVICE_PORT,
                health_check_path="/readyz",
                cpu=args.cpu,
                memory_mb=args.memory_mb,
                db_secret_arn=args.db_secret_arn,
                environment=args.environment,
                log_retention_days=args.log_retention_days,
                desired_count=args.min_tasks,
                autoscaled=True,
            ),
            parent=self,
        )
        forward = [{"type": "forward", "target_group_arn": app.target_group.arn}]
        if args.certificate_arn:
            listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=alb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=args.certificate_arn,
                default_actions=forward,
                opts=child,
            )
            aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=[
                    {
                        "type": "redirect",
                        "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"},
                    }
                ],
                opts=child,
            )
            scheme = "https"
        else:
            listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=forward,
                opts=child,
            )
            scheme = "http"
        service = app.service(depends_on=[listener])

        minimum = args.min_tasks if args.image_tag else 0
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=minimum,
            max_capacity=max(args.max_tasks, minimum),
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{name}-cpu",
            name=f"{args.name}-service-cpu",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration={
                "predefined_metric_specification": {
                    "predefined_metric_type": "ECSServiceAverageCPUUtilization"
                },
                "target_value": args.cpu_target_percent,
                "scale_in_cooldown": 300,
                "scale_out_cooldown": 60,
            },
            opts=child,
        )

        self.base_url = pulumi.Output.concat(f"{scheme}://", alb.dns_name)
        self.url = pulumi.Output.concat(self.base_url, "/")
        self.cluster_arn = cluster.arn
        self.cluster_name = cluster.name
        self.listener_arn = listener.arn
        self.listener = listener
        self.register_outputs({"url": self.url, "cluster_arn": self.cluster_arn})
