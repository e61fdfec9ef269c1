"""The prediction service: BentoML on ECS Fargate behind the stack's Application Load Balancer.

The load balancer is the only thing reachable from outside the VPC, and only from
``ingressCidrs``: on 80, or on 443 when a certificate is configured (80 then only redirects).
Every answer but the health checks, the docs page and the OpenAPI spec needs an API key
(``X-API-Key`` or ``Authorization: Bearer``), checked by the service against
``PRICEBOT_API_KEYS``, which ECS injects from the stack's API key secret at task start (a key
rotation therefore rolls the service: ``aws ecs update-service --force-new-deployment``). Tasks
run in the app subnets without public IPs, are health-checked on ``/readyz`` and scale on CPU;
they log in to PostgreSQL as the service's own role (read features and candles, add
predictions). The service follows the configured MLflow alias itself (it polls the registry).

With ``domainName`` the URLs use it (the certificate's name); with ``hostedZoneId`` too the
stack creates its alias record, otherwise pointing the name at the load balancer's DNS name is
a manual step (docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra.components.fargate import FargateService, FargateTask, ServiceSpec, TaskSpec
from infra.components.network import SERVICE_PORT

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
API_KEYS_ENV = "PRICEBOT_API_KEYS"


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
    api_keys_secret_arn: pulumi.Input[str]
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    certificate_arn: str | None = None
    domain_name: str | None = None
    hosted_zone_id: str | None = None
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

        # Container Insights: the running and desired task counts the alarms compare.
        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=args.name,
            settings=[{"name": "containerInsights", "value": "enabled"}],
            opts=child,
        )
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
        task = FargateTask(
            TaskSpec(
                key="service",
                image_role="service",
                name=args.name,
                region=args.region,
                repository_url=args.repository_url,
                repository_arn=args.repository_arn,
                image_tag=args.image_tag,
                cpu=args.cpu,
                memory_mb=args.memory_mb,
                log_retention_days=args.log_retention_days,
                command=None,  # the Bento's own `bentoml serve`
                environment=args.environment,
                db_secret_arn=args.db_secret_arn,
                injected_secrets={API_KEYS_ENV: args.api_keys_secret_arn},
                port=SERVICE_PORT,
            ),
            parent=self,
        )
        app = FargateService(
            task,
            ServiceSpec(
                cluster_arn=cluster.arn,
                vpc_id=args.vpc_id,
                subnet_ids=args.app_subnet_ids,
                security_group_id=args.service_security_group_id,
                health_check_path="/readyz",
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
            pulumi.log.warn(
                "no certificateArn: the API listens on plain HTTP, so its API key crosses the "
                "network unencrypted; configure a certificate and domainName for production"
            )
            listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=forward,
                opts=child,
            )
            scheme = "http"
        service = app.start(depends_on=[listener])

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
        if args.hosted_zone_id and args.domain_name:
            aws.route53.Record(
                f"{name}-dns",
                zone_id=args.hosted_zone_id,
                name=args.domain_name,
                type="A",
                aliases=[
                    {
                        "name": alb.dns_name,
                        "zone_id": alb.zone_id,
                        "evaluate_target_health": True,
                    }
                ],
                opts=child,
            )

        host = pulumi.Output.from_input(args.domain_name) if args.domain_name else alb.dns_name
        self.https = bool(args.certificate_arn)
        self.base_url = pulumi.Output.concat(f"{scheme}://", host)
        self.url = pulumi.Output.concat(self.base_url, "/")
        self.cluster_arn = cluster.arn
        self.cluster_name = cluster.name
        self.listener_arn = listener.arn
        self.listener = listener
        self.load_balancer = alb
        self.service_app = app
        self.service_name = service.name
        self.task = task
        self.register_outputs(
            {
                "url": self.url,
                "cluster_arn": self.cluster_arn,
                "service_name": self.service_name,
                "target_group_arn": app.target_group.arn,
            }
        )
