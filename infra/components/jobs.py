"""The job image's tasks: migrations, bootstrap, training and the two hourly jobs (batch
predictions, model health).

The database and MLflow are reachable only inside the VPC, so everything that is not a
long-running service runs there as a Fargate task of the job image (entrypoint ``pricebot``),
each with its own task definition, log group, database login and permissions:

==========  ==================================  ===========================  ======================
task        command                             logs in as                   started by
==========  ==================================  ===========================  ======================
migrate     ``pricebot db upgrade``             the database owner (RDS      the deploy, before
                                                master secret); fills the    ``pulumi up`` rolls
                                                component secrets, syncs     out the new code
                                                the login roles
bootstrap   ``pricebot bootstrap                pricebot_bootstrap_login     the deploy, after
            --history-days N --trials T``       (pipeline + training)        ``pulumi up``
training    ``pricebot train --symbol S         pricebot_training_login      retrain.yml (daily)
            --target T --trials N --quiet``
score       ``pricebot score --publish-metrics``  pricebot_pipeline_login    EventBridge Scheduler
                                                                             (hourly by default)
predict     ``pricebot predict                  pricebot_service_login       EventBridge Scheduler
            --publish-metrics``                 (the service's path: reads   (hourly by default)
                                                features, adds predictions)
==========  ==================================  ===========================  ======================

The ``predict`` job logs one prediction per served symbol and target through the service's own
:class:`pricebot.serving.Predictor` (pricebot.batch), so live performance accrues even when
nobody calls the API. It does exactly what the service does to the database, so it logs in as
the service's role rather than getting one of its own: a second login with the same grants
would only be a second password to rotate.

The training task's command depends on the symbol, so its task definition has none and whoever
starts it passes ``TRAIN_COMMAND`` filled in; the SSM parameter ``/<prefix>/training-task``
tells the retrain workflow how (cluster, task definition, container, network, symbols, command
template). Stack output ``jobs`` does the same for the deploy; ``migrate_targets`` lists the URNs
the deploy updates alone (``pulumi up --target``) so the migration runs on the new image before
anything else changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra import iam
from infra.components.fargate import FargateTask, TaskDeclaration, TaskSpec

JOB_TASKS = ("migrate", "bootstrap", "training", "score", "predict")
#: The tasks EventBridge Scheduler starts (the scheduler role may run and pass these only).
SCHEDULED_TASKS = ("score", "predict")
MIGRATE_COMMAND = ("db", "upgrade")
SCORE_COMMAND = ("score", "--publish-metrics")
PREDICT_COMMAND = ("predict", "--publish-metrics")
TRAIN_COMMAND = (
    "train", "--symbol", "{symbol}", "--target", "{target}", "--trials", "{trials}", "--quiet",
)  # fmt: skip
MODEL_METRICS_NAMESPACE = "pricebot/model"  # pricebot.model_health.NAMESPACE
ROLE_SECRETS_ENV = "PRICEBOT_DB_ROLE_SECRETS"  # pricebot.roles
API_KEYS_SECRET_ENV = "PRICEBOT_API_KEYS_SECRET_ARN"  # noqa: S105 - a variable name


VISION_URL_ENV = "PRICEBOT_VISION_URL"  # pricebot.settings: where the backfill downloads


def bootstrap_command(history_days: int, trials: int) -> tuple[str, ...]:
    return ("bootstrap", "--history-days", str(history_days), "--trials", str(trials))


@dataclass(frozen=True)
class JobsArgs:
    name: str
    region: str
    app_subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    repository_url: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    image_tag: str | None
    owner_secret_arn: pulumi.Input[str]  # the RDS-managed master secret
    login_secret_arns: Mapping[str, pulumi.Input[str]]  # secrets.LOGINS key -> ARN
    role_secrets_json: pulumi.Input[str]
    api_keys_secret_arn: pulumi.Input[str]
    symbols: Sequence[str]
    targets: Sequence[str]
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    training_cpu: int = 2048
    training_memory_mb: int = 8192
    bootstrap_history_days: int = 90
    bootstrap_trials: int = 30
    vision_url: str = "https://data.binance.vision"
    model_health_schedule: str = "rate(1 hour)"
    model_health_window_hours: float = 24.0
    predict_schedule: str = "rate(1 hour)"
    log_retention_days: int = 30


class Jobs(pulumi.ComponentResource):
    """The five task definitions, the two schedules and how to start each task."""

    parameter_name: pulumi.Output[str]
    run_spec: pulumi.Output[dict]
    migrate_targets: pulumi.Output[list[str]]

    def __init__(self, name: str, args: JobsArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Jobs", name, None, opts)
        secrets = args.login_secret_arns
        writable = [*secrets.values(), args.api_keys_secret_arn]

        def task(key: str, **spec: object) -> FargateTask:
            defaults: dict = {
                "image_role": "job",
                "name": args.name,
                "region": args.region,
                "repository_url": args.repository_url,
                "repository_arn": args.repository_arn,
                "image_tag": args.image_tag,
                "cpu": 512,
                "memory_mb": 1024,
                "log_retention_days": args.log_retention_days,
                "environment": args.environment,
            }
            return FargateTask(TaskSpec(key=key, **{**defaults, **spec}), parent=self)

        migrate = task(
            "migrate",
            command=MIGRATE_COMMAND,
            db_secret_arn=args.owner_secret_arn,
            environment={
                **args.environment,
                ROLE_SECRETS_ENV: args.role_secrets_json,
                API_KEYS_SECRET_ENV: args.api_keys_secret_arn,
            },
            task_statements=[
                iam.allow(
                    ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"], writable
                ),
                iam.allow(
                    ["secretsmanager:GetRandomPassword"],
                    iam.any_resource("GetRandomPassword generates a value; it names no secret"),
                ),
            ],
        )
        bootstrap = task(
            "bootstrap",
            command=bootstrap_command(args.bootstrap_history_days, args.bootstrap_trials),
            db_secret_arn=secrets["bootstrap"],
            environment={**args.environment, VISION_URL_ENV: args.vision_url},
            cpu=args.training_cpu,
            memory_mb=args.training_memory_mb,
        )
        training = task(
            "training",
            command=None,  # per symbol: TRAIN_COMMAND, filled in by whoever starts it
            db_secret_arn=secrets["training"],
            cpu=args.training_cpu,
            memory_mb=args.training_memory_mb,
        )
        # Both hourly jobs publish into the model namespace (health; the batch's heartbeat) only.
        publish_model_metrics = iam.allow(
            ["cloudwatch:PutMetricData"],
            iam.any_resource("PutMetricData has no resources; the namespace is pinned"),
            condition={"StringEquals": {"cloudwatch:namespace": MODEL_METRICS_NAMESPACE}},
        )
        score = task(
            "score",
            command=SCORE_COMMAND,
            db_secret_arn=secrets["pipeline"],
            environment={
                **args.environment,
                "PRICEBOT_MODEL_HEALTH_WINDOW_HOURS": str(args.model_health_window_hours),
            },
            task_statements=[publish_model_metrics],
        )
        predict = task(
            "predict",
            command=PREDICT_COMMAND,
            # The service's path, so the service's login (see the module docstring).
            db_secret_arn=secrets["service"],
            task_statements=[publish_model_metrics],
        )
        self.tasks = {t.spec.key: t for t in (migrate, bootstrap, training, score, predict)}
        if tuple(self.tasks) != JOB_TASKS:
            raise ValueError(f"the job tasks are {tuple(self.tasks)}, JOB_TASKS says {JOB_TASKS}")
        self.declarations: dict[str, TaskDeclaration] = {
            k: t.declaration for k, t in self.tasks.items()
        }
        self._schedule(
            name,
            args,
            {
                "score": (score, args.model_health_schedule,
                          "pricebot score --publish-metrics: outcomes, champion error, drift"),
                "predict": (predict, args.predict_schedule,
                            "pricebot predict: every served symbol and target into the log"),
            },
        )  # fmt: skip

        network = {"subnets": list(args.app_subnet_ids), "securityGroups": [args.security_group_id]}
        how_to_train = pulumi.Output.all(args.cluster_name, network).apply(
            lambda v: json.dumps(
                {
                    "cluster": v[0],
                    "taskDefinition": training.family,
                    "container": "training",
                    **v[1],
                    "symbols": list(args.symbols),
                    "targets": list(args.targets),
                    "command": list(TRAIN_COMMAND),
                }
            )
        )
        parameter = aws.ssm.Parameter(
            f"{name}-training-task",
            name=f"/{args.name}/training-task",
            type="String",
            description="How the retrain workflow starts the training task (docs/ci.md)",
            value=how_to_train,
            opts=ResourceOptions(parent=self),
        )
        self.parameter_name = parameter.name
        self.run_spec = pulumi.Output.all(args.cluster_name, network).apply(
            lambda v: {
                "cluster": v[0],
                **v[1],
                "tasks": {
                    key: {
                        "taskDefinition": t.family,
                        "container": key,
                        "command": list(t.spec.command) if t.spec.command else None,
                    }
                    for key, t in self.tasks.items()
                },
            }
        )
        targets = [migrate.task_definition, migrate.execution_policy]
        if migrate.task_policy is not None:
            targets.append(migrate.task_policy)
        self.migrate_targets = pulumi.Output.all(*[r.urn for r in targets])
        self.register_outputs(
            {
                "parameter_name": self.parameter_name,
                "run_spec": self.run_spec,
                "migrate_targets": self.migrate_targets,
            }
        )

    def _schedule(
        self, name: str, args: JobsArgs, scheduled: Mapping[str, tuple[FargateTask, str, str]]
    ) -> None:
        """EventBridge Scheduler runs the scheduled tasks (key -> task, expression, description)
        with one role that may start those task families only; what it cannot start goes to
        one queue."""
        if tuple(scheduled) != SCHEDULED_TASKS:
            raise ValueError(
                f"the scheduled tasks are {tuple(scheduled)}, SCHEDULED_TASKS says "
                f"{SCHEDULED_TASKS}"
            )
        child = ResourceOptions(parent=self)
        identity = aws.get_caller_identity_output()
        partition = aws.get_partition_output().partition
        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-schedules-dlq",
            name=f"{args.name}-schedules-dlq",
            message_retention_seconds=14 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-scheduler",
            name=f"{args.name}-scheduler",
            assume_role_policy=identity.account_id.apply(
                lambda account: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "scheduler.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        tasks = [task for task, _, _ in scheduled.values()]
        prefix = pulumi.Output.concat(
            "arn:", partition, ":ecs:", args.region, ":", identity.account_id, ":task-definition/"
        )
        family_arns = [pulumi.Output.concat(prefix, task.family, ":*") for task in tasks]
        passed = [arn for task in tasks for arn in (task.task_role.arn, task.execution_role.arn)]
        policy = aws.iam.RolePolicy(
            f"{name}-scheduler",
            role=role.id,
            policy=iam.document(
                iam.allow(
                    ["ecs:RunTask"],
                    family_arns,
                    condition={"ArnEquals": {"ecs:cluster": args.cluster_arn}},
                ),
                iam.allow(
                    ["iam:PassRole"],
                    passed,
                    condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                ),
                iam.allow(["sqs:SendMessage"], self.dead_letter_queue.arn),
            ),
            opts=child,
        )
        self.schedules = {
            key: aws.scheduler.Schedule(
                f"{name}-{key}",
                name=f"{args.name}-{key}",
                description=description,
                schedule_expression=expression,
                flexible_time_window={"mode": "OFF"},
                target={
                    "arn": args.cluster_arn,
                    "role_arn": role.arn,
                    "ecs_parameters": {
                        "task_definition_arn": task.task_definition.arn,
                        "launch_type": "FARGATE",
                        "task_count": 1,
                        "network_configuration": {
                            "subnets": list(args.app_subnet_ids),
                            "security_groups": [args.security_group_id],
                            "assign_public_ip": False,
                        },
                    },
                    "retry_policy": {
                        "maximum_retry_attempts": 2,
                        "maximum_event_age_in_seconds": 3600,
                    },
                    "dead_letter_config": {"arn": self.dead_letter_queue.arn},
                },
                # Until the job image exists there is nothing to run.
                state="ENABLED" if args.image_tag else "DISABLED",
                opts=ResourceOptions(parent=self, depends_on=[policy]),
            )
            for key, (task, expression, description) in scheduled.items()
        }
