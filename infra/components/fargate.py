"""One container on Fargate: serving and monitoring behind the load balancer, training on demand.

The task gets the database password the way ECS offers it: the task definition names the
secret's ``password`` key and ECS injects it as ``PGPASSWORD`` when the task starts, so it is in
neither the task definition nor the Pulumi state. libpq reads ``PGUSER``/``PGPASSWORD`` from the
environment, so ``PRICEBOT_DATABASE_URL`` carries host, port and database only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra import iam

UNPUSHED_TAG = "not-pushed-yet"


@dataclass(frozen=True)
class FargateAppSpec:
    key: str  # "service" | "monitoring"
    name: str  # physical name prefix, e.g. pricebot-dev
    region: str
    cluster_arn: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    repository_url: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    image_tag: str | None
    port: int | None  # None: a task run on demand (training), no load balancer
    health_check_path: str | None
    cpu: int
    memory_mb: int
    db_secret_arn: pulumi.Input[str]
    environment: Mapping[str, pulumi.Input[str]]
    log_retention_days: int
    desired_count: int = 1
    sticky: bool = False
    autoscaled: bool = False


def execution_policy(
    *,
    repository_arn: pulumi.Input[str],
    log_group_arn: pulumi.Input[str],
    secret_arn: pulumi.Input[str],
) -> pulumi.Output[str]:
    """What ECS needs to start the task: pull its image, write its logs, inject its secret."""
    return iam.document(
        iam.allow(
            ["ecr:GetAuthorizationToken"],
            iam.any_resource("ECR's registry login token is account-wide, not per repository"),
        ),
        iam.allow(
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            repository_arn,
        ),
        iam.allow(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            pulumi.Output.concat(log_group_arn, ":*"),
        ),
        iam.allow(["secretsmanager:GetSecretValue"], secret_arn),
    )


def container_definitions(
    *,
    key: str,
    image: str,
    port: int | None,
    environment: Mapping[str, str],
    secret_arn: str,
    log_group: str,
    region: str,
) -> str:
    """The one container of the task, as ECS's JSON wants it."""
    return json.dumps(
        [
            {
                "name": key,
                "image": image,
                "essential": True,
                "portMappings": [{"containerPort": port, "protocol": "tcp"}] if port else [],
                "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
                "secrets": [
                    {"name": "PGUSER", "valueFrom": f"{secret_arn}:username::"},
                    {"name": "PGPASSWORD", "valueFrom": f"{secret_arn}:password::"},
                ],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": log_group,
                        "awslogs-region": region,
                        "awslogs-stream-prefix": key,
                    },
                },
            }
        ]
    )


class FargateApp:
    """Declares the log group, roles, task definition, target group and service of one app."""

    def __init__(self, spec: FargateAppSpec, parent: pulumi.Resource) -> None:
        child = ResourceOptions(parent=parent)
        key, name = spec.key, f"{spec.name}-{spec.key}"
        log_group = aws.cloudwatch.LogGroup(
            f"{key}-logs",
            name=f"/ecs/{name}",
            retention_in_days=spec.log_retention_days,
            opts=child,
        )
        execution_role = aws.iam.Role(
            f"{key}-execution",
            name=f"{name}-execution",
            assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{key}-execution",
            role=execution_role.id,
            policy=execution_policy(
                repository_arn=spec.repository_arn,
                log_group_arn=log_group.arn,
                secret_arn=spec.db_secret_arn,
            ),
            opts=child,
        )
        # Deliberately without policies: the app reaches Postgres with the password ECS
        # injects and MLflow over HTTP (artifacts proxied), so it needs no AWS API at all.
        task_role = aws.iam.Role(
            f"{key}-task",
            name=f"{name}-task",
            assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"),
            opts=child,
        )
        tag = spec.image_tag or UNPUSHED_TAG
        image = pulumi.Output.concat(spec.repository_url, ":", tag)
        definitions = pulumi.Output.all(
            image, spec.db_secret_arn, log_group.name, pulumi.Output.from_input(spec.environment)
        ).apply(
            lambda v: container_definitions(
                key=key,
                image=v[0],
                port=spec.port,
                environment=v[3],
                secret_arn=v[1],
                log_group=v[2],
                region=spec.region,
            )
        )
        task = aws.ecs.TaskDefinition(
            f"{key}-task",
            family=name,
            cpu=str(spec.cpu),
            memory=str(spec.memory_mb),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            container_definitions=definitions,
            opts=child,
        )
        self.task_definition = task
        self.log_group = log_group
        self.name = name
        self.container_name = key
        self._spec = spec
        self._child = child
        self.target_group: aws.lb.TargetGroup | None = None
        self.desired_count = 0
        if spec.port is None:
            return
        self.target_group = aws.lb.TargetGroup(
            f"{key}-tg",
            name=f"{name}"[:32],
            port=spec.port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=spec.vpc_id,
            deregistration_delay=30,
            health_check={
                "path": spec.health_check_path,
                "matcher": "200",
                "interval": 15,
                "timeout": 5,
                "healthy_threshold": 2,
                "unhealthy_threshold": 3,
            },
            stickiness=(
                {"type": "lb_cookie", "enabled": True, "cookie_duration": 86400}
                if spec.sticky
                else None
            ),
            opts=child,
        )
        # Until an image tag is configured there is nothing to run: keep the service at zero.
        self.desired_count = spec.desired_count if spec.image_tag else 0

    def service(self, depends_on: Sequence[pulumi.Resource]) -> aws.ecs.Service:
        """The ECS service, once the listener that routes to the target group exists."""
        spec = self._spec
        if self.target_group is None:
            raise ValueError(f"{spec.key} has no port, so it runs as a task, not a service")
        return aws.ecs.Service(
            f"{spec.key}-service",
            name=self.name,
            cluster=spec.cluster_arn,
            task_definition=self.task_definition.arn,
            launch_type="FARGATE",
            desired_count=self.desired_count,
            network_configuration={
                "subnets": list(spec.subnet_ids),
                "security_groups": [spec.security_group_id],
                "assign_public_ip": False,
            },
            load_balancers=[
                {
                    "target_group_arn": self.target_group.arn,
                    "container_name": spec.key,
                    "container_port": spec.port,
                }
            ],
            health_check_grace_period_seconds=120,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # An autoscaled service's count belongs to the autoscaler (whose minimum raises it
            # from zero once an image tag is configured).
            opts=ResourceOptions(
                parent=self._child.parent,
                depends_on=list(depends_on),
                ignore_changes=["desiredCount"] if spec.autoscaled else None,
            ),
        )
