"""Every alarm on the service and the model: its metric, threshold, window and where it goes."""

from __future__ import annotations

import pytest

from pricebot import model_health
from tests.infra.conftest import Stack

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:pipeline-alarms"
LB = "app/pricebot-test/50dc6c495c0c9188"
SERVICE_TG = "targetgroup/pricebot-test-service/943f017f100becff"


def alarm(stack: Stack, name: str) -> dict:
    [found] = [a for a in stack.of_type(ALARM) if a.inputs["name"] == f"pricebot-test-{name}"]
    return found.inputs


def test_every_alarm_notifies_the_alarm_topic(stack: Stack) -> None:
    alarms = stack.of_type(ALARM)
    assert len(alarms) > 10
    for a in alarms:
        assert a.inputs["alarmActions"] == [TOPIC], a.name


def test_service_5xx_answers_alarm(stack: Stack) -> None:
    a = alarm(stack, "service-5xx")
    assert (a["namespace"], a["metricName"]) == ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count")
    assert a["dimensions"] == {"LoadBalancer": LB, "TargetGroup": SERVICE_TG}
    assert (a["statistic"], a["period"], a["threshold"]) == ("Sum", 300, 5)
    assert a["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert a["treatMissingData"] == "notBreaching"  # no traffic is not an error


def test_load_balancer_5xx_answers_alarm(stack: Stack) -> None:
    a = alarm(stack, "alb-5xx")
    assert a["metricName"] == "HTTPCode_ELB_5XX_Count"
    assert a["dimensions"] == {"LoadBalancer": LB}


def test_slow_answers_alarm_on_the_p95_for_fifteen_minutes(stack: Stack) -> None:
    a = alarm(stack, "service-latency")
    assert a["metricName"] == "TargetResponseTime"
    assert a["extendedStatistic"] == "p95"
    assert (a["period"], a["evaluationPeriods"], a["threshold"]) == (300, 3, 1.0)
    assert a["comparisonOperator"] == "GreaterThanThreshold"


def test_unhealthy_targets_alarm_for_each_routed_app(stack: Stack, https_stack: Stack) -> None:
    a = alarm(stack, "service-unhealthy")
    assert a["metricName"] == "UnHealthyHostCount"
    assert a["dimensions"] == {"LoadBalancer": LB, "TargetGroup": SERVICE_TG}
    assert (a["statistic"], a["threshold"], a["evaluationPeriods"]) == ("Maximum", 0, 3)
    # the page has no targets when it is not routed, and its own alarm when it is
    assert not [x for x in stack.of_type(ALARM) if "monitoring" in x.inputs["name"]]
    assert alarm(https_stack, "monitoring-unhealthy")["dimensions"]["TargetGroup"] == (
        "targetgroup/pricebot-test-monitoring/943f017f100becff"
    )


def test_fewer_running_tasks_than_desired_alarms(stack: Stack) -> None:
    a = alarm(stack, "service-tasks-below-desired")
    queries = {q["id"]: q for q in a["metricQueries"]}
    assert queries["missing"]["expression"] == "desired - running"
    assert queries["missing"]["returnData"] is True
    for key, metric in (("running", "RunningTaskCount"), ("desired", "DesiredTaskCount")):
        assert queries[key]["metric"]["namespace"] == "ECS/ContainerInsights"
        assert queries[key]["metric"]["metricName"] == metric
        assert queries[key]["metric"]["dimensions"] == {
            "ClusterName": "pricebot-test",
            "ServiceName": "pricebot-test-service",
        }
    assert (a["threshold"], a["comparisonOperator"]) == (0, "GreaterThanThreshold")
    assert a["evaluationPeriods"] == 3


def test_the_cluster_reports_the_task_counts_the_alarm_compares(stack: Stack) -> None:
    [cluster] = stack.of_type("aws:ecs/cluster:Cluster")
    assert {"name": "containerInsights", "value": "enabled"} in cluster.inputs["settings"]


@pytest.mark.parametrize("symbol", ["btcusdt", "ethusdt", "adausdt"])
def test_a_champion_worse_than_no_change_for_the_window_alarms(stack: Stack, symbol: str) -> None:
    a = alarm(stack, f"{symbol}-ret24h-worse-than-no-change")
    # the metric the scoring job publishes, under the dimensions it publishes with
    assert (a["namespace"], a["metricName"]) == (model_health.NAMESPACE, model_health.ERROR_RATIO)
    assert a["dimensions"] == {"Symbol": symbol.upper(), "Target": "ret24h"}
    # worse than no change (ratio > 1) in every one of the last 6 hourly publications
    assert (a["period"], a["evaluationPeriods"], a["datapointsToAlarm"]) == (3600, 6, 6)
    assert (a["threshold"], a["comparisonOperator"]) == (1.0, "GreaterThanThreshold")
    assert a["treatMissingData"] == "notBreaching"  # too few outcomes says nothing


def test_the_model_alarm_window_and_threshold_are_configurable() -> None:
    from tests.infra.conftest import build_stack, variant

    stack = build_stack(
        variant(symbols=("BTCUSDT",), model_health_alarm_hours=12, error_ratio_alarm_threshold=1.2,
                targets=("RET1440M",))
    )  # fmt: skip
    a = alarm(stack, "btcusdt-ret24h-worse-than-no-change")  # the target's canonical name
    assert (a["evaluationPeriods"], a["datapointsToAlarm"], a["threshold"]) == (12, 12, 1.2)


def test_feature_drift_alarms_per_symbol(stack: Stack) -> None:
    a = alarm(stack, "btcusdt-feature-drift")
    assert (a["namespace"], a["metricName"]) == (model_health.NAMESPACE, model_health.FEATURE_DRIFT)
    assert a["dimensions"] == {"Symbol": "BTCUSDT", "FeatureSet": "v1"}
    assert (a["threshold"], a["evaluationPeriods"]) == (0.25, 3)


def test_a_silent_scoring_job_alarms(stack: Stack) -> None:
    a = alarm(stack, "model-health-silent")
    assert a["metricName"] == model_health.SCORED
    assert (a["statistic"], a["comparisonOperator"], a["threshold"]) == (
        "SampleCount", "LessThanThreshold", 1,
    )  # fmt: skip
    assert a["treatMissingData"] == "breaching"  # nothing published is the failure


def test_a_batch_job_that_logs_nothing_for_three_hours_alarms(stack: Stack) -> None:
    a = alarm(stack, "predict-job-silent")
    assert (a["namespace"], a["metricName"]) == (model_health.NAMESPACE,
                                                 model_health.BATCH_PREDICTED)  # fmt: skip
    # three hourly batches running that logged nothing, or did not publish at all
    assert (a["period"], a["evaluationPeriods"]) == (3600, 3)
    assert (a["statistic"], a["comparisonOperator"], a["threshold"]) == (
        "Maximum", "LessThanThreshold", 1,
    )  # fmt: skip
    assert a["treatMissingData"] == "breaching"


def test_a_schedule_the_scheduler_could_not_start_alarms(stack: Stack) -> None:
    a = alarm(stack, "schedules-dead-letters")
    assert a["dimensions"] == {"QueueName": "pricebot-test-schedules-dlq"}
    assert (a["threshold"], a["comparisonOperator"]) == (0, "GreaterThanThreshold")
