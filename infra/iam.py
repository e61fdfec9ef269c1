"""IAM policy documents built as data, so the tests (and a policy pack) can read every statement.

Statements are plain dicts in IAM's JSON shape. Resource ``"*"`` is allowed only through
:func:`any_resource`, which takes the reason: the places where an AWS API has no resource-level
permissions are few and each one says why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi

ANY_RESOURCE = "*"
# What the Session Manager agent calls; AWS scopes none of these to a resource.
SSM_AGENT_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
)


def any_resource(reason: str) -> str:
    """Resource ``"*"`` for actions AWS does not scope to a resource; ``reason`` documents why."""
    if not reason.strip():
        raise ValueError("say why this statement cannot name its resources")
    return ANY_RESOURCE


def allow(
    actions: Sequence[str],
    resources: pulumi.Input[str] | Sequence[pulumi.Input[str]],
    condition: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Allow statement; ``actions`` must name actions, never ``*`` or ``service:*``."""
    for action in actions:
        if action == "*" or action.endswith(":*"):
            raise ValueError(f"name the actions instead of {action!r} (least privilege)")
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Action": list(actions),
        "Resource": list(resources) if isinstance(resources, list | tuple) else [resources],
    }
    if condition:
        statement["Condition"] = condition
    return statement


def document(*statements: dict[str, Any]) -> pulumi.Output[str]:
    """A policy document as JSON, resolving any Output inside the statements."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service principal assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
