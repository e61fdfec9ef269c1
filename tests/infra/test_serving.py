"""Serving and monitoring on Fargate behind one load balancer."""

from __future__ import annotations

import json

from infra.components.fargate import UNPUSHED_TAG
from tests.infra.conftest import CERTIFICATE_ARN, Stack

LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"


def container(stack: Stack, key: str) -> dict:
    [definition] = json.loads(stack.named(TASK, f"{key}-task").inputs["containerDefinitions"])
    return definition


def env(stack: Stack, key: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(stack, key)["environment"]}


def test_the_service_is_health_checked_on_readiness(stack: Stack) -> None:
    group = stack.named(TARGET_GROUP, "service-tg")
    assert group.inputs["healthCheck"]["path"] == "/readyz"
    assert (group.inputs["port"], group.inputs["targetType"]) == (3000, "ip")


def test_the_service_runs_the_configured_image_from_its_repository(stack: Stack) -> None:
    assert container(stack, "service")["image"] == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pricebot-test-service:2026.11.21-abc1234"
    )
    assert stack.named(SERVICE, "service-service").inputs["desiredCount"] == 1


def test_the_apps_know_the_tracking_server_alias_and_database(stack: Stack) -> None:
    for key in ("service", "monitoring"):
        variables = env(stack, key)
        assert variables["MLFLOW_TRACKING_URI"] == "http://10.40.16.10:5000"
        assert variables["PRICEBOT_MODEL_ALIAS"] == "champion"
        assert variables["PRICEBOT_DATABASE_URL"] == (
            "postgresql://pricebot-test-db.abc.eu-west-1.rds.amazonaws.com:5432/pricebot"
            "?sslmode=require"
        )


def test_the_service_scales_on_cpu(stack: Stack) -> None:
    [target] = stack.of_type("aws:appautoscaling/target:Target")
    assert target.inputs["resourceId"] == "service/pricebot-test/pricebot-test-service"
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (1, 3)
    [policy] = stack.of_type("aws:appautoscaling/policy:Policy")
    config = policy.inputs["targetTrackingScalingPolicyConfiguration"]
    assert config["predefinedMetricSpecification"]["predefinedMetricType"] == (
        "ECSServiceAverageCPUUtilization"
    )
    assert config["targetValue"] == 60


def test_logs_go_to_cloudwatch(stack: Stack) -> None:
    for key in ("service", "monitoring"):
        options = container(stack, key)["logConfiguration"]["options"]
        assert options["awslogs-group"] == f"/ecs/pricebot-test-{key}"


def test_without_a_certificate_port_80_forwards_to_the_service(stack: Stack) -> None:
    [listener] = stack.of_type(LISTENER)
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (80, "HTTP")
    assert listener.inputs["defaultActions"][0]["type"] == "forward"
    assert stack.outputs["api_url"] == "http://pricebot-test-1.eu-west-1.elb.amazonaws.com/"


def test_with_a_certificate_443_serves_and_80_redirects(https_stack: Stack) -> None:
    listeners = {r.inputs["port"]: r.inputs for r in https_stack.of_type(LISTENER)}
    assert listeners[443]["certificateArn"] == CERTIFICATE_ARN
    assert listeners[443]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert listeners[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    assert https_stack.outputs["monitoring_url"].startswith("https://")


def test_monitoring_is_routed_by_path_on_the_same_load_balancer(stack: Stack) -> None:
    [rule] = stack.of_type("aws:lb/listenerRule:ListenerRule")
    assert rule.inputs["listenerArn"].endswith("serving-http")
    assert rule.inputs["conditions"][0]["pathPattern"]["values"] == ["/monitor", "/monitor/*"]
    assert rule.inputs["actions"][0]["targetGroupArn"].endswith("monitoring-tg")
    group = stack.named(TARGET_GROUP, "monitoring-tg")
    assert group.inputs["healthCheck"]["path"] == "/monitor/_stcore/health"
    assert env(stack, "monitoring")["STREAMLIT_SERVER_BASE_URL_PATH"] == "monitor"
    assert stack.outputs["monitoring_url"].endswith("/monitor/")


def test_before_an_image_is_pushed_nothing_is_started(https_stack: Stack) -> None:
    for service in https_stack.of_type(SERVICE):
        assert service.inputs["desiredCount"] == 0, service.name
    [target] = https_stack.of_type("aws:appautoscaling/target:Target")
    assert target.inputs["minCapacity"] == 0
    assert container(https_stack, "service")["image"].endswith(f":{UNPUSHED_TAG}")
