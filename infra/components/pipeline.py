"""The ingest and transform Lambdas, what triggers them, where failures go and what alarms.

Triggers: the ingest schedule (every 5 minutes by default) and ``IngestBatchRequested`` (the
ingest function's own fan-out) invoke ingest; ``KlinesIngested`` (put by ingest after it wrote
candles) and a slower safety-net schedule invoke transform. Failures: EventBridge retries a
delivery, Lambda retries an async invocation twice, and what still fails lands in a dead-letter
queue (one per function, one for the EventBridge targets). Alarms: function errors, messages in
any dead-letter queue, and data lag (``LagSeconds``, which the ingest function emits as EMF in
namespace ``pricebot`` with Powertools' ``service`` dimension).

Code comes from ``make layers``: two dependency layers (core for both functions, data with
numpy/pandas for transform only) and one zip per function, uploaded to the
artifact bucket so that each deployment is an S3 object version (and the 50 MB limit on direct
uploads does not apply).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra import iam
from infra.components.storage import LAMBDA_PREFIX
from infra.config import LAMBDA_RUNTIME

RUNTIME = LAMBDA_RUNTIME
METRICS_NAMESPACE = "pricebot"
LAG_METRIC = "LagSeconds"
EVENT_SOURCE = "pricebot.klines"
KLINES_INGESTED = "KlinesIngested"
INGEST_BATCH = "IngestBatchRequested"


@dataclass(frozen=True)
class FunctionSpec:
    key: str  # "ingest" | "transform"
    handler: str
    zip_path: str
    layers: tuple[str, ...]
    memory_mb: int
    timeout_seconds: int


@dataclass(frozen=True)
class FunctionDeclaration:
    """A function as declared: enough to call its handler elsewhere exactly as Lambda would."""

    key: str
    name: pulumi.Output[str]
    handler: str
    environment: pulumi.Output[dict[str, str]]
    layers: tuple[str, ...]


@dataclass(frozen=True)
class PipelineArgs:
    name: str
    region: str
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    db_host: pulumi.Input[str]
    db_port: pulumi.Input[int]
    db_name: str
    db_secret_arn: pulumi.Input[str]  # the pipeline login's secret, not the owner's
    symbols: Sequence[str]
    binance_url: str
    feature_set: str
    architecture: str
    core_layer_zip: str
    data_layer_zip: str
    ingest_zip: str
    transform_zip: str
    ingest_schedule: str
    transform_schedule: str
    lag_alarm_seconds: int
    log_retention_days: int
    alarm_email: str | None = None
    root: str = "."


def lambda_policy(
    *,
    log_group_arn: pulumi.Input[str],
    secret_arn: pulumi.Input[str],
    dead_letter_arn: pulumi.Input[str],
    event_bus_arn: pulumi.Input[str] | None,
) -> pulumi.Output[str]:
    """What one pipeline function may do, and nothing else."""
    statements = [
        iam.allow(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            pulumi.Output.concat(log_group_arn, ":*"),
        ),
        iam.allow(["secretsmanager:GetSecretValue"], secret_arn),
        iam.allow(["sqs:SendMessage"], dead_letter_arn),
        iam.allow(
            [
                "ec2:CreateNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSubnets",
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            iam.any_resource(
                "Lambda manages the function's VPC network interfaces; the Describe calls have "
                "no resource-level permissions and the ENI ids are not known in advance"
            ),
        ),
        iam.allow(
            ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            iam.any_resource("X-Ray's trace APIs have no resource-level permissions"),
        ),
    ]
    if event_bus_arn is not None:
        statements.append(
            iam.allow(
                ["events:PutEvents"],
                event_bus_arn,
                condition={"StringEquals": {"events:source": EVENT_SOURCE}},
            )
        )
    return iam.document(*statements)


class Pipeline(pulumi.ComponentResource):
    """Functions, triggers, dead-letter queues and alarms."""

    function_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: PipelineArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Pipeline", name, None, opts)
        child = ResourceOptions(parent=self)
        identity = aws.get_caller_identity_output()
        partition = aws.get_partition_output().partition
        event_bus_arn = pulumi.Output.concat(
            "arn:", partition, ":events:", args.region, ":", identity.account_id,
            ":event-bus/default",
        )  # fmt: skip

        layers = {
            key: self._layer(name, key, path, args)
            for key, path in (("core", args.core_layer_zip), ("data", args.data_layer_zip))
        }
        # Ingest runs without numpy/pandas (its cold start); only transform computes.
        specs = (
            FunctionSpec("ingest", "lambdas.ingest.handler.lambda_handler", args.ingest_zip,
                         ("core",), 512, 300),
            FunctionSpec("transform", "lambdas.transform.handler.lambda_handler",
                         args.transform_zip, ("core", "data"), 1024, 600),
        )  # fmt: skip
        functions: dict[str, aws.lambda_.Function] = {}
        self.declarations: dict[str, FunctionDeclaration] = {}
        self.dead_letter_queues: dict[str, aws.sqs.Queue] = {}
        for spec in specs:
            functions[spec.key] = self._function(
                name,
                spec,
                args,
                [layers[key].arn for key in spec.layers],
                None if spec.key == "transform" else event_bus_arn,
            )

        # EventBridge's own dead-letter queue: deliveries it could not make after its retries.
        events_dlq = self._queue(f"{name}-events-dlq", f"{args.name}-events-dlq")
        self.dead_letter_queues["events"] = events_dlq

        rules = {
            "ingest-schedule": (
                "ingest", {"schedule_expression": args.ingest_schedule},
                "ingest candles on a schedule",
            ),
            "ingest-batch": (
                "ingest", {"event_pattern": _pattern(INGEST_BATCH)},
                "one batch of symbols the scheduled ingest fanned out",
            ),
            "klines-ingested": (
                "transform", {"event_pattern": _pattern(KLINES_INGESTED)},
                "new candles: bring their features up to date",
            ),
            "transform-schedule": (
                "transform", {"schedule_expression": args.transform_schedule},
                "safety net: transform every symbol even if an event was lost",
            ),
        }  # fmt: skip
        rule_arns = []
        for key, (target, trigger, description) in rules.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{key}",
                name=f"{args.name}-{key}",
                description=description,
                opts=child,
                **trigger,
            )
            rule_arns.append(rule.arn)
            aws.cloudwatch.EventTarget(
                f"{name}-{key}",
                rule=rule.name,
                arn=functions[target].arn,
                retry_policy={"maximum_retry_attempts": 4, "maximum_event_age_in_seconds": 3600},
                dead_letter_config={"arn": events_dlq.arn},
                opts=child,
            )
            aws.lambda_.Permission(
                f"{name}-{key}",
                action="lambda:InvokeFunction",
                function=functions[target].name,
                principal="events.amazonaws.com",
                source_arn=rule.arn,
                opts=child,
            )
        aws.sqs.QueuePolicy(
            f"{name}-events-dlq",
            queue_url=events_dlq.url,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "EventBridgeDeadLetters",
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": events_dlq.arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                        }
                    ],
                }
            ),
            opts=child,
        )

        self._alarms(name, args, functions)
        self.function_arns = {k: f.arn for k, f in functions.items()}
        self.function_names = {k: f.name for k, f in functions.items()}
        self.register_outputs(
            {
                "function_arns": self.function_arns,
                "dead_letter_queue_urls": {k: q.url for k, q in self.dead_letter_queues.items()},
                "alarm_topic_arn": self.alarm_topic_arn,
            }
        )

    def _upload(self, name: str, key: str, path: str, args: PipelineArgs) -> aws.s3.BucketObjectv2:
        return aws.s3.BucketObjectv2(
            f"{name}-{key}-zip",
            bucket=args.bucket_name,
            key=f"{LAMBDA_PREFIX}/{Path(path).name}",
            source=pulumi.FileAsset(str(Path(args.root) / path)),
            opts=ResourceOptions(parent=self),
        )

    def _layer(
        self, name: str, key: str, path: str, args: PipelineArgs
    ) -> aws.lambda_.LayerVersion:
        uploaded = self._upload(name, f"layer-{key}", path, args)
        return aws.lambda_.LayerVersion(
            f"{name}-layer-{key}",
            layer_name=f"{args.name}-{key}",
            description=f"pricebot {key} dependencies (make layers)",
            s3_bucket=args.bucket_name,
            s3_key=uploaded.key,
            s3_object_version=uploaded.version_id,
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[args.architecture],
            opts=ResourceOptions(parent=self),
        )

    def _queue(self, resource_name: str, queue_name: str) -> aws.sqs.Queue:
        return aws.sqs.Queue(
            resource_name,
            name=queue_name,
            message_retention_seconds=14 * 24 * 3600,  # the longest SQS keeps: time to look
            sqs_managed_sse_enabled=True,
            opts=ResourceOptions(parent=self),
        )

    def _function(
        self,
        name: str,
        spec: FunctionSpec,
        args: PipelineArgs,
        layer_arns: list[pulumi.Output[str]],
        event_bus_arn: pulumi.Output[str] | None,
    ) -> aws.lambda_.Function:
        child = ResourceOptions(parent=self)
        function_name = f"{args.name}-{spec.key}"
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-{spec.key}",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        dlq = self._queue(f"{name}-{spec.key}-dlq", f"{function_name}-dlq")
        self.dead_letter_queues[spec.key] = dlq
        role = aws.iam.Role(
            f"{name}-{spec.key}",
            name=f"{function_name}-lambda",
            assume_role_policy=iam.assume_role_policy("lambda.amazonaws.com"),
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-{spec.key}",
            role=role.id,
            policy=lambda_policy(
                log_group_arn=log_group.arn,
                secret_arn=args.db_secret_arn,
                dead_letter_arn=dlq.arn,
                event_bus_arn=event_bus_arn,
            ),
            opts=child,
        )
        code = self._upload(name, spec.key, spec.zip_path, args)
        variables = {
            # The database password is not here: the function reads its login's
            # secret at connect time, and again after a rotation (pricebot.db).
            "PRICEBOT_DATABASE_SECRET_ARN": args.db_secret_arn,
            "PRICEBOT_DB_HOST": args.db_host,
            "PRICEBOT_DB_PORT": pulumi.Output.from_input(args.db_port).apply(str),
            "PRICEBOT_DB_NAME": args.db_name,
            "PRICEBOT_DB_SSLMODE": "require",
            "PRICEBOT_EVENT_BUS": "default",
            "PRICEBOT_SYMBOLS": ",".join(args.symbols),
            "PRICEBOT_FEATURE_SET": args.feature_set,
            "PRICEBOT_BINANCE_URL": args.binance_url,
            "POWERTOOLS_SERVICE_NAME": spec.key,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        function = aws.lambda_.Function(
            f"{name}-{spec.key}",
            name=function_name,
            runtime=RUNTIME,
            handler=spec.handler,
            architectures=[args.architecture],
            role=role.arn,
            s3_bucket=args.bucket_name,
            s3_key=code.key,
            s3_object_version=code.version_id,
            layers=layer_arns,
            memory_size=spec.memory_mb,
            timeout=spec.timeout_seconds,
            vpc_config={
                "subnet_ids": list(args.subnet_ids),
                "security_group_ids": [args.security_group_id],
            },
            dead_letter_config={"target_arn": dlq.arn},
            tracing_config={"mode": "Active"},
            logging_config={"log_format": "JSON", "log_group": log_group.name},
            environment={"variables": variables},
            opts=ResourceOptions(parent=self, depends_on=[log_group, policy]),
        )
        self.declarations[spec.key] = FunctionDeclaration(
            key=spec.key,
            name=function.name,
            handler=spec.handler,
            environment=pulumi.Output.from_input(variables),
            layers=spec.layers,
        )
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-{spec.key}",
            function_name=function.name,
            maximum_retry_attempts=2,
            maximum_event_age_in_seconds=3600,
            opts=child,
        )
        return function

    def _alarms(
        self, name: str, args: PipelineArgs, functions: dict[str, aws.lambda_.Function]
    ) -> None:
        child = ResourceOptions(parent=self)
        # Unencrypted on purpose: CloudWatch cannot publish to a topic under the AWS-managed
        # SNS key, and alarm notifications carry no data beyond the alarm itself.
        topic = aws.sns.Topic(f"{name}-alarms", name=f"{args.name}-alarms", opts=child)
        self.alarm_topic_arn = topic.arn
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarms-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=child,
            )
        actions = [topic.arn]
        for key, function in functions.items():
            aws.cloudwatch.MetricAlarm(
                f"{name}-{key}-errors",
                name=f"{args.name}-{key}-errors",
                alarm_description=f"The {key} function failed (see its log group).",
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions={"FunctionName": function.name},
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=actions,
                ok_actions=actions,
                opts=child,
            )
        for key, queue in self.dead_letter_queues.items():
            aws.cloudwatch.MetricAlarm(
                f"{name}-{key}-dlq",
                name=f"{args.name}-{key}-dead-letters",
                alarm_description=f"Undeliverable {key} events are waiting in {key}'s DLQ.",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": queue.name},
                statistic="Maximum",
                period=300,
                evaluation_periods=1,
                threshold=0,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=actions,
                opts=child,
            )
        aws.cloudwatch.MetricAlarm(
            f"{name}-lag",
            name=f"{args.name}-data-lag",
            alarm_description=(
                f"The newest candle is more than {args.lag_alarm_seconds} s old, or ingest has "
                "stopped reporting (missing data counts as lagging)."
            ),
            namespace=METRICS_NAMESPACE,
            metric_name=LAG_METRIC,
            dimensions={"service": "ingest"},  # Powertools' default dimension
            statistic="Maximum",
            period=300,
            evaluation_periods=3,
            threshold=args.lag_alarm_seconds,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="breaching",
            alarm_actions=actions,
            ok_actions=actions,
            opts=child,
        )


def _pattern(detail_type: str) -> str:
    return json.dumps({"source": [EVENT_SOURCE], "detail-type": [detail_type]})
