"""The stack's security rules as plain functions over declared resources.

Each rule takes every resource a program declared (type token, logical name, id, inputs in
Pulumi's camelCase) and returns the violations it finds as sentences naming the resource. The
tests run them over the stack as Pulumi's mocks see it, and over hand-made bad resources to
show each rule can fail. A ``pulumi-policy`` pack could call the same functions on a real
preview; it is not shipped because pulumi-policy 1.21 pins protobuf 5, which would downgrade
the protobuf 6 the rest of the project resolves to.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from infra.iam import SSM_AGENT_ACTIONS

ANYWHERE = ("0.0.0.0/0", "::/0")
LOAD_BALANCER_PORTS = (80, 443)
MIN_BACKUP_RETENTION_DAYS = 7
REQUIRED_TAGS = ("project", "stack", "managed-by")

# Actions AWS does not scope to a resource (so Resource "*" is the only possibility).
ACTIONS_WITHOUT_RESOURCES = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
        *SSM_AGENT_ACTIONS,
        "cloudwatch:PutMetricData",
        "secretsmanager:GetRandomPassword",
    }
)

SG = "aws:ec2/securityGroup:SecurityGroup"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_PARAMETERS = "aws:rds/parameterGroup:ParameterGroup"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
LAMBDA = "aws:lambda/function:Function"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
SCHEDULE = "aws:scheduler/schedule:Schedule"
LISTENER = "aws:lb/listener:Listener"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
AUTHENTICATE = ("authenticate-cognito", "authenticate-oidc")
# Values ECS would put in an environment in the clear, or inject once at start.
DATABASE_PASSWORD_VARIABLES = ("PGPASSWORD", "PGUSER", "PRICEBOT_DB_PASSWORD")
ROLE = "aws:iam/role:Role"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


@dataclass(frozen=True)
class Declared:
    """One resource as the program declared it."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    id: str | None = field(default=None)
    # What the provider answered (ARNs, ...), where known: a preview knows it only for resources
    # that exist already.
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.type.rsplit(':', 1)[-1]} {self.name!r}"


def _of(resources: Iterable[Declared], typ: str) -> list[Declared]:
    return [r for r in resources if r.type == typ]


def _listed(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


# --- network ------------------------------------------------------------------------------------
def open_ingress_violations(resources: Sequence[Declared]) -> list[str]:
    """Ingress from anywhere is allowed only to a load balancer's security group on 80/443."""
    balancer_groups = {
        group
        for lb in _of(resources, LOAD_BALANCER)
        for group in lb.inputs.get("securityGroups", [])
    }
    problems = []
    for group in _of(resources, SG):
        for rule in group.inputs.get("ingress") or []:
            if set(_listed(rule.get("cidrBlocks")) + _listed(rule.get("ipv6CidrBlocks"))) & set(
                ANYWHERE
            ):
                problems.append(f"{group} has an inline ingress rule open to the internet")
    rules = _of(resources, SG_INGRESS) + [
        r for r in _of(resources, SG_RULE) if r.inputs.get("type") == "ingress"
    ]
    for rule in rules:
        sources = _listed(rule.inputs.get("cidrIpv4")) + _listed(rule.inputs.get("cidrIpv6"))
        sources += _listed(rule.inputs.get("cidrBlocks")) + _listed(
            rule.inputs.get("ipv6CidrBlocks")
        )
        if not set(sources) & set(ANYWHERE):
            continue
        ports = (rule.inputs.get("fromPort"), rule.inputs.get("toPort"))
        if rule.inputs.get("securityGroupId") not in balancer_groups:
            problems.append(f"{rule} opens a non-load-balancer security group to the internet")
        elif str(rule.inputs.get("ipProtocol", rule.inputs.get("protocol"))) != "tcp" or not (
            ports[0] == ports[1] and ports[0] in LOAD_BALANCER_PORTS
        ):
            problems.append(f"{rule} opens the load balancer on ports {ports}, not just 80/443")
    return problems


def ssh_violations(resources: Sequence[Declared]) -> list[str]:
    """No ingress rule reaches port 22, and no instance carries an SSH key pair."""
    problems = []
    for rule in _of(resources, SG_INGRESS) + _of(resources, SG_RULE):
        low, high = rule.inputs.get("fromPort"), rule.inputs.get("toPort")
        if rule.inputs.get("ipProtocol") == "-1" or (
            low is not None and high is not None and low <= 22 <= high
        ):
            problems.append(f"{rule} lets traffic reach SSH (port 22)")
    for instance in _of(resources, "aws:ec2/instance:Instance"):
        if instance.inputs.get("keyName"):
            problems.append(f"{instance} has an SSH key pair; use Session Manager")
    return problems


# --- database -----------------------------------------------------------------------------------
def database_violations(resources: Sequence[Declared]) -> list[str]:
    """Private, encrypted, RDS-managed password, >= 7 days of backups, protected, TLS only."""
    forced_tls = {
        p.inputs.get("name")
        for p in _of(resources, RDS_PARAMETERS)
        if {"name": "rds.force_ssl", "value": "1"}
        in [
            {"name": x.get("name"), "value": str(x.get("value"))}
            for x in p.inputs.get("parameters", [])
        ]
    }
    problems = []
    for db in _of(resources, RDS_INSTANCE):
        i = db.inputs
        if i.get("publiclyAccessible") is not False:
            problems.append(f"{db} must set publicly_accessible=False")
        if i.get("storageEncrypted") is not True:
            problems.append(f"{db} must encrypt its storage")
        if i.get("manageMasterUserPassword") is not True or i.get("password"):
            problems.append(f"{db} must let RDS manage the master password (none in state)")
        if int(i.get("backupRetentionPeriod") or 0) < MIN_BACKUP_RETENTION_DAYS:
            problems.append(f"{db} keeps backups under {MIN_BACKUP_RETENTION_DAYS} days")
        if i.get("deletionProtection") is not True:
            problems.append(f"{db} has deletion protection off")
        if i.get("parameterGroupName") not in forced_tls:
            problems.append(f"{db} does not use a parameter group with rds.force_ssl=1")
    return problems


# --- storage ------------------------------------------------------------------------------------
def _denies_plain_http(policy: Any) -> bool:
    doc = json.loads(policy) if isinstance(policy, str) else policy or {}
    for statement in _listed(doc.get("Statement")):
        condition = statement.get("Condition", {}).get("Bool", {})
        if statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")) in (
            "false",
            "False",
        ):
            return True
    return False


