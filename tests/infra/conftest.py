"""Run the Pulumi program under Pulumi's mocks and keep every resource it declares.

No Pulumi CLI, no AWS, no network: ``pulumi.runtime.set_mocks`` answers each resource
registration with its inputs plus the computed attributes the program reads (ARNs, the RDS
secret, the load balancer's DNS name, ...), and each answer is recorded. The run builds the
default stack once (fixture ``stack``; two variants likewise) and the tests assert on the
recorded inputs, which are plain data by then, so an assertion cannot be lost inside an
unawaited ``apply``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass, replace
from typing import Any

import pulumi
import pytest

from infra.config import StackSettings
from infra.policy.rules import Declared

ACCOUNT = "123456789012"
REGION = "eu-west-1"
CERTIFICATE_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

# The default stack, as a user who sets only the region and the image tags would deploy it:
# nothing can reach the load balancer (ingressCidrs unset), the monitoring page is not routed
# (no sign-in configured), plain HTTP (no certificate).
DEFAULT_SETTINGS = StackSettings(
    region=REGION,
    stack="test",
    service_image_tag="2026.11.21-abc1234",
    monitoring_image_tag="2026.11.21-abc1234",
    training_image_tag="2026.11.21-abc1234",
)
DOMAIN = "pricebot.example.com"


def _arn(typ: str, name: str) -> str:
    service = typ.split(":")[1].split("/")[0]
    service = {"aws:cloudwatch/logGroup:LogGroup": "logs"}.get(typ, service)
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Attributes AWS would compute that the program reads back."""
    out: dict[str, Any] = {"arn": _arn(typ, name)}
    physical = inputs.get("name") or name
    if typ == "aws:s3/bucket:Bucket":
        out["bucket"] = f"{inputs.get('bucketPrefix', '')}0001"
    elif typ == "aws:s3/bucketObjectv2:BucketObjectv2":
        out["versionId"] = "v1"
    elif typ == "aws:rds/instance:Instance":
        out["address"] = f"{inputs['identifier']}.abc.{REGION}.rds.amazonaws.com"
        out["masterUserSecrets"] = [
            {
                "secretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-1",
                "secretStatus": "active",
            }
        ]
    elif typ == "aws:ecr/repository:Repository":
        out["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{physical}"
    elif typ == "aws:lb/loadBalancer:LoadBalancer":
        out["dnsName"] = f"{physical}-1.{REGION}.elb.amazonaws.com"
        out["zoneId"] = "Z32O12XQLNTSW2"
        out["arnSuffix"] = f"app/{physical}/50dc6c495c0c9188"
    elif typ == "aws:lb/targetGroup:TargetGroup":
        out["arnSuffix"] = f"targetgroup/{physical}/943f017f100becff"
    elif typ == "aws:cognito/userPool:UserPool":
        out["arn"] = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{REGION}_abc"
    elif typ == "aws:ec2/instance:Instance":
        out["privateIp"] = "10.40.16.10"
    elif typ == "aws:sqs/queue:Queue":
        out["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}"
        out["name"] = physical
    elif typ == "aws:lambda/layerVersion:LayerVersion":
        out["arn"] = _arn(typ, f"layer:{name}:1")
    return out


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker for a secret value


def reveal(value: Any) -> Any:
    """Inputs with Pulumi's secret wrappers replaced by the values they wrap."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return reveal(value.get("value"))
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers registrations and provider calls, recording every resource declared."""

    def __init__(self) -> None:
        self.resources: list[Declared] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = reveal(dict(args.inputs))
        computed = _computed(args.typ, args.name, inputs)
        self.resources.append(
            Declared(
                type=args.typ, name=args.name, inputs=inputs, id=f"{args.name}-id", outputs=computed
            )
        )
        return f"{args.name}-id", {**inputs, **computed}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        answers = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": {
                "names": ZONES,
                "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"],
            },
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/test",
                "userId": "test",
            },
            "aws:index/getPartition:getPartition": {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
            },
            "aws:ssm/getParameter:getParameter": {
                "name": args.args.get("name"),
                "value": "ami-0123456789abcdef0",
                "type": "String",
            },
        }
        if args.token not in answers:
            raise AssertionError(f"the program made a call the mocks do not know: {args.token}")
        return answers[args.token]


@dataclass(frozen=True)
class Stack:
    """What one program run declared, and its outputs (resolved)."""

    resources: list[Declared]
    outputs: dict[str, Any]

    def of_type(self, typ: str) -> list[Declared]:
        return [r for r in self.resources if r.type == typ]

    def named(self, typ: str, name: str) -> Declared:
        [found] = [r for r in self.of_type(typ) if r.name == name]
        return found

    def policies(self) -> list[tuple[Declared, dict]]:
        """Every IAM policy document the stack declares, parsed."""
        docs = []
        for r in self.resources:
            for key in ("policy", "assumeRolePolicy"):
                value = r.inputs.get(key)
                if isinstance(value, str) and value.strip().startswith("{"):
                    docs.append((r, json.loads(value)))
        return docs


def run_program(program: Callable[[], Any]) -> Stack:
    """Run ``program`` under fresh mocks until every registration has been answered."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="pricebot", stack="test", preview=False)
    captured: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output:
        result = program()
        outputs = dict(vars(result)) if is_dataclass(result) else {}
        return pulumi.Output.from_input(outputs).apply(captured.update)

    run()
    return Stack(resources=list(mocks.resources), outputs=captured)


def build_stack(settings: StackSettings) -> Stack:
    from infra.stack import build

    return run_program(lambda: build(settings))


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The default stack, declared once for the whole run (tests only read it)."""
    return build_stack(DEFAULT_SETTINGS)


@pytest.fixture(scope="session")
def configured_stack() -> Stack:
    """A stack with the optional knobs a user turns: office-only ingress, tags, e-mail, arm64."""
    return build_stack(
        variant(
            ingress_cidrs=("203.0.113.0/24",),
            extra_tags={"owner": "data-team"},
            alarm_email="oncall@example.com",
            ingest_schedule="rate(1 minute)",
            lambda_architecture="arm64",
            symbols=("BTCUSDT",),
        )
    )


@pytest.fixture(scope="session")
def https_stack() -> Stack:
    """A first deployment with a certificate and Cognito sign-in for the page: HTTPS, open to
    the world on purpose, no images pushed yet, a NAT per zone and no interface endpoints."""
    return build_stack(
        variant(
            certificate_arn=CERTIFICATE_ARN,
            domain_name=DOMAIN,
            hosted_zone_id="Z0123456789ABCDEFGHIJ",
            monitoring_auth="cognito",
            ingress_cidrs=("0.0.0.0/0",),
            allow_public_ingress=True,
            service_image_tag=None,
            monitoring_image_tag=None,
            training_image_tag=None,
            interface_endpoints=False,
            nat_gateways=2,
        )
    )


def variant(**changes: Any) -> StackSettings:
    """The default settings with some fields changed (what a user could configure)."""
    return replace(DEFAULT_SETTINGS, **changes)
