"""Serving and monitoring on Fargate behind one load balancer: who gets in, on what, with what."""

from __future__ import annotations

import json

import pytest

from infra.components.fargate import UNPUSHED_TAG
from infra.policy.rules import Declared, authentication_violations, task_credential_violations
from tests.infra.conftest import CERTIFICATE_ARN, DOMAIN, Stack, build_stack, variant

LISTENER = "aws:lb/listener:Listener"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
API_KEYS = "arn:aws:secretsmanager:eu-west-1:123456789012:secrets-api-keys"
OIDC = {
    "oidc_issuer": "https://login.example.com",
    "oidc_authorization_endpoint": "https://login.example.com/authorize",
    "oidc_token_endpoint": "https://login.example.com/token",
    "oidc_user_info_endpoint": "https://login.example.com/userinfo",
    "oidc_client_id": "pricebot-monitoring",
}


def container(stack: Stack, key: str) -> dict:
    [definition] = json.loads(stack.named(TASK, f"{key}-task").inputs["containerDefinitions"])
    return definition


def env(stack: Stack, key: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(stack, key)["environment"]}


@pytest.fixture(scope="module")
def oidc_stack() -> Stack:
    from infra.stack import StackSecrets, build
    from tests.infra.conftest import run_program

    settings = variant(
        certificate_arn=CERTIFICATE_ARN, domain_name=DOMAIN, monitoring_auth="oidc", **OIDC
    )
    return run_program(lambda: build(settings, StackSecrets(oidc_client_secret="s3cr3t")))


# --- the service --------------------------------------------------------------------------------
def test_the_service_is_health_checked_on_readiness(stack: Stack) -> None:
    group = stack.named(TARGET_GROUP, "service-tg")
    assert group.inputs["healthCheck"]["path"] == "/readyz"
    assert (group.inputs["port"], group.inputs["targetType"]) == (3000, "ip")


def test_the_service_runs_the_configured_image_from_its_repository(stack: Stack) -> None:
    assert container(stack, "service")["image"] == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pricebot-test-service:2026.11.21-abc1234"
    )
    assert stack.named(SERVICE, "service-service").inputs["desiredCount"] == 1
    assert "command" not in container(stack, "service")  # the Bento's own `bentoml serve`


def test_the_service_gets_its_api_keys_injected_from_the_stacks_secret(stack: Stack) -> None:
    assert container(stack, "service")["secrets"] == [
        {"name": "PRICEBOT_API_KEYS", "valueFrom": API_KEYS}
    ]
    assert stack.outputs["api_keys_secret_arn"] == API_KEYS


