"""One container on Fargate: a task definition with its log group and roles, and optionally the
load-balanced service that keeps it running.

Every component that talks to PostgreSQL logs in as its own role, whose credentials are in its
own Secrets Manager secret: the task gets the secret's ARN in ``PRICEBOT_DATABASE_SECRET_ARN``
and its task role may read that secret; the core reads it at connect time, cached, and again
when the password was rotated (pricebot.db), so a rotation needs no restart. (ECS-injected
secrets are read once, at task start: they are used only for values a restart may pick up, the
service's API keys.) ``PRICEBOT_DATABASE_URL`` carries host, port and database only.

What each task runs is kept as a :class:`TaskDeclaration` (image role, command, environment,
injected secrets) so tests, and a rehearsal that runs every task locally, read it from the
program rather than from a copy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra import iam

UNPUSHED_TAG = "not-pushed-yet"
DATABASE_SECRET_ENV = "PRICEBOT_DATABASE_SECRET_ARN"  # noqa: S105 - a variable name


@dataclass(frozen=True)
class TaskSpec:
    """What one Fargate task runs, and what it may touch."""

    key: str  # resource and container name: service, monitoring, migrate, bootstrap, ...
    image_role: str  # which image: "service" (the Bento), "monitoring" or "job"
    name: str  # physical name prefix, e.g. pricebot-dev
    region: str
    repository_url: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    image_tag: str | None
    cpu: int
    memory_mb: int
    log_retention_days: int
    command: tuple[str, ...] | None = None  # None: the image's own CMD
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Read by the task at run time (and re-read on rotation): its database login.
    db_secret_arn: pulumi.Input[str] | None = None
    # Injected by ECS at start, whole secret value -> environment variable.
    injected_secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # More for the task role (the app's own AWS calls), as iam.allow statements.
    task_statements: Sequence[dict[str, Any]] = ()
    port: int | None = None


@dataclass(frozen=True)
class TaskDeclaration:
    """A task as declared: enough to run it elsewhere exactly as ECS would."""

    key: str
    family: str
    container: str
    image_role: str
    image: pulumi.Output[str]
    command: tuple[str, ...] | None
    environment: pulumi.Output[dict[str, str]]
    secrets: dict[str, pulumi.Output[str]]  # environment variable -> secret ARN
    task_definition_arn: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]


def execution_policy(
    *,
    repository_arn: pulumi.Input[str],
    log_group_arn: pulumi.Input[str],
    injected_secret_arns: Sequence[pulumi.Input[str]] = (),
) -> pulumi.Output[str]:
    """What ECS needs to start the task: pull its image, write its logs, inject its secrets."""
    statements = [
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
    ]
    if injected_secret_arns:
        statements.append(iam.allow(["secretsmanager:GetSecretValue"], list(injected_secret_arns)))
    return iam.document(*statements)


def task_policy(
    db_secret_arn: pulumi.Input[str] | None, statements: Sequence[dict[str, Any]]
) -> pulumi.Output[str] | None:
    """What the app itself may call: read its database secret, plus its own statements."""
    own = list(statements)
    if db_secret_arn is not None:
        own.insert(0, iam.allow(["secretsmanager:GetSecretValue"], db_secret_arn))
    return iam.document(*own) if own else None


def container_definitions(
    *,
    key: str,
    image: str,
    port: int | None,
    command: Sequence[str] | None,
    environment: Mapping[str, str],
    secrets: Mapping[str, str],
    log_group: str,
    region: str,
) -> str:
    """The one container of the task, as ECS's JSON wants it."""
    container: dict[str, Any] = {
        "name": key,
        "image": image,
        "essential": True,
        "portMappings": [{"containerPort": port, "protocol": "tcp"}] if port else [],
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": key,
            },
        },
    }
    if command is not None:
        container["command"] = list(command)
    return json.dumps([container])


