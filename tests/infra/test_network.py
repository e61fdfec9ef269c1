"""The network: who can reach what. Ingress from anywhere only to the load balancer on 80/443."""

from __future__ import annotations

import ipaddress

import pytest

from infra.components.network import INTERFACE_ENDPOINTS, subnet_cidrs
from infra.policy.rules import Declared, open_ingress_violations, ssh_violations
from tests.infra.conftest import Stack

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
SUBNET = "aws:ec2/subnet:Subnet"


def open_rules(stack: Stack) -> list[Declared]:
    return [r for r in stack.of_type(INGRESS) if r.inputs.get("cidrIpv4") == "0.0.0.0/0"]


def alb_rules(stack: Stack) -> list[Declared]:
    return [r for r in stack.of_type(INGRESS) if r.inputs["securityGroupId"] == "network-alb-id"]


def test_by_default_nothing_can_reach_the_load_balancer(stack: Stack) -> None:
    # Given the default stack (ingressCidrs unset), then the load balancer admits no one
    assert alb_rules(stack) == []
    assert open_ingress_violations(stack.resources) == []


def test_opened_to_the_world_on_purpose_only_the_load_balancer_is_open(
    https_stack: Stack,
) -> None:
    # Given a stack that set allowPublicIngress with 0.0.0.0/0, then nothing but the ALB is open
    assert open_ingress_violations(https_stack.resources) == []
    assert {r.inputs["securityGroupId"] for r in open_rules(https_stack)} == {"network-alb-id"}


def test_without_a_certificate_the_load_balancer_listens_on_80_only(
    configured_stack: Stack,
) -> None:
    assert sorted(r.inputs["fromPort"] for r in alb_rules(configured_stack)) == [80]


def test_with_a_certificate_the_load_balancer_also_listens_on_443(https_stack: Stack) -> None:
    assert sorted(r.inputs["fromPort"] for r in open_rules(https_stack)) == [80, 443]


def test_ingress_cidrs_narrow_who_reaches_the_load_balancer(configured_stack: Stack) -> None:
    # Given a stack restricted to an office range, then nothing is open to the world
    assert open_rules(configured_stack) == []
    assert {r.inputs.get("cidrIpv4") for r in alb_rules(configured_stack)} == {"203.0.113.0/24"}


def test_the_load_balancer_reaches_out_only_to_sign_users_in(
    stack: Stack, https_stack: Stack
) -> None:
    egress = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"

    def alb_out(s: Stack) -> list[tuple]:
        return sorted(
            (r.inputs.get("cidrIpv4") or r.inputs.get("referencedSecurityGroupId"),
             r.inputs["fromPort"])
            for r in s.of_type(egress)
            if r.inputs["securityGroupId"] == "network-alb-id"
        )  # fmt: skip

    # Without a sign-in, only to its targets; with Cognito, also HTTPS to the identity provider
    assert alb_out(stack) == [("network-monitoring-id", 8501), ("network-service-id", 3000)]
    assert ("0.0.0.0/0", 443) in alb_out(https_stack)


@pytest.mark.parametrize(
    ("group", "port", "why"),
    [
        ("network-database-id", 5432, "non-load-balancer"),
        ("network-mlflow-id", 5000, "non-load-balancer"),
        ("network-alb-id", 8080, "not just 80/443"),
    ],
)
def test_the_ingress_rule_catches_an_opening(stack: Stack, group: str, port: int, why: str) -> None:
    # Given the stack plus one rule opening a port to the internet
    bad = Declared(
        type=INGRESS,
        name="bad",
        inputs={
            "securityGroupId": group,
            "cidrIpv4": "0.0.0.0/0",
            "ipProtocol": "tcp",
            "fromPort": port,
            "toPort": port,
        },
    )
    # When checked, then the rule names it
    problems = open_ingress_violations([*stack.resources, bad])
    assert len(problems) == 1
    assert "'bad'" in problems[0]
    assert why in problems[0]