def test_the_apps_know_the_tracking_server_alias_and_database(stack: Stack) -> None:
    for key in ("service", "monitoring"):
        variables = env(stack, key)
        assert variables["MLFLOW_TRACKING_URI"] == "http://10.40.16.10:5000"
        assert variables["PRICEBOT_MODEL_ALIAS"] == "champion"
        assert variables["PRICEBOT_DATABASE_URL"] == (
            "postgresql://pricebot-test-db.abc.eu-west-1.rds.amazonaws.com:5432/pricebot"
            "?sslmode=require"
        )
        assert variables["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_no_task_carries_database_credentials(stack: Stack) -> None:
    assert task_credential_violations(stack.resources) == []


def test_the_credential_rule_catches_an_injected_password() -> None:
    bad = Declared(
        TASK,
        "bad",
        {
            "containerDefinitions": json.dumps(
                [
                    {
                        "environment": [
                            {"name": "PRICEBOT_DATABASE_URL", "value": "postgresql://u:p@h/d"}
                        ],
                        "secrets": [{"name": "PGPASSWORD", "valueFrom": "arn:s:password::"}],
                    }
                ]
            )
        },
    )
    assert task_credential_violations([bad]) == [
        "TaskDefinition 'bad' puts PGPASSWORD in the container's environment",
        "TaskDefinition 'bad' has credentials in PRICEBOT_DATABASE_URL",
        "TaskDefinition 'bad' knows the database but not its login's secret",
    ]


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
    for key in ("service", "monitoring", "migrate", "bootstrap", "training", "score"):
        options = container(stack, key)["logConfiguration"]["options"]
        assert options["awslogs-group"] == f"/ecs/pricebot-test-{key}"


def test_without_a_certificate_port_80_forwards_to_the_service(stack: Stack) -> None:
    [listener] = stack.of_type(LISTENER)
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (80, "HTTP")
    assert listener.inputs["defaultActions"][0]["type"] == "forward"
    assert listener.inputs["defaultActions"][0]["targetGroupArn"].endswith("service-tg")
    assert stack.outputs["api_url"] == "http://pricebot-test-1.eu-west-1.elb.amazonaws.com/"


def test_with_a_certificate_443_serves_and_80_redirects(https_stack: Stack) -> None:
    listeners = {r.inputs["port"]: r.inputs for r in https_stack.of_type(LISTENER)}
    assert listeners[443]["certificateArn"] == CERTIFICATE_ARN
    assert listeners[443]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert listeners[80]["defaultActions"] == [
        {
            "type": "redirect",
            "redirect": {"port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"},
        }
    ]


def test_with_a_domain_the_urls_use_it_and_its_record_points_at_the_balancer(
    https_stack: Stack,
) -> None:
    assert https_stack.outputs["api_url"] == f"https://{DOMAIN}/"
    assert https_stack.outputs["monitoring_url"] == f"https://{DOMAIN}/monitor/"
    [record] = https_stack.of_type("aws:route53/record:Record")
    assert (record.inputs["name"], record.inputs["type"]) == (DOMAIN, "A")
    assert record.inputs["aliases"][0]["name"] == "pricebot-test-1.eu-west-1.elb.amazonaws.com"


def test_before_an_image_is_pushed_nothing_is_started(https_stack: Stack) -> None:
    for service in https_stack.of_type(SERVICE):
        assert service.inputs["desiredCount"] == 0, service.name
    [target] = https_stack.of_type("aws:appautoscaling/target:Target")
    assert target.inputs["minCapacity"] == 0
    assert container(https_stack, "service")["image"].endswith(f":{UNPUSHED_TAG}")
    schedules = https_stack.of_type("aws:scheduler/schedule:Schedule")
    assert {s.inputs["name"]: s.inputs["state"] for s in schedules} == {
        "pricebot-test-score": "DISABLED",
        "pricebot-test-predict": "DISABLED",
    }


# --- the monitoring page ------------------------------------------------------------------------
def test_without_a_sign_in_the_page_is_not_routed_and_not_running(stack: Stack) -> None:
    # Given the default stack (monitoringAuth none), then no rule, no target group, no service
    assert stack.of_type(LISTENER_RULE) == []
    assert [g.name for g in stack.of_type(TARGET_GROUP)] == ["service-tg"]
    assert [s.name for s in stack.of_type(SERVICE)] == ["service-service"]
    assert stack.outputs["monitoring_url"] == ""
    assert stack.outputs["monitoring_routed"] is False
    # but its task definition is declared, as it would run
    assert container(stack, "monitoring")["command"] == ["monitor", "--host", "0.0.0.0"]


def test_with_cognito_the_page_is_behind_the_sign_in_on_https(https_stack: Stack) -> None:
    [rule] = https_stack.of_type(LISTENER_RULE)
    assert rule.inputs["listenerArn"].endswith("serving-https")
    assert rule.inputs["conditions"][0]["pathPattern"]["values"] == ["/monitor", "/monitor/*"]
    sign_in, forward = sorted(rule.inputs["actions"], key=lambda a: a["order"])
    assert sign_in["type"] == "authenticate-cognito"
    cognito = sign_in["authenticateCognito"]
    assert cognito["userPoolArn"].endswith("userpool/eu-west-1_abc")
    assert cognito["userPoolClientId"] == "monitoring-client-id"
    assert cognito["userPoolDomain"] == "pricebot-test-123456789012"
    assert cognito["onUnauthenticatedRequest"] == "authenticate"
    assert forward == {"order": 2, "type": "forward", "targetGroupArn": forward["targetGroupArn"]}
    assert forward["targetGroupArn"].endswith("monitoring-tg")
    assert authentication_violations(https_stack.resources) == []


def test_the_cognito_pool_admits_only_users_an_administrator_creates(https_stack: Stack) -> None:
    [pool] = https_stack.of_type("aws:cognito/userPool:UserPool")
    assert pool.inputs["adminCreateUserConfig"] == {"allowAdminCreateUserOnly": True}
    assert pool.inputs["passwordPolicy"]["minimumLength"] >= 12
    [client] = https_stack.of_type("aws:cognito/userPoolClient:UserPoolClient")
    assert client.inputs["generateSecret"] is True
    assert client.inputs["allowedOauthFlows"] == ["code"]
    assert client.inputs["callbackUrls"] == [f"https://{DOMAIN}/oauth2/idpresponse"]


def test_with_oidc_the_page_is_behind_the_providers_sign_in(oidc_stack: Stack) -> None:
    [rule] = oidc_stack.of_type(LISTENER_RULE)
    sign_in = min(rule.inputs["actions"], key=lambda a: a["order"])
    assert sign_in["type"] == "authenticate-oidc"
    oidc = sign_in["authenticateOidc"]
    assert oidc["issuer"] == OIDC["oidc_issuer"]
    assert oidc["tokenEndpoint"] == OIDC["oidc_token_endpoint"]
    assert oidc["clientId"] == "pricebot-monitoring"
    assert oidc["clientSecret"] == "s3cr3t"
    assert oidc_stack.of_type("aws:cognito/userPool:UserPool") == []
    assert authentication_violations(oidc_stack.resources) == []


def test_the_routed_page_is_health_checked_and_served_under_its_path(https_stack: Stack) -> None:
    group = https_stack.named(TARGET_GROUP, "monitoring-tg")
    assert group.inputs["healthCheck"]["path"] == "/monitor/_stcore/health"
    assert group.inputs["stickiness"]["enabled"] is True
    assert env(https_stack, "monitoring")["STREAMLIT_SERVER_BASE_URL_PATH"] == "monitor"
    assert env(https_stack, "monitoring")["PRICEBOT_MONITOR_PORT"] == "8501"


@pytest.mark.parametrize(
    ("actions", "protocol", "problem"),
    [
        (
            [{"order": 1, "type": "forward", "targetGroupArn": "arn:...:monitoring-tg"}],
            "HTTPS",
            "routes to the monitoring page without signing users in",
        ),
        (
            [
                {"order": 1, "type": "authenticate-cognito"},
                {"order": 2, "type": "forward", "targetGroupArn": "arn:...:monitoring-tg"},
            ],
            "HTTP",
            "signs users in on a listener that is not HTTPS",
        ),
    ],
)
def test_the_access_rule_catches_an_open_page(actions: list, protocol: str, problem: str) -> None:
    listener = Declared(LISTENER, "l", {"protocol": protocol}, id="l-id")
    rule = Declared(LISTENER_RULE, "r", {"listenerArn": "l-id", "actions": actions})
    assert authentication_violations([listener, rule]) == [f"ListenerRule 'r' {problem}"]


def test_oidc_without_its_client_secret_is_refused() -> None:
    from infra.config import StackSettingsError

    settings = variant(
        certificate_arn=CERTIFICATE_ARN, domain_name=DOMAIN, monitoring_auth="oidc", **OIDC
    )
    with pytest.raises(StackSettingsError, match="oidcClientSecret"):
        build_stack(settings)
