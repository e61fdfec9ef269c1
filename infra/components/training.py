"""The training job as an ECS task definition, run on demand inside the VPC.

The database and MLflow are reachable only from inside the VPC, so retraining runs there as a
Fargate task (``python -m training``) that the retrain workflow starts with ``ecs run-task``.
How to start it (cluster, task definition, container, subnets, security groups, symbols) is
written to the SSM parameter ``/<project>-<stack>/training-task`` for that workflow to read
(docs/ci.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra.components.fargate import FargateApp, FargateAppSpec

CONTAINER = "training"


@dataclass(frozen=True)
class TrainingArgs:
    name: str
    region: str
    vpc_id: pulumi.Input[str]
    app_subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    repository_url: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    image_tag: str | None
    db_secret_arn: pulumi.Input[str]
    symbols: Sequence[str]
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    cpu: int = 2048
    memory_mb: int = 8192
    log_retention_days: int = 30


class Training(pulumi.ComponentResource):
    """The training task definition and the parameter that says how to run it."""

    parameter_name: pulumi.Output[str]

    def __init__(self, name: str, args: TrainingArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Training", name, None, opts)
        app = FargateApp(
            FargateAppSpec(
                key=CONTAINER,
                name=args.name,
                region=args.region,
                cluster_arn=args.cluster_arn,
                vpc_id=args.vpc_id,
                subnet_ids=args.app_subnet_ids,
                security_group_id=args.security_group_id,
                repository_url=args.repository_url,
                repository_arn=args.repository_arn,
                image_tag=args.image_tag,
                port=None,
                health_check_path=None,
                cpu=args.cpu,
                memory_mb=args.memory_mb,
                db_secret_arn=args.db_secret_arn,
                environment=args.environment,
                log_retention_days=args.log_retention_days,
            ),
            parent=self,
        )
        how_to_run = pulumi.Output.all(
            args.cluster_name, app.task_definition.family, list(args.app_subnet_ids),
            args.security_group_id,
        ).apply(
            lambda v: json.dumps(
                {
                    "cluster": v[0],
                    "taskDefinition": v[1],
                    "container": CONTAINER,
                    "subnets": v[2],
                    "securityGroups": [v[3]],
                    "symbols": list(args.symbols),
                }
            )
        )  # fmt: skip
        parameter = aws.ssm.Parameter(
            f"{name}-task",
            name=f"/{args.name}/training-task",
            type="String",
            description="How the retrain workflow starts the training task (docs/ci.md)",
            value=how_to_run,
            opts=ResourceOptions(parent=self),
        )
        self.parameter_name = parameter.name
        self.register_outputs({"parameter_name": self.parameter_name})
