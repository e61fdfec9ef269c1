"""Compose the components into the whole stack, from settings alone (no ``pulumi.Config``)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.components import (
    Database,
    DatabaseArgs,
    MlflowServer,
    MlflowServerArgs,
    Monitoring,
    MonitoringArgs,
    Network,
    NetworkArgs,
    Pipeline,
    PipelineArgs,
    Serving,
    ServingArgs,
    Storage,
    StorageArgs,
    Training,
    TrainingArgs,
)
from infra.config import REPO_ROOT, StackSettings
from infra.tags import register_stack_tags


@dataclass(frozen=True)
class StackOutputs:
    api_url: pulumi.Output[str]
    monitoring_url: pulumi.Output[str]
    mlflow_url: pulumi.Output[str]
    database_endpoint: pulumi.Output[str]
    database_secret_arn: pulumi.Output[str]
    mlflow_instance_id: pulumi.Output[str]
    bucket_name: pulumi.Output[str]
    repository_urls: dict[str, pulumi.Output[str]]
    training_task_parameter: pulumi.Output[str]


def build(settings: StackSettings) -> StackOutputs:
    """Declare every resource of the stack; call inside a Pulumi program (or under mocks)."""
    register_stack_tags(settings.tags)
    s, name = settings, settings.name

    network = Network(
        "network",
        NetworkArgs(
            name=name,
            region=s.region,
            vpc_cidr=s.vpc_cidr,
            az_count=s.az_count,
            nat_gateways=s.nat_gateways,
            interface_endpoints=s.interface_endpoints,
            ingress_cidrs=s.ingress_cidrs,
            https=bool(s.certificate_arn),
        ),
    )
    sg = network.security_group_ids
    storage = Storage("storage", StorageArgs(name=name, force_destroy=s.force_destroy))
    database = Database(
        "database",
        DatabaseArgs(
            name=name,
            subnet_ids=network.data_subnet_ids,
            security_group_id=sg["database"],
            instance_class=s.db_instance_class,
            allocated_storage_gb=s.db_allocated_storage_gb,
            max_allocated_storage_gb=s.db_max_allocated_storage_gb,
            backup_retention_days=s.db_backup_retention_days,
            deletion_protection=s.db_deletion_protection,
            multi_az=s.db_multi_az,
        ),
    )
    Pipeline(
        "pipeline",
        PipelineArgs(
            name=name,
            region=s.region,
            subnet_ids=network.app_subnet_ids,
            security_group_id=sg["lambda"],
            bucket_name=storage.bucket_name,
            bucket_arn=storage.bucket_arn,
            db_host=database.address,
            db_port=database.port,
            db_name=database.database_name,
            db_secret_arn=database.secret_arn,
            symbols=s.symbols,
            binance_url=s.binance_url,
            feature_set=s.feature_set,
            architecture=s.lambda_architecture,
            core_layer_zip=s.core_layer_zip,
            data_layer_zip=s.data_layer_zip,
            ingest_zip=s.ingest_zip,
            transform_zip=s.transform_zip,
            ingest_schedule=s.ingest_schedule,
            transform_schedule=s.transform_schedule,
            lag_alarm_seconds=s.lag_alarm_seconds,
            log_retention_days=s.log_retention_days,
            alarm_email=s.alarm_email,
            root=str(REPO_ROOT),
        ),
    )
    mlflow = MlflowServer(
        "mlflow",
        MlflowServerArgs(
            name=name,
            region=s.region,
            subnet_id=network.app_subnet_ids[0],
            security_group_id=sg["mlflow"],
            bucket_name=storage.bucket_name,
            bucket_arn=storage.bucket_arn,
            db_host=database.address,
            db_port=database.port,
            db_admin_database=database.database_name,
            db_secret_arn=database.secret_arn,
            instance_type=s.mlflow_instance_type,
            mlflow_version=s.mlflow_version,
            ami_parameter=s.mlflow_ami_parameter,
        ),
        # The boot script installs MLflow from PyPI: the NAT route must exist before it runs.
        opts=pulumi.ResourceOptions(depends_on=[network]),
    )
    # What both apps read: the database without credentials (libpq takes PGUSER/PGPASSWORD,
    # which ECS injects from the secret), the tracking server, and what to serve.
    app_environment = {
        "PRICEBOT_DATABASE_URL": pulumi.Output.format(
            "postgresql://{0}:{1}/{2}?sslmode=require",
            database.address,
            database.port,
            database.database_name,
        ),
        "MLFLOW_TRACKING_URI": mlflow.tracking_uri,
        "PRICEBOT_MODEL_ALIAS": s.model_alias,
        "PRICEBOT_SYMBOLS": ",".join(s.symbols),
        "PRICEBOT_TARGETS": ",".join(s.targets),
        "PRICEBOT_FEATURE_SET": s.feature_set,
        "BENTOML_DO_NOT_TRACK": "True",
    }
    serving = Serving(
        "serving",
        ServingArgs(
            name=name,
            region=s.region,
            vpc_id=network.vpc_id,
            public_subnet_ids=network.public_subnet_ids,
            app_subnet_ids=network.app_subnet_ids,
            alb_security_group_id=sg["alb"],
            service_security_group_id=sg["service"],
            repository_url=storage.repository_urls["service"],
            repository_arn=storage.repository_arns["service"],
            image_tag=s.service_image_tag,
            db_secret_arn=database.secret_arn,
            environment=app_environment,
            certificate_arn=s.certificate_arn,
            cpu=s.service_cpu,
            memory_mb=s.service_memory_mb,
            min_tasks=s.service_min_tasks,
            max_tasks=s.service_max_tasks,
            cpu_target_percent=s.service_cpu_target_percent,
            log_retention_days=s.log_retention_days,
        ),
    )
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            name=name,
            region=s.region,
            vpc_id=network.vpc_id,
            app_subnet_ids=network.app_subnet_ids,
            security_group_id=sg["monitoring"],
            cluster_arn=serving.cluster_arn,
            listener=serving.listener,
            base_url=serving.base_url,
            repository_url=storage.repository_urls["monitoring"],
            repository_arn=storage.repository_arns["monitoring"],
            image_tag=s.monitoring_image_tag,
            db_secret_arn=database.secret_arn,
            environment=app_environment,
            cpu=s.monitoring_cpu,
            memory_mb=s.monitoring_memory_mb,
            log_retention_days=s.log_retention_days,
        ),
    )
    training = Training(
        "training",
        TrainingArgs(
            name=name,
            region=s.region,
            vpc_id=network.vpc_id,
            app_subnet_ids=network.app_subnet_ids,
            security_group_id=sg["training"],
            cluster_arn=serving.cluster_arn,
            cluster_name=serving.cluster_name,
            repository_url=storage.repository_urls["training"],
            repository_arn=storage.repository_arns["training"],
            image_tag=s.training_image_tag,
            db_secret_arn=database.secret_arn,
            symbols=s.symbols,
            environment=app_environment,
            cpu=s.training_cpu,
            memory_mb=s.training_memory_mb,
            log_retention_days=s.log_retention_days,
        ),
    )
    return StackOutputs(
        api_url=serving.url,
        monitoring_url=monitoring.url,
        mlflow_url=mlflow.tracking_uri,
        database_endpoint=pulumi.Output.format("{0}:{1}", database.address, database.port),
        database_secret_arn=database.secret_arn,
        mlflow_instance_id=mlflow.instance_id,
        bucket_name=storage.bucket_name,
        repository_urls=storage.repository_urls,
        training_task_parameter=training.parameter_name,
    )