class FargateTask:
    """Declares the log group, execution and task roles and the task definition of one task."""

    def __init__(self, spec: TaskSpec, parent: pulumi.Resource) -> None:
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
        self.execution_policy = aws.iam.RolePolicy(
            f"{key}-execution",
            role=execution_role.id,
            policy=execution_policy(
                repository_arn=spec.repository_arn,
                log_group_arn=log_group.arn,
                injected_secret_arns=list(spec.injected_secrets.values()),
            ),
            opts=child,
        )
        task_role = aws.iam.Role(
            f"{key}-task",
            name=f"{name}-task",
            assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"),
            opts=child,
        )
        policy = task_policy(spec.db_secret_arn, spec.task_statements)
        self.task_policy: aws.iam.RolePolicy | None = None
        if policy is not None:
            self.task_policy = aws.iam.RolePolicy(
                f"{key}-task", role=task_role.id, policy=policy, opts=child
            )
        environment = {**spec.environment, "AWS_DEFAULT_REGION": spec.region}
        if spec.db_secret_arn is not None:
            environment[DATABASE_SECRET_ENV] = spec.db_secret_arn
        tag = spec.image_tag or UNPUSHED_TAG
        image = pulumi.Output.concat(spec.repository_url, ":", tag)
        resolved_env = pulumi.Output.from_input(environment)
        resolved_secrets = pulumi.Output.from_input(dict(spec.injected_secrets))
        definitions = pulumi.Output.all(
            image, log_group.name, resolved_env, resolved_secrets
        ).apply(
            lambda v: container_definitions(
                key=key,
                image=v[0],
                port=spec.port,
                command=spec.command,
                environment=v[2],
                secrets=v[3],
                log_group=v[1],
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
            opts=ResourceOptions(
                parent=parent,
                depends_on=[self.task_policy] if self.task_policy is not None else None,
            ),
        )
        self.spec = spec
        self.family = name
        self.task_definition = task
        self.log_group = log_group
        self.execution_role = execution_role
        self.task_role = task_role
        self.declaration = TaskDeclaration(
            key=key,
            family=name,
            container=key,
            image_role=spec.image_role,
            image=image,
            command=spec.command,
            environment=resolved_env,
            secrets={k: pulumi.Output.from_input(v) for k, v in spec.injected_secrets.items()},
            task_definition_arn=task.arn,
            task_role_arn=task_role.arn,
            execution_role_arn=execution_role.arn,
        )


@dataclass(frozen=True)
class ServiceSpec:
    """How a task runs as a service behind the load balancer."""

    cluster_arn: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    health_check_path: str
    desired_count: int = 1
    sticky: bool = False
    autoscaled: bool = False


class FargateService:
    """The target group of a task and the ECS service that keeps it running behind the ALB."""

    def __init__(self, task: FargateTask, spec: ServiceSpec, parent: pulumi.Resource) -> None:
        if task.spec.port is None:
            raise ValueError(f"{task.spec.key} has no port, so it runs as a task, not a service")
        self.task = task
        self.spec = spec
        self._parent = parent
        key = task.spec.key
        self.target_group = aws.lb.TargetGroup(
            f"{key}-tg",
            name=task.family[:32],
            port=task.spec.port,
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
            opts=ResourceOptions(parent=parent),
        )
        # Until an image tag is configured there is nothing to run: keep the service at zero.
        self.desired_count = spec.desired_count if task.spec.image_tag else 0
        self.service: aws.ecs.Service | None = None

    def start(self, depends_on: Sequence[pulumi.Resource]) -> aws.ecs.Service:
        """The ECS service, once the listener (rule) that routes to the target group exists."""
        spec, task = self.spec, self.task
        self.service = aws.ecs.Service(
            f"{task.spec.key}-service",
            name=task.family,
            cluster=spec.cluster_arn,
            task_definition=task.task_definition.arn,
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
                    "container_name": task.spec.key,
                    "container_port": task.spec.port,
                }
            ],
            health_check_grace_period_seconds=120,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # An autoscaled service's count belongs to the autoscaler (whose minimum raises it
            # from zero once an image tag is configured).
            opts=ResourceOptions(
                parent=self._parent,
                depends_on=list(depends_on),
                ignore_changes=["desiredCount"] if spec.autoscaled else None,
            ),
        )
        return self.service