def bucket_violations(resources: Sequence[Declared]) -> list[str]:
    """Each bucket: public access blocked four ways, TLS-only policy, versioned, encrypted."""
    problems = []
    for bucket in _of(resources, BUCKET):

        def attached(typ: str, bucket: Declared = bucket) -> list[Declared]:
            return [r for r in _of(resources, typ) if r.inputs.get("bucket") == bucket.id]

        blocks = attached(PUBLIC_ACCESS_BLOCK)
        flags = (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
        if not any(all(b.inputs.get(f) is True for f in flags) for b in blocks):
            problems.append(f"{bucket} lacks a public access block with all four settings true")
        if not any(_denies_plain_http(p.inputs.get("policy")) for p in attached(BUCKET_POLICY)):
            problems.append(f"{bucket} has no policy denying aws:SecureTransport=false")
        if not any(
            v.inputs.get("versioningConfiguration", {}).get("status") == "Enabled"
            for v in attached(BUCKET_VERSIONING)
        ):
            problems.append(f"{bucket} is not versioned")
        if not attached(BUCKET_ENCRYPTION):
            problems.append(f"{bucket} has no server-side encryption configuration")
    return problems


# --- IAM ----------------------------------------------------------------------------------------
def _statements(policy: Any) -> list[dict]:
    doc = json.loads(policy) if isinstance(policy, str) else policy or {}
    return _listed(doc.get("Statement"))


def statement_violations(where: str, statement: Mapping[str, Any]) -> list[str]:
    """One Allow statement: named actions only; Resource "*" only for unscoped actions."""
    if statement.get("Effect") != "Allow":
        return []
    problems = []
    if "NotAction" in statement:
        problems.append(f"{where}: Allow with NotAction grants nearly everything")
    actions = _listed(statement.get("Action"))
    for action in actions:
        if action == "*" or str(action).endswith(":*"):
            problems.append(f"{where}: grants every action ({action!r})")
    if "*" in _listed(statement.get("Resource")):
        unscoped = [a for a in actions if a not in ACTIONS_WITHOUT_RESOURCES]
        if unscoped:
            problems.append(f"{where}: Resource '*' for actions that can be scoped: {unscoped}")
    return problems


def iam_violations(resources: Sequence[Declared]) -> list[str]:
    """Every policy document in the stack, and no AWS-managed policy attached unseen."""
    problems = []
    for r in resources:
        documents = [r.inputs.get("policy")]
        documents += [p.get("policy") for p in r.inputs.get("inlinePolicies") or []]
        for document in documents:
            if not isinstance(document, str | dict):
                continue
            for statement in _statements(document):
                problems += statement_violations(str(r), statement)
    for r in _of(resources, ROLE_POLICY_ATTACHMENT):
        problems.append(f"{r} attaches {r.inputs.get('policyArn')}; write the statements instead")
    for r in _of(resources, ROLE):
        if r.inputs.get("managedPolicyArns"):
            problems.append(f"{r} attaches managed policies {r.inputs['managedPolicyArns']}")
    return problems


# --- pipeline -----------------------------------------------------------------------------------
def dead_letter_violations(resources: Sequence[Declared]) -> list[str]:
    """Every function and every EventBridge target sends what finally fails to a queue."""
    problems = []
    for function in _of(resources, LAMBDA):
        if not (function.inputs.get("deadLetterConfig") or {}).get("targetArn"):
            problems.append(f"{function} has no dead-letter queue")
    for target in _of(resources, EVENT_TARGET):
        if not (target.inputs.get("deadLetterConfig") or {}).get("arn"):
            problems.append(f"{target} has no dead-letter queue")
    for schedule in _of(resources, SCHEDULE):
        if not ((schedule.inputs.get("target") or {}).get("deadLetterConfig") or {}).get("arn"):
            problems.append(f"{schedule} has no dead-letter queue")
    return problems


# --- access -------------------------------------------------------------------------------------
def authentication_violations(resources: Sequence[Declared]) -> list[str]:
    """A sign-in only on HTTPS (the load balancer refuses it on HTTP, and a session cookie
    must not cross in the clear), and nothing routed to the monitoring page without one."""
    protocol = {
        key: listener.inputs.get("protocol")
        for listener in _of(resources, LISTENER)
        for key in (listener.id, listener.outputs.get("arn"))
        if key
    }
    problems = []
    for rule in _of(resources, LISTENER_RULE):
        actions = sorted(rule.inputs.get("actions") or [], key=lambda a: a.get("order") or 0)
        kinds = [a.get("type") for a in actions]
        signs_in = any(kind in AUTHENTICATE for kind in kinds)
        if signs_in and protocol.get(rule.inputs.get("listenerArn")) != "HTTPS":
            problems.append(f"{rule} signs users in on a listener that is not HTTPS")
        forwards_to_monitoring = any(
            a.get("type") == "forward" and "monitoring" in str(a.get("targetGroupArn"))
            for a in actions
        )
        if forwards_to_monitoring and (not kinds or kinds[0] not in AUTHENTICATE):
            problems.append(f"{rule} routes to the monitoring page without signing users in")
    for listener in _of(resources, LISTENER):
        for action in listener.inputs.get("defaultActions") or []:
            if action.get("type") == "forward" and "monitoring" in str(
                action.get("targetGroupArn")
            ):
                problems.append(f"{listener} forwards to the monitoring page by default")
    return problems


def task_credential_violations(resources: Sequence[Declared]) -> list[str]:
    """No task gets a database password in its environment or injected once at start; a task
    that knows the database reads its own login's secret (and so follows a rotation)."""
    problems = []
    for task in _of(resources, TASK_DEFINITION):
        definitions = task.inputs.get("containerDefinitions")
        containers = json.loads(definitions) if isinstance(definitions, str) else []
        for container in containers:
            env = {e["name"]: e["value"] for e in container.get("environment", [])}
            injected = {s["name"] for s in container.get("secrets", [])}
            for name in DATABASE_PASSWORD_VARIABLES:
                if name in env or name in injected:
                    problems.append(f"{task} puts {name} in the container's environment")
            url = env.get("PRICEBOT_DATABASE_URL")
            if url is None:
                continue
            if "@" in url:
                problems.append(f"{task} has credentials in PRICEBOT_DATABASE_URL")
            if not env.get("PRICEBOT_DATABASE_SECRET_ARN"):
                problems.append(f"{task} knows the database but not its login's secret")
    return problems


# --- tags ---------------------------------------------------------------------------------------
@cache
def accepts_tags(token: str) -> bool:
    """Whether the pulumi-aws resource ``token`` (e.g. aws:ec2/vpc:Vpc) has a ``tags`` input."""
    import inspect

    try:
        _, module_path, class_name = token.split(":")
        module = module_path.split("/")[0]
        module = "lambda_" if module == "lambda" else module
        cls = getattr(importlib.import_module(f"pulumi_aws.{module}"), class_name)
    except (ValueError, ImportError, AttributeError):
        return False
    return "tags" in inspect.signature(cls._internal_init).parameters


def tag_violations(
    resources: Sequence[Declared], required: Sequence[str] = REQUIRED_TAGS
) -> list[str]:
    """Every taggable AWS resource carries the stack's tags."""
    problems = []
    for r in resources:
        if not r.type.startswith("aws:") or not accepts_tags(r.type):
            continue
        missing = [t for t in required if t not in (r.inputs.get("tags") or {})]
        if missing:
            problems.append(f"{r} lacks tags {missing}")
    return problems


ALL_RULES = (
    open_ingress_violations,
    ssh_violations,
    database_violations,
    bucket_violations,
    iam_violations,
    dead_letter_violations,
    authentication_violations,
    task_credential_violations,
    tag_violations,
)


def violations(resources: Sequence[Declared]) -> list[str]:
    """Every rule over every resource."""
    return [problem for rule in ALL_RULES for problem in rule(resources)]