def test_internal_tiers_admit_only_their_callers(stack: Stack) -> None:
    # Each internal rule references a security group, never an address range
    callers: dict[str, set[str]] = {}
    for rule in stack.of_type(INGRESS):
        target = rule.inputs["securityGroupId"]
        if target in ("network-alb-id", "network-endpoints-id"):
            continue
        assert "cidrIpv4" not in rule.inputs, rule.name
        callers.setdefault(target, set()).add(rule.inputs["referencedSecurityGroupId"])
    assert callers == {
        "network-database-id": {
            "network-lambda-id",
            "network-mlflow-id",
            "network-service-id",
            "network-monitoring-id",
            "network-training-id",
        },
        "network-mlflow-id": {
            "network-service-id",
            "network-monitoring-id",
            "network-training-id",
        },
        "network-service-id": {"network-alb-id"},
        "network-monitoring-id": {"network-alb-id"},
    }


def test_no_ssh_anywhere(stack: Stack) -> None:
    assert ssh_violations(stack.resources) == []


def test_the_ssh_rule_catches_a_key_pair_and_port_22() -> None:
    bad = [
        Declared("aws:ec2/instance:Instance", "box", {"keyName": "laptop"}),
        Declared(INGRESS, "ssh", {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22}),
    ]
    assert len(ssh_violations(bad)) == 2


def test_subnets_are_three_tiers_across_two_zones(stack: Stack) -> None:
    subnets = stack.of_type(SUBNET)
    tiers = sorted((s.inputs["tags"]["tier"], s.inputs["availabilityZone"]) for s in subnets)
    assert tiers == [
        (tier, zone) for tier in ("app", "data", "public") for zone in ("eu-west-1a", "eu-west-1b")
    ]
    assert not any(s.inputs.get("mapPublicIpOnLaunch") for s in subnets)


def test_subnet_blocks_do_not_overlap_and_fit_the_vpc() -> None:
    blocks = [
        ipaddress.ip_network(c) for cs in subnet_cidrs("10.40.0.0/16", 3).values() for c in cs
    ]
    assert all(b.subnet_of(ipaddress.ip_network("10.40.0.0/16")) for b in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])


def test_load_balancer_sits_in_public_subnets_and_everything_else_in_private(stack: Stack) -> None:
    [alb] = stack.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["subnets"] == ["network-public-0-id", "network-public-1-id"]
    app = ["network-app-0-id", "network-app-1-id"]
    for function in stack.of_type("aws:lambda/function:Function"):
        assert function.inputs["vpcConfig"]["subnetIds"] == app
    for service in stack.of_type("aws:ecs/service:Service"):
        assert service.inputs["networkConfiguration"]["subnets"] == app
        assert service.inputs["networkConfiguration"]["assignPublicIp"] is False
    [instance] = stack.of_type("aws:ec2/instance:Instance")
    assert instance.inputs["subnetId"] == "network-app-0-id"
    [group] = stack.of_type("aws:rds/subnetGroup:SubnetGroup")
    assert group.inputs["subnetIds"] == ["network-data-0-id", "network-data-1-id"]


def test_one_nat_gateway_by_default_serving_both_app_subnets(stack: Stack) -> None:
    [nat] = stack.of_type("aws:ec2/natGateway:NatGateway")
    assert nat.inputs["subnetId"] == "network-public-0-id"
    defaults = [r for r in stack.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
    assert [r.inputs["natGatewayId"] for r in defaults] == ["network-nat-0-id"] * 2


def test_nat_gateways_per_zone_when_configured(https_stack: Stack) -> None:
    routes = [r for r in https_stack.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
    assert sorted(r.inputs["natGatewayId"] for r in routes) == [
        "network-nat-0-id",
        "network-nat-1-id",
    ]


def test_the_data_tier_has_no_route_out(stack: Stack) -> None:
    routes = stack.of_type("aws:ec2/route:Route")
    assert not [r for r in routes if r.inputs["routeTableId"] == "network-data-rt-id"]


def test_aws_services_are_reached_through_endpoints(stack: Stack) -> None:
    services = {
        e.inputs["serviceName"].removeprefix("com.amazonaws.eu-west-1."): e.inputs[
            "vpcEndpointType"
        ]
        for e in stack.of_type(ENDPOINT)
    }
    assert services == {"s3": "Gateway", **dict.fromkeys(INTERFACE_ENDPOINTS, "Interface")}
    assert {"secretsmanager", "ecr.api", "ecr.dkr", "logs", "ssm", "events"} <= set(services)


def test_interface_endpoints_can_be_turned_off_keeping_the_free_s3_gateway(
    https_stack: Stack,
) -> None:
    assert [e.inputs["vpcEndpointType"] for e in https_stack.of_type(ENDPOINT)] == ["Gateway"]
