"""Compose the components into the whole stack, from settings alone (no ``pulumi.Config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components import (
    Alarms,
    AlarmsArgs,
    Database,
    DatabaseArgs,
    Jobs,
    JobsArgs,
    MlflowServer,
    MlflowServerArgs,
    Monitoring,
    MonitoringArgs,
    Network,
    NetworkArgs,
    OidcProvider,
    Pipeline,
    PipelineArgs,
    Secrets,
    SecretsArgs,
    Serving,
    ServingArgs,
    Storage,
    StorageArgs,
)
from infra.components.fargate import TaskDeclaration
from infra.components.pipeline import FunctionDeclaration
from infra.config import REPO_ROOT, StackSettings, StackSettingsError, canonical_targets
from infra.tags import register_permissions_boundary, register_stack_tags


@dataclass(frozen=True)
class StackSecrets:
    """Values read from Pulumi *secret* config, kept out of :class:`StackSettings`."""

    oidc_client_secret: pulumi.Input[str] | None = None


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
    api_keys_secret_arn: pulumi.Output[str]
    alb_security_group_id: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    service_names: dict[str, pulumi.Output[str]]
    target_group_arns: dict[str, pulumi.Output[str]]
    jobs: pulumi.Output[dict]
    migrate_targets: pulumi.Output[list[str]]
    monitoring_routed: bool
    # Every ECS task and Lambda function as declared (not exported: for tests and the local
    # rehearsal that runs each of them as declared).
    declarations: dict[str, TaskDeclaration] = field(default_factory=dict)
    functions: dict[str, FunctionDeclaration] = field(default_factory=dict)


def build(settings: StackSettings, secrets: StackSecrets | None = None) -> StackOutputs:
    """Declare every resource of the stack; call inside a Pulumi program (or under mocks)."""
    register_stack_tags(settings.tags)
    if settings.role_permissions_boundary_arn:
        register_permissions_boundary(settings.role_permissions_boundary_arn)
    secrets = secrets or StackSecrets()
    s, name = settings, settings.name
    targets = canonical_targets(s.targets)

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
            alb_reaches_identity_provider=s.monitoring_routed,
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
    logins = Secrets("secrets", SecretsArgs(name=name, force_destroy=s.force_destroy))
    login = logins.login_secret_arns
    pipeline = Pipeline(
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
            db_secret_arn=login["pipeline"],
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
    # What every task reads: the database without credentials (each reads its own login's
    # secret, PRICEBOT_DATABASE_SECRET_ARN, set per task), the tracking server, what to serve.
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
        "PRICEBOT_TARGETS": ",".join(targets),
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
            db_secret_arn=login["service"],
            api_keys_secret_arn=logins.api_keys_secret_arn,
            environment=app_environment,
            certificate_arn=s.certificate_arn,
            domain_name=s.domain_name,
            hosted_zone_id=s.hosted_zone_id,
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
            db_secret_arn=login["monitoring"],
            environment=app_environment,
            auth=s.monitoring_auth,
            domain_name=s.domain_name,
            cognito_domain_prefix=(
                s.cognito_domain_prefix
                or aws.get_caller_identity_output().account_id.apply(lambda a: f"{name}-{a}")
            ),
            oidc=_oidc(s, secrets),
            cpu=s.monitoring_cpu,
            memory_mb=s.monitoring_memory_mb,
            log_retention_days=s.log_retention_days,
        ),
    )
    jobs = Jobs(
        "jobs",
        JobsArgs(
            name=name,
            region=s.region,
            app_subnet_ids=network.app_subnet_ids,
            security_group_id=sg["training"],
            cluster_arn=serving.cluster_arn,
            cluster_name=serving.cluster_name,
            repository_url=storage.repository_urls["training"],
            repository_arn=storage.repository_arns["training"],
            image_tag=s.training_image_tag,
            owner_secret_arn=database.secret_arn,
            login_secret_arns=login,
            role_secrets_json=logins.role_secrets_json(),
            api_keys_secret_arn=logins.api_keys_secret_arn,
            symbols=s.symbols,
            targets=targets,
            environment=app_environment,
            training_cpu=s.training_cpu,
            training_memory_mb=s.training_memory_mb,
            bootstrap_history_days=s.bootstrap_history_days,
            bootstrap_trials=s.bootstrap_trials,
            vision_url=s.vision_url,
            model_health_schedule=s.model_health_schedule,
            model_health_window_hours=s.model_health_window_hours,
            predict_schedule=s.predict_schedule,
            log_retention_days=s.log_retention_days,
        ),
    )
    apps = {"service": (serving.service_app.target_group.arn_suffix, serving.service_name)}
    if monitoring.routed:
        apps["monitoring"] = (monitoring.app.target_group.arn_suffix, monitoring.service_name)
    Alarms(
        "alarms",
        AlarmsArgs(
            name=name,
            topic_arn=pipeline.alarm_topic_arn,
            load_balancer_arn_suffix=serving.load_balancer.arn_suffix,
            service_target_group_arn_suffix=serving.service_app.target_group.arn_suffix,
            cluster_name=serving.cluster_name,
            apps=apps,
            symbols=s.symbols,
            targets=targets,
            feature_set=s.feature_set,
            schedules_dead_letter_queue_name=jobs.dead_letter_queue.name,
            service_error_alarm_count=s.service_error_alarm_count,
            latency_alarm_seconds=s.latency_alarm_seconds,
            model_health_alarm_hours=s.model_health_alarm_hours,
            error_ratio_alarm_threshold=s.error_ratio_alarm_threshold,
            drift_alarm_psi=s.drift_alarm_psi,
        ),
    )
    service_names = {"service": serving.service_name}
    target_group_arns = {"service": serving.service_app.target_group.arn}
    if monitoring.routed:
        service_names["monitoring"] = monitoring.service_name
        target_group_arns["monitoring"] = monitoring.target_group_arn
    return StackOutputs(
        api_url=serving.url,
        monitoring_url=monitoring.url,
        mlflow_url=mlflow.tracking_uri,
        database_endpoint=pulumi.Output.format("{0}:{1}", database.address, database.port),
        database_secret_arn=database.secret_arn,
        mlflow_instance_id=mlflow.instance_id,
        bucket_name=storage.bucket_name,
        repository_urls=storage.repository_urls,
        training_task_parameter=jobs.parameter_name,
        api_keys_secret_arn=logins.api_keys_secret_arn,
        alb_security_group_id=network.alb_security_group_id,
        cluster_name=serving.cluster_name,
        service_names=service_names,
        target_group_arns=target_group_arns,
        jobs=jobs.run_spec,
        migrate_targets=jobs.migrate_targets,
        monitoring_routed=monitoring.routed,
        declarations={
            "service": serving.task.declaration,
            "monitoring": monitoring.task.declaration,
            **jobs.declarations,
        },
        functions=pipeline.declarations,
    )


def _oidc(s: StackSettings, secrets: StackSecrets) -> OidcProvider | None:
    if s.monitoring_auth != "oidc":
        return None
    if secrets.oidc_client_secret is None:
        raise StackSettingsError(
            "monitoringAuth is oidc: set the client secret with "
            "`pulumi config set --secret pricebot:oidcClientSecret ...`"
        )
    return OidcProvider(
        issuer=s.oidc_issuer or "",
        authorization_endpoint=s.oidc_authorization_endpoint or "",
        token_endpoint=s.oidc_token_endpoint or "",
        user_info_endpoint=s.oidc_user_info_endpoint or "",
        client_id=s.oidc_client_id or "",
        client_secret=secrets.oidc_client_secret,
    )
