"""The training task: declared by the stack, started by the retrain workflow via SSM."""

from __future__ import annotations

import json

from tests.infra.conftest import Stack

PARAMETER = "aws:ssm/parameter:Parameter"


def test_the_parameter_tells_the_retrain_workflow_how_to_start_training(stack: Stack) -> None:
    # Given the parameter the workflow reads (docs/ci.md: cluster, taskDefinition, container,
    # subnets, securityGroups, symbols)
    [parameter] = stack.of_type(PARAMETER)
    assert parameter.inputs["name"] == "/pricebot-test/training-task"
    spec = json.loads(parameter.inputs["value"])
    # Then it names the stack's cluster, the training family and private networking
    assert spec == {
        "cluster": "pricebot-test",
        "taskDefinition": "pricebot-test-training",
        "container": "training",
        "subnets": ["network-app-0-id", "network-app-1-id"],
        "securityGroups": ["network-training-id"],
        "symbols": ["BTCUSDT", "ETHUSDT", "ADAUSDT"],
    }
    assert stack.outputs["training_task_parameter"] == "/pricebot-test/training-task"


def test_the_task_reaches_the_database_and_mlflow_without_a_port_of_its_own(stack: Stack) -> None:
    task = stack.named("aws:ecs/taskDefinition:TaskDefinition", "training-task")
    assert (task.inputs["cpu"], task.inputs["memory"]) == ("2048", "8192")
    [container] = json.loads(task.inputs["containerDefinitions"])
    assert container["name"] == "training"
    assert container["portMappings"] == []
    variables = {e["name"]: e["value"] for e in container["environment"]}
    assert variables["MLFLOW_TRACKING_URI"] == "http://10.40.16.10:5000"
    assert [s["name"] for s in container["secrets"]] == ["PGUSER", "PGPASSWORD"]


def test_training_is_not_a_long_running_service(stack: Stack) -> None:
    services = [s.inputs["name"] for s in stack.of_type("aws:ecs/service:Service")]
    assert sorted(services) == ["pricebot-test-monitoring", "pricebot-test-service"]
