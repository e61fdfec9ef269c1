"""Alarms on the service and on the model, to the stack's alarm topic.

Service (load balancer and ECS metrics):

- ``<prefix>-service-5xx``: the service answered 5XX at least ``service_error_alarm_count``
  times in 5 minutes; ``<prefix>-alb-5xx``: the load balancer itself did (no healthy target,
  a timeout);
- ``<prefix>-service-latency``: p95 target response time above ``latency_alarm_seconds`` for
  three 5-minute periods running;
- ``<prefix>-<app>-unhealthy``: a target failed its health check for three minutes running;
- ``<prefix>-<app>-tasks-below-desired``: fewer tasks running than desired for 15 minutes
  (Container Insights' ``RunningTaskCount`` against ``DesiredTaskCount``).

Model (metrics the hourly scoring job publishes, namespace ``pricebot/model``,
pricebot.model_health):

- ``<prefix>-<symbol>-<target>-worse-than-no-change``: the champion's live error over the
  rolling window exceeded ``error_ratio_alarm_threshold`` times the no-change baseline's for
  ``model_health_alarm_hours`` hours running (hours without enough outcomes do not count);
- ``<prefix>-<symbol>-feature-drift``: the largest feature PSI above ``drift_alarm_psi`` for three
  hours running;
- ``<prefix>-model-health-silent``: no publication for three hours (the job did not run or
  failed);
- ``<prefix>-predict-job-silent``: the hourly batch logged no prediction for three hours (it did
  not run, failed, or had nothing it could predict), so live performance stopped accruing;
- ``<prefix>-schedules-dead-letters``: the scheduler could not start a job at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

MODEL_NAMESPACE = "pricebot/model"
ERROR_RATIO = "ChampionErrorRatio"
FEATURE_DRIFT = "FeatureDriftPSI"
SCORED = "ScoredPredictions"
BATCH_PREDICTED = "BatchPredictionsLogged"


@dataclass(frozen=True)
class AlarmsArgs:
    name: str
    topic_arn: pulumi.Input[str]
    load_balancer_arn_suffix: pulumi.Input[str]
    service_target_group_arn_suffix: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    # app key (service, monitoring) -> (target group ARN suffix, ECS service name)
    apps: Mapping[str, tuple[pulumi.Input[str], pulumi.Input[str]]]
    symbols: Sequence[str]
    targets: Sequence[str]  # canonical names, as the service logs them
    feature_set: str
    schedules_dead_letter_queue_name: pulumi.Input[str]
    service_error_alarm_count: int = 5
    latency_alarm_seconds: float = 1.0
    model_health_alarm_hours: int = 6
    error_ratio_alarm_threshold: float = 1.0
    drift_alarm_psi: float = 0.25


class Alarms(pulumi.ComponentResource):
    """Every alarm above; outputs their names."""

    alarm_names: list[pulumi.Output[str]]

    def __init__(self, name: str, args: AlarmsArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Alarms", name, None, opts)
        self._args = args
        self._name = name
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        lb = {"LoadBalancer": args.load_balancer_arn_suffix}
        service_tg = {**lb, "TargetGroup": args.service_target_group_arn_suffix}

        self._alarm(
            "service-5xx",
            f"The prediction service answered 5XX {args.service_error_alarm_count}+ times in "
            "5 minutes (see its log group).",
            namespace="AWS/ApplicationELB", metric_name="HTTPCode_Target_5XX_Count",
            dimensions=service_tg, statistic="Sum", period=300, evaluation_periods=1,
            threshold=args.service_error_alarm_count,
            comparison_operator="GreaterThanOrEqualToThreshold",
        )  # fmt: skip
        self._alarm(
            "alb-5xx",
            f"The load balancer answered 5XX {args.service_error_alarm_count}+ times in 5 "
            "minutes: no healthy target, or targets timing out.",
            namespace="AWS/ApplicationELB", metric_name="HTTPCode_ELB_5XX_Count",
            dimensions=lb, statistic="Sum", period=300, evaluation_periods=1,
            threshold=args.service_error_alarm_count,
            comparison_operator="GreaterThanOrEqualToThreshold",
        )  # fmt: skip
        self._alarm(
            "service-latency",
            f"p95 response time of the prediction service above {args.latency_alarm_seconds} s "
            "for 15 minutes.",
            namespace="AWS/ApplicationELB", metric_name="TargetResponseTime",
            dimensions=service_tg, extended_statistic="p95", period=300, evaluation_periods=3,
            threshold=args.latency_alarm_seconds, comparison_operator="GreaterThanThreshold",
        )  # fmt: skip
        for key, (target_group, service) in args.apps.items():
            self._alarm(
                f"{key}-unhealthy",
                f"A {key} target has failed its health check for 3 minutes.",
                namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount",
                dimensions={**lb, "TargetGroup": target_group}, statistic="Maximum", period=60,
                evaluation_periods=3, threshold=0, comparison_operator="GreaterThanThreshold",
            )  # fmt: skip
            self._tasks_below_desired(key, service)

        for symbol in args.symbols:
            for target in args.targets:
                self._alarm(
                    f"{symbol.lower()}-{target}-worse-than-no-change",
                    f"The {symbol} {target} champion has done worse than predicting no change "
                    f"(error ratio > {args.error_ratio_alarm_threshold}) for "
                    f"{args.model_health_alarm_hours} h: consider `pricebot rollback`.",
                    namespace=MODEL_NAMESPACE, metric_name=ERROR_RATIO,
                    dimensions={"Symbol": symbol, "Target": target}, statistic="Average",
                    period=3600, evaluation_periods=args.model_health_alarm_hours,
                    datapoints_to_alarm=args.model_health_alarm_hours,
                    threshold=args.error_ratio_alarm_threshold,
                    comparison_operator="GreaterThanThreshold",
                )  # fmt: skip
            self._alarm(
                f"{symbol.lower()}-feature-drift",
                f"{symbol}'s {args.feature_set} features have drifted (PSI > "
                f"{args.drift_alarm_psi}) from the previous weeks for 3 h.",
                namespace=MODEL_NAMESPACE, metric_name=FEATURE_DRIFT,
                dimensions={"Symbol": symbol, "FeatureSet": args.feature_set},
                statistic="Maximum", period=3600, evaluation_periods=3,
                threshold=args.drift_alarm_psi, comparison_operator="GreaterThanThreshold",
            )  # fmt: skip
        self._alarm(
            "model-health-silent",
            "The scoring job has published nothing for 3 h: it did not run or failed (see "
            "/ecs/<prefix>-score).",
            namespace=MODEL_NAMESPACE, metric_name=SCORED,
            dimensions={"Symbol": args.symbols[0], "Target": args.targets[0]},
            statistic="SampleCount", period=3600, evaluation_periods=3, threshold=1,
            comparison_operator="LessThanThreshold", treat_missing_data="breaching",
        )  # fmt: skip
        self._alarm(
            "predict-job-silent",
            "The hourly batch has logged no prediction for 3 h: it did not run, failed, or "
            "could predict nothing (see /ecs/<prefix>-predict for the pairs it skipped and why).",
            namespace=MODEL_NAMESPACE, metric_name=BATCH_PREDICTED, statistic="Maximum",
            period=3600, evaluation_periods=3, threshold=1,
            comparison_operator="LessThanThreshold", treat_missing_data="breaching",
        )  # fmt: skip
        self._alarm(
            "schedules-dead-letters",
            "EventBridge Scheduler could not start a scheduled task (see its dead-letter queue).",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": args.schedules_dead_letter_queue_name},
            statistic="Maximum", period=300, evaluation_periods=1, threshold=0,
            comparison_operator="GreaterThanThreshold",
        )  # fmt: skip
        self.alarm_names = [a.name for a in self.alarms.values()]
        self.register_outputs({"alarm_names": self.alarm_names})

    def _alarm(self, key: str, description: str, **metric: object) -> aws.cloudwatch.MetricAlarm:
        actions = [self._args.topic_arn]
        metric.setdefault("treat_missing_data", "notBreaching")
        alarm = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}",
            name=f"{self._args.name}-{key}",
            alarm_description=description,
            alarm_actions=actions,
            ok_actions=actions,
            opts=ResourceOptions(parent=self),
            **metric,
        )
        self.alarms[key] = alarm
        return alarm

    def _tasks_below_desired(self, key: str, service: pulumi.Input[str]) -> None:
        dimensions = {"ClusterName": self._args.cluster_name, "ServiceName": service}

        def query(id_: str, metric_name: str) -> dict:
            return {
                "id": id_,
                "return_data": False,
                "metric": {
                    "namespace": "ECS/ContainerInsights",
                    "metric_name": metric_name,
                    "dimensions": dimensions,
                    "period": 300,
                    "stat": "Average",
                },
            }

        self._alarm(
            f"{key}-tasks-below-desired",
            f"Fewer {key} tasks are running than desired for 15 minutes (crashing, or not "
            "starting: see the service's events).",
            metric_queries=[
                query("running", "RunningTaskCount"),
                query("desired", "DesiredTaskCount"),
                {"id": "missing", "expression": "desired - running", "label": "tasks missing",
                 "return_data": True},
            ],
            evaluation_periods=3, threshold=0, comparison_operator="GreaterThanThreshold",
        )  # fmt: skip
