"""RDS PostgreSQL 16 in the data subnets: private, encrypted, TLS-only, password owned by RDS.

``manage_master_user_password`` makes RDS generate the master password and keep it in a
Secrets Manager secret it rotates; Pulumi never sees it, so it is in neither the state nor the
config. Readers get the secret's ARN and read it at run time (the Lambdas through Powertools,
the ECS tasks through the task definition's ``secrets``, MLflow at boot). The ``mlflow``
database on the same instance is created by the MLflow server's bootstrap, not here: creating it
from Pulumi would need a provider holding the password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra.components.network import POSTGRES_PORT

ENGINE_VERSION = "16"
DATABASE_NAME = "pricebot"
MASTER_USERNAME = "pricebot"
MLFLOW_DATABASE_NAME = "mlflow"


@dataclass(frozen=True)
class DatabaseArgs:
    name: str
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    instance_class: str = "db.t4g.micro"
    allocated_storage_gb: int = 20
    max_allocated_storage_gb: int = 100
    backup_retention_days: int = 7
    deletion_protection: bool = True
    multi_az: bool = False


class Database(pulumi.ComponentResource):
    """The instance; outputs its address, port, database name and the master secret's ARN."""

    address: pulumi.Output[str]
    port: pulumi.Output[int]
    secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Database", name, None, opts)
        child = ResourceOptions(parent=self)

        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            name=f"{args.name}-db",
            description="pricebot database: data-tier subnets, no route out",
            subnet_ids=list(args.subnet_ids),
            opts=child,
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            name=f"{args.name}-pg{ENGINE_VERSION}",
            family=f"postgres{ENGINE_VERSION}",
            description="pricebot: TLS required, slow statements logged",
            parameters=[
                {"name": "rds.force_ssl", "value": "1"},
                {"name": "log_min_duration_statement", "value": "1000"},
            ],
            opts=child,
        )
        instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=f"{args.name}-db",
            engine="postgres",
            engine_version=ENGINE_VERSION,
            auto_minor_version_upgrade=True,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=DATABASE_NAME,
            username=MASTER_USERNAME,
            manage_master_user_password=True,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnet_group.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[args.security_group_id],
            publicly_accessible=False,
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            backup_window="03:00-03:30",
            maintenance_window="sun:04:00-sun:04:30",
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{args.name}-db-final",
            enabled_cloudwatch_logs_exports=["postgresql"],
            performance_insights_enabled=False,
            apply_immediately=False,
            opts=child,
        )

        self.address = instance.address
        self.port = instance.port
        self.database_name = DATABASE_NAME
        self.username = MASTER_USERNAME
        self.secret_arn = instance.master_user_secrets.apply(lambda secrets: secrets[0].secret_arn)
        self.register_outputs(
            {"address": self.address, "port": self.port, "secret_arn": self.secret_arn}
        )
