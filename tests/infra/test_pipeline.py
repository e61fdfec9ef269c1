"""The pipeline: each trigger reaches the right function, failures land in queues, alarms watch."""

from __future__ import annotations

import json

import pytest

from infra.policy.rules import EVENT_TARGET, LAMBDA, Declared, dead_letter_violations
from tests.infra.conftest import Stack

RULE = "aws:cloudwatch/eventRule:EventRule"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
INGEST_ARN = "arn:aws:lambda:eu-west-1:123456789012:pipeline-ingest"
TRANSFORM_ARN = "arn:aws:lambda:eu-west-1:123456789012:pipeline-transform"


def function(stack: Stack, key: str) -> Declared:
    return stack.named(LAMBDA, f"pipeline-{key}")


def target_of(stack: Stack, rule: str) -> str:
    [target] = [t for t in stack.of_type(EVENT_TARGET) if t.inputs["rule"] == rule]
    return target.inputs["arn"]


def test_the_schedule_invokes_ingest_every_five_minutes(stack: Stack) -> None:
    rule = stack.named(RULE, "pipeline-ingest-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(5 minutes)"
    assert target_of(stack, "pricebot-test-ingest-schedule") == INGEST_ARN


def test_klines_ingested_invokes_transform(stack: Stack) -> None:
    rule = stack.named(RULE, "pipeline-klines-ingested")
    assert json.loads(rule.inputs["eventPattern"]) == {
        "source": ["pricebot.klines"],
        "detail-type": ["KlinesIngested"],
    }
    assert target_of(stack, "pricebot-test-klines-ingested") == TRANSFORM_ARN


def test_ingest_batches_it_fans_out_come_back_to_ingest(stack: Stack) -> None:
    rule = stack.named(RULE, "pipeline-ingest-batch")
    assert json.loads(rule.inputs["eventPattern"])["detail-type"] == ["IngestBatchRequested"]
    assert target_of(stack, "pricebot-test-ingest-batch") == INGEST_ARN


def test_a_slower_schedule_is_the_transform_safety_net(stack: Stack) -> None:
    rule = stack.named(RULE, "pipeline-transform-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(1 hour)"
    assert target_of(stack, "pricebot-test-transform-schedule") == TRANSFORM_ARN


def test_eventbridge_may_invoke_each_function_only_from_its_rules(stack: Stack) -> None:
    permissions = stack.of_type("aws:lambda/permission:Permission")
    granted = sorted(
        (p.inputs["function"], p.inputs["sourceArn"].rsplit(":", 1)[-1]) for p in permissions
    )
    assert granted == [
        ("pricebot-test-ingest", "pipeline-ingest-batch"),
        ("pricebot-test-ingest", "pipeline-ingest-schedule"),
        ("pricebot-test-transform", "pipeline-klines-ingested"),
        ("pricebot-test-transform", "pipeline-transform-schedule"),
    ]
    assert {p.inputs["principal"] for p in permissions} == {"events.amazonaws.com"}


def test_schedules_follow_the_config(configured_stack: Stack) -> None:
    stack = configured_stack
    assert stack.named(RULE, "pipeline-ingest-schedule").inputs["scheduleExpression"] == (
        "rate(1 minute)"
    )
    ingest = function(stack, "ingest")
    assert ingest.inputs["architectures"] == ["arm64"]
    assert ingest.inputs["environment"]["variables"]["PRICEBOT_SYMBOLS"] == "BTCUSDT"
    layers = stack.of_type("aws:lambda/layerVersion:LayerVersion")
    assert {tuple(layer.inputs["compatibleArchitectures"]) for layer in layers} == {("arm64",)}


def test_every_function_and_every_target_has_a_dead_letter_queue(stack: Stack) -> None:
    assert dead_letter_violations(stack.resources) == []
    queues = {q.inputs["name"] for q in stack.of_type("aws:sqs/queue:Queue")}
    assert queues == {
        "pricebot-test-ingest-dlq",
        "pricebot-test-transform-dlq",
        "pricebot-test-events-dlq",
        "pricebot-test-schedules-dlq",
    }
    assert (
        function(stack, "ingest")
        .inputs["deadLetterConfig"]["targetArn"]
        .endswith("pipeline-ingest-dlq")
    )
    for target in stack.of_type(EVENT_TARGET):
        assert target.inputs["deadLetterConfig"]["arn"].endswith("pipeline-events-dlq")
        assert target.inputs["retryPolicy"]["maximumRetryAttempts"] >= 1


def test_async_invocations_are_retried_before_dead_lettering(stack: Stack) -> None:
    configs = stack.of_type("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
    assert sorted(c.inputs["functionName"] for c in configs) == [
        "pricebot-test-ingest",
        "pricebot-test-transform",
    ]
    assert {c.inputs["maximumRetryAttempts"] for c in configs} == {2}


def test_only_eventbridge_from_our_rules_may_write_to_the_events_queue(stack: Stack) -> None:
    [policy] = stack.of_type("aws:sqs/queuePolicy:QueuePolicy")
    [statement] = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert len(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == 4


@pytest.mark.parametrize("remove", ["function", "target"])
def test_the_dead_letter_rule_catches_a_missing_queue(stack: Stack, remove: str) -> None:
    typ = LAMBDA if remove == "function" else EVENT_TARGET
    victim = stack.of_type(typ)[0]
    stripped = Declared(
        victim.type,
        victim.name,
        {k: v for k, v in victim.inputs.items() if k != "deadLetterConfig"},
    )
    resources = [stripped if r is victim else r for r in stack.resources]
    assert dead_letter_violations(resources) == [f"{stripped} has no dead-letter queue"]


def test_functions_are_built_from_make_layers(stack: Stack) -> None:
    ingest, transform = function(stack, "ingest"), function(stack, "transform")
    assert ingest.inputs["handler"] == "lambdas.ingest.handler.lambda_handler"
    assert transform.inputs["handler"] == "lambdas.transform.handler.lambda_handler"
    assert {ingest.inputs["runtime"], transform.inputs["runtime"]} == {"python3.12"}
    assert ingest.inputs["architectures"] == ["x86_64"]
    # ingest carries no numpy/pandas: only the core layer
    assert [a.rsplit(":", 2)[-2] for a in ingest.inputs["layers"]] == ["pipeline-layer-core"]
    assert [a.rsplit(":", 2)[-2] for a in transform.inputs["layers"]] == [
        "pipeline-layer-core",
        "pipeline-layer-data",
    ]
    uploads = {
        o.inputs["key"]: o.inputs["source"].path
        for o in stack.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
    }
    assert {k: v.rsplit("/", 3)[-3:] for k, v in uploads.items()} == {
        f"lambda/{name}": ["layers", "build", name]
        for name in ("layer-core.zip", "layer-data.zip", "ingest.zip", "transform.zip")
    }
    assert ingest.inputs["s3ObjectVersion"] == "v1"  # a new upload is a new version


def test_functions_know_where_the_database_and_bus_are(stack: Stack) -> None:
    variables = function(stack, "ingest").inputs["environment"]["variables"]
    assert variables["PRICEBOT_DB_HOST"].startswith("pricebot-test-db.")
    assert variables["PRICEBOT_DB_PORT"] == "5432"
    assert variables["PRICEBOT_DB_SSLMODE"] == "require"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "pricebot"


def test_without_an_alarm_email_nobody_is_subscribed(stack: Stack) -> None:
    assert stack.of_type("aws:sns/topicSubscription:TopicSubscription") == []


def test_errors_dead_letters_and_lag_raise_alarms(stack: Stack) -> None:
    alarms = {a.inputs["name"]: a.inputs for a in stack.of_type(ALARM)}
    for key in ("ingest", "transform"):
        errors = alarms[f"pricebot-test-{key}-errors"]
        assert (errors["namespace"], errors["metricName"]) == ("AWS/Lambda", "Errors")
        assert errors["dimensions"] == {"FunctionName": f"pricebot-test-{key}"}
    for key in ("ingest", "transform", "events"):
        dlq = alarms[f"pricebot-test-{key}-dead-letters"]
        assert dlq["metricName"] == "ApproximateNumberOfMessagesVisible"
        assert dlq["dimensions"] == {"QueueName": f"pricebot-test-{key}-dlq"}
        assert (dlq["comparisonOperator"], dlq["threshold"]) == ("GreaterThanThreshold", 0)
    lag = alarms["pricebot-test-data-lag"]
    assert (lag["namespace"], lag["metricName"]) == ("pricebot", "LagSeconds")
    assert lag["dimensions"] == {"service": "ingest"}
    assert lag["threshold"] == 900
    assert lag["treatMissingData"] == "breaching"  # silence means ingest stopped
    topic = "arn:aws:sns:eu-west-1:123456789012:pipeline-alarms"
    assert all(a["alarmActions"] == [topic] for a in alarms.values())


def test_an_alarm_email_subscribes_to_the_topic(configured_stack: Stack) -> None:
    [subscription] = configured_stack.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs["protocol"] == "email"
    assert subscription.inputs["endpoint"] == "oncall@example.com"


def test_every_function_is_declared_with_its_handler_and_layers(stack: Stack) -> None:
    declared = {key: (d.handler, d.layers) for key, d in stack.outputs["functions"].items()}
    assert declared == {
        "ingest": ("lambdas.ingest.handler.lambda_handler", ("core",)),
        "transform": ("lambdas.transform.handler.lambda_handler", ("core", "data")),
    }
    for key in declared:
        assert function(stack, key).inputs["handler"] == declared[key][0]
