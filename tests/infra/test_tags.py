"""Tags on every taggable resource, from one stack transformation."""

from __future__ import annotations

import pytest

from infra.policy.rules import Declared, accepts_tags, tag_violations
from tests.infra.conftest import Stack


def test_every_taggable_resource_carries_the_stack_tags(stack: Stack) -> None:
    assert tag_violations(stack.resources) == []
    taggable = [r for r in stack.resources if r.type.startswith("aws:") and accepts_tags(r.type)]
    assert len(taggable) > 50  # the check covered the stack, not an empty list
    for resource in taggable:
        tags = resource.inputs["tags"]
        assert (tags["project"], tags["stack"], tags["managed-by"]) == (
            "pricebot",
            "test",
            "pulumi",
        ), resource.name


def test_a_resource_keeps_its_own_tags_next_to_the_stack_tags(stack: Stack) -> None:
    vpc = stack.named("aws:ec2/vpc:Vpc", "network-vpc")
    assert vpc.inputs["tags"]["Name"] == "pricebot-test"
    assert vpc.inputs["tags"]["project"] == "pricebot"


def test_extra_tags_from_config_reach_every_taggable_resource(configured_stack: Stack) -> None:
    assert tag_violations(configured_stack.resources, required=("owner",)) == []


def test_the_tag_rule_catches_an_untagged_resource() -> None:
    untagged = Declared("aws:sqs/queue:Queue", "forgotten", {"name": "q"})
    assert tag_violations([untagged]) == [
        "Queue 'forgotten' lacks tags ['project', 'stack', 'managed-by']"
    ]


@pytest.mark.parametrize(
    ("token", "taggable"),
    [
        ("aws:ec2/vpc:Vpc", True),
        ("aws:lambda/function:Function", True),
        ("aws:iam/rolePolicy:RolePolicy", False),
        ("aws:lambda/permission:Permission", False),
        ("aws:nosuch/thing:Thing", False),
    ],
)
def test_taggability_is_read_from_the_provider_schema(token: str, taggable: bool) -> None:
    assert accepts_tags(token) is taggable
