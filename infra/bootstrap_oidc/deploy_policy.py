"""What the deploy role may do: what ``pulumi up`` of the main stack manages, and what the deploy
workflow does around it, service by service, named by the stack's prefix wherever AWS allows.

Three kinds of scoping, from tightest to loosest, because AWS offers different things per
service:

- by name: RDS, ECS, load balancers, IAM roles, Lambda, S3, ECR, EventBridge rules and
  schedules, CloudWatch alarms and log groups, SNS, SQS, SSM and Secrets Manager resources are
  named ``<prefix>-...`` (or ``<prefix>/...``) by the stack, so their ARNs are patterns on it;
- by tag: EC2 resource ARNs are ids, not names, so changing or deleting a VPC, subnet, security
  group, route table, gateway, endpoint or instance needs the stack's ``stack`` tag on it, which
  the stack's tag transformation puts on everything it creates; Cognito user pools likewise;
- by region only: creating EC2 resources (the id is not known before) and the ``Describe*`` /
  ``List*`` reads Pulumi refreshes with, which AWS does not scope at all.

IAM is the one that could undo the rest: a role the deploy creates could be given any policy
and passed to a task. So every role the deploy creates or changes must carry the permissions
boundary this stack also creates (:func:`boundary_statements`, the union of what the main
stack's roles need), the deploy role may attach no managed policy, and it may never remove or
replace a boundary. The main stack sets the boundary on every role it declares
(``pricebot:rolePermissionsBoundaryArn``).

This policy has not been replayed against a live account here (no AWS in the tests); the tests
check it covers every AWS service the main stack declares, scopes what it names, and fits IAM's
size limits. A denial on a first deploy shows in CloudTrail with the action's name; add it here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Managed policies: 6,144 characters each (whitespace excluded), 10 attached per role by default.
MANAGED_POLICY_MAX_CHARS = 6144
MAX_ATTACHED_POLICIES = 10
# The services the deploy workflow's role runs tasks and roles for.
PASSED_TO = (
    "ecs-tasks.amazonaws.com",
    "lambda.amazonaws.com",
    "ec2.amazonaws.com",
    "scheduler.amazonaws.com",
)
SERVICE_LINKED = (
    "ecs.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    "ecs.application-autoscaling.amazonaws.com",
    "rds.amazonaws.com",
)


@dataclass(frozen=True)
class Scope:
    """Where the main stack lives and what it is called."""

    partition: str
    account: str
    region: str  # "*" when not pinned
    prefix: str  # <project>-<stack>
    stack: str  # the stack's name: the value of its `stack` tag
    boundary_arn: str
    state_bucket: str | None = None
    secrets_kms_key_arn: str | None = None
    hosted_zone_id: str | None = None

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )


def _allow(sid: str, actions: list[str], resources: list[str] | str, **condition: Any) -> dict:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources if isinstance(resources, list) else [resources],
    }
    if condition:
        statement["Condition"] = condition
    return statement


def _in_region(scope: Scope) -> dict:
    return {} if scope.region == "*" else {"StringEquals": {"aws:RequestedRegion": scope.region}}


def _tagged(scope: Scope) -> dict:
    return {"StringEquals": {"aws:ResourceTag/stack": scope.stack}}


def network(scope: Scope) -> list[dict]:
    """EC2: the VPC, its subnets, routes, gateways, endpoints, security groups, the MLflow box."""
    creates = [
        "ec2:AllocateAddress",
        "ec2:AssociateRouteTable",
        "ec2:AttachInternetGateway",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateInternetGateway",
        "ec2:CreateNatGateway",
        "ec2:CreateRoute",
        "ec2:CreateRouteTable",
        "ec2:CreateSecurityGroup",
        "ec2:CreateSubnet",
        "ec2:CreateTags",
        "ec2:CreateVpc",
        "ec2:CreateVpcEndpoint",
        "ec2:RunInstances",
    ]
    changes = [
        "ec2:DeleteInternetGateway",
        "ec2:DeleteNatGateway",
        "ec2:DeleteRoute",
        "ec2:DeleteRouteTable",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteSubnet",
        "ec2:DeleteTags",
        "ec2:DeleteVpc",
        "ec2:DeleteVpcEndpoints",
        "ec2:DetachInternetGateway",
        "ec2:DisassociateAddress",
        "ec2:DisassociateRouteTable",
        "ec2:ModifyInstanceAttribute",
        "ec2:ModifyInstanceMetadataOptions",
        "ec2:ModifySecurityGroupRules",
        "ec2:ModifySubnetAttribute",
        "ec2:ModifyVpcAttribute",
        "ec2:ModifyVpcEndpoint",
        "ec2:ReleaseAddress",
        "ec2:ReplaceRoute",
        "ec2:ReplaceRouteTableAssociation",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:StartInstances",
        "ec2:StopInstances",
        "ec2:TerminateInstances",
        "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
        "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    ]
    return [
        _allow("Ec2CreateInRegion", creates, "*", **_in_region(scope)),
        _allow("Ec2ChangeOnlyThisStacks", changes, "*", **_tagged(scope)),
        # A route table association and a route reach the subnet, gateway and table by id; the
        # delete calls for them name the route table, tagged above.
    ]


def data(scope: Scope) -> list[dict]:
    """RDS, Secrets Manager (the stack's secrets and the RDS-managed one), SSM, S3, ECR."""
    p = scope.prefix
    rds = [
        scope.arn("rds", f"db:{p}-db"),
        scope.arn("rds", f"subgrp:{p}-db"),
        scope.arn("rds", f"pg:{p}-pg*"),
        scope.arn("rds", f"snapshot:{p}-db-final"),
    ]
    statements = [
        _allow(
            "RdsThisStacksDatabase",
            [
                "rds:AddTagsToResource",
                "rds:CreateDBInstance",
                "rds:CreateDBParameterGroup",
                "rds:CreateDBSnapshot",
                "rds:CreateDBSubnetGroup",
                "rds:DeleteDBInstance",
                "rds:DeleteDBParameterGroup",
                "rds:DeleteDBSubnetGroup",
                "rds:ListTagsForResource",
                "rds:ModifyDBInstance",
                "rds:ModifyDBParameterGroup",
                "rds:ModifyDBSubnetGroup",
                "rds:RebootDBInstance",
                "rds:RemoveTagsFromResource",
            ],
            rds,
        ),
        # manage_master_user_password: RDS creates its secret (named rds!...) as the caller.
        _allow(
            "RdsManagedMasterSecret",
            [
                "secretsmanager:CreateSecret",
                "secretsmanager:DeleteSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:RotateSecret",
                "secretsmanager:TagResource",
            ],
            scope.arn("secretsmanager", "secret:rds!*"),
        ),
        _allow(
            "ThisStacksSecretsWithoutTheirValues",
            [
                "secretsmanager:CreateSecret",
                "secretsmanager:DeleteSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetResourcePolicy",
                "secretsmanager:RestoreSecret",
                "secretsmanager:TagResource",
                "secretsmanager:UntagResource",
                "secretsmanager:UpdateSecret",
            ],
            scope.arn("secretsmanager", f"secret:{p}/*"),
        ),
        # The smoke test authenticates with the generated API key; no other value is readable.
        _allow(
            "SmokeTestReadsTheApiKey",
            ["secretsmanager:GetSecretValue"],
            scope.arn("secretsmanager", f"secret:{p}/api-keys*"),
        ),
        _allow(
            "ThisStacksParameters",
            [
                "ssm:AddTagsToResource",
                "ssm:DeleteParameter",
                "ssm:GetParameter",
                "ssm:GetParameters",
                "ssm:ListTagsForResource",
                "ssm:PutParameter",
                "ssm:RemoveTagsFromResource",
            ],
            scope.arn("ssm", f"parameter/{p}/*"),
        ),
        _allow(
            "TheAmiParameter",
            ["ssm:GetParameter", "ssm:GetParameters"],
            scope.arn("ssm", "parameter/aws/service/*", account=False),
        ),
        _allow(
            "ThisStacksBucket",
            [
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:DeleteBucketPolicy",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
                "s3:GetAccelerateConfiguration",
                "s3:GetBucketAcl",
                "s3:GetBucketCORS",
                "s3:GetBucketLogging",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetBucketOwnershipControls",
                "s3:GetBucketPolicy",
                "s3:GetBucketPublicAccessBlock",
                "s3:GetBucketRequestPayment",
                "s3:GetBucketTagging",
                "s3:GetBucketVersioning",
                "s3:GetBucketWebsite",
                "s3:GetEncryptionConfiguration",
                "s3:GetLifecycleConfiguration",
                "s3:GetObject",
                "s3:GetObjectTagging",
                "s3:GetObjectVersion",
                "s3:GetReplicationConfiguration",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:PutBucketPolicy",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutBucketTagging",
                "s3:PutBucketVersioning",
                "s3:PutEncryptionConfiguration",
                "s3:PutLifecycleConfiguration",
                "s3:PutObject",
                "s3:PutObjectTagging",
            ],
            [
                f"arn:{scope.partition}:s3:::{p}-artifacts-*",
                f"arn:{scope.partition}:s3:::{p}-artifacts-*/*",
            ],
        ),
        _allow(
            "ThisStacksImageRepositories",
            [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:CompleteLayerUpload",
                "ecr:CreateRepository",
                "ecr:DeleteLifecyclePolicy",
                "ecr:DeleteRepository",
                "ecr:DescribeImages",
                "ecr:DescribeRepositories",
                "ecr:GetLifecyclePolicy",
                "ecr:InitiateLayerUpload",
                "ecr:ListTagsForResource",
                "ecr:PutImage",
                "ecr:PutImageScanningConfiguration",
                "ecr:PutImageTagMutability",
                "ecr:PutLifecyclePolicy",
                "ecr:TagResource",
                "ecr:UntagResource",
                "ecr:UploadLayerPart",
            ],
            scope.arn("ecr", f"repository/{p}-*"),
        ),
    ]
    if scope.state_bucket:
        bucket = f"arn:{scope.partition}:s3:::{scope.state_bucket}"
        statements.append(
            _allow(
                "PulumiState",
                ["s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"],
                [bucket, f"{bucket}/*"],
            )
        )
    if scope.secrets_kms_key_arn:
        statements.append(
            _allow(
                "PulumiSecretsProvider",
                ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                scope.secrets_kms_key_arn,
            )
        )
    return statements


def compute(scope: Scope) -> list[dict]:
    """ECS, the load balancer, autoscaling and Lambda."""
    p = scope.prefix
    cluster = scope.arn("ecs", f"cluster/{p}")
    elb = scope.arn  # elasticloadbalancing ARNs, for the long lines below
    return [
        _allow(
            "EcsThisStacksClusterAndServices",
            [
                "ecs:CreateCluster",
                "ecs:CreateService",
                "ecs:DeleteCluster",
                "ecs:DeleteService",
                "ecs:DescribeClusters",
                "ecs:DescribeServices",
                "ecs:ListTagsForResource",
                "ecs:PutClusterCapacityProviders",
                "ecs:TagResource",
                "ecs:UntagResource",
                "ecs:UpdateCluster",
                "ecs:UpdateClusterSettings",
                "ecs:UpdateService",
            ],
            [
                cluster,
                scope.arn("ecs", f"service/{p}/*"),
                scope.arn("ecs", f"task-definition/{p}-*:*"),
            ],
        ),
        # The deploy's one-off tasks (migrate, bootstrap) on this stack's cluster only.
        _allow(
            "EcsRunThisStacksTasks",
            ["ecs:RunTask"],
            scope.arn("ecs", f"task-definition/{p}-*:*"),
            ArnEquals={"ecs:cluster": cluster},
        ),
        _allow(
            "EcsWatchThisStacksTasks",
            ["ecs:DescribeTasks", "ecs:StopTask"],
            scope.arn("ecs", f"task/{p}/*"),
        ),
        _allow(
            "ElbThisStacksBalancer",
            [
                "elasticloadbalancing:AddTags",
                "elasticloadbalancing:CreateListener",
                "elasticloadbalancing:CreateLoadBalancer",
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:CreateTargetGroup",
                "elasticloadbalancing:DeleteListener",
                "elasticloadbalancing:DeleteLoadBalancer",
                "elasticloadbalancing:DeleteRule",
                "elasticloadbalancing:DeleteTargetGroup",
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:ModifyLoadBalancerAttributes",
                "elasticloadbalancing:ModifyRule",
                "elasticloadbalancing:ModifyTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:RemoveTags",
                "elasticloadbalancing:SetRulePriorities",
                "elasticloadbalancing:SetSecurityGroups",
                "elasticloadbalancing:SetSubnets",
            ],
            [
                elb("elasticloadbalancing", f"loadbalancer/app/{p}/*"),
                elb("elasticloadbalancing", f"targetgroup/{p}-*/*"),
                elb("elasticloadbalancing", f"listener/app/{p}/*"),
                elb("elasticloadbalancing", f"listener-rule/app/{p}/*"),
            ],
        ),
        _allow(
            "ServiceAutoscaling",
            [
                "application-autoscaling:DeleteScalingPolicy",
                "application-autoscaling:DeregisterScalableTarget",
                "application-autoscaling:ListTagsForResource",
                "application-autoscaling:PutScalingPolicy",
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:TagResource",
            ],
            scope.arn("application-autoscaling", "scalable-target/*"),
        ),
        _allow(
            "LambdaThisStacksFunctionsAndLayers",
            [
                "lambda:AddPermission",
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:DeleteFunctionEventInvokeConfig",
                "lambda:DeleteLayerVersion",
                "lambda:GetFunction",
                "lambda:GetFunctionCodeSigningConfig",
                "lambda:GetFunctionConfiguration",
                "lambda:GetFunctionEventInvokeConfig",
                "lambda:GetLayerVersion",
                "lambda:GetPolicy",
                "lambda:GetRuntimeManagementConfig",
                "lambda:ListTags",
                "lambda:ListVersionsByFunction",
                "lambda:PublishLayerVersion",
                "lambda:PutFunctionEventInvokeConfig",
                "lambda:RemovePermission",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:UpdateFunctionEventInvokeConfig",
            ],
            [
                scope.arn("lambda", f"function:{p}-*"),
                scope.arn("lambda", f"layer:{p}-*"),
                scope.arn("lambda", f"layer:{p}-*:*"),
            ],
        ),
    ]


def identity(scope: Scope) -> list[dict]:
    """IAM roles under the boundary, the Cognito user pool, the optional DNS record."""
    p = scope.prefix
    roles = scope.arn("iam", f"role/{p}-*", region=False)
    bounded = {"StringEquals": {"iam:PermissionsBoundary": scope.boundary_arn}}
    statements = [
        _allow(
            "CreateAndChangeRolesOnlyUnderTheBoundary",
            ["iam:CreateRole", "iam:DeleteRolePolicy", "iam:PutRolePolicy"],
            roles,
            **bounded,
        ),
        _allow(
            "ManageThisStacksRoles",
            [
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:ListInstanceProfilesForRole",
                "iam:ListRolePolicies",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
            ],
            roles,
        ),
        _allow(
            "ThisStacksInstanceProfile",
            [
                "iam:AddRoleToInstanceProfile",
                "iam:CreateInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:GetInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:TagInstanceProfile",
            ],
            scope.arn("iam", f"instance-profile/{p}-*", region=False),
        ),
        _allow(
            "PassThisStacksRolesToItsServices",
            ["iam:PassRole"],
            roles,
            StringEquals={"iam:PassedToService": list(PASSED_TO)},
        ),
        _allow(
            "ServiceLinkedRolesOnFirstUse",
            ["iam:CreateServiceLinkedRole"],
            scope.arn("iam", "role/aws-service-role/*", region=False),
            StringEquals={"iam:AWSServiceName": list(SERVICE_LINKED)},
        ),
        _allow(
            "CreateTheUserPool",
            ["cognito-idp:CreateUserPool"],
            "*",
            StringEquals={"aws:RequestTag/stack": scope.stack},
        ),
        _allow(
            "ChangeOnlyThisStacksUserPool",
            [
                "cognito-idp:CreateUserPoolClient",
                "cognito-idp:CreateUserPoolDomain",
                "cognito-idp:DeleteUserPool",
                "cognito-idp:DeleteUserPoolClient",
                "cognito-idp:DeleteUserPoolDomain",
                "cognito-idp:DescribeUserPool",
                "cognito-idp:DescribeUserPoolClient",
                "cognito-idp:GetUserPoolMfaConfig",
                "cognito-idp:ListTagsForResource",
                "cognito-idp:SetUserPoolMfaConfig",
                "cognito-idp:TagResource",
                "cognito-idp:UntagResource",
                "cognito-idp:UpdateUserPool",
                "cognito-idp:UpdateUserPoolClient",
            ],
            scope.arn("cognito-idp", "userpool/*"),
            **_tagged(scope),
        ),
        # Never lift or swap a boundary, never attach a managed policy (none is attached by
        # the stack), never touch a role outside the prefix (the deploy role itself included).
        {
            "Sid": "KeepTheBoundary",
            "Effect": "Deny",
            "Action": [
                "iam:AttachRolePolicy",
                "iam:DeleteRolePermissionsBoundary",
                "iam:PutRolePermissionsBoundary",
            ],
            "Resource": "*",
        },
    ]
    if scope.hosted_zone_id:
        statements.append(
            _allow(
                "TheDnsRecord",
                [
                    "route53:ChangeResourceRecordSets",
                    "route53:GetHostedZone",
                    "route53:ListResourceRecordSets",
                ],
                f"arn:{scope.partition}:route53:::hostedzone/{scope.hosted_zone_id}",
            )
        )
        statements.append(
            _allow("DnsChanges", ["route53:GetChange"], f"arn:{scope.partition}:route53:::change/*")
        )
    return statements


def operations(scope: Scope) -> list[dict]:
    """Events, schedules, alarms, logs, the alarm topic and the dead-letter queues."""
    p = scope.prefix
    return [
        _allow(
            "ThisStacksEventRules",
            [
                "events:DeleteRule",
                "events:DescribeRule",
                "events:ListTagsForResource",
                "events:ListTargetsByRule",
                "events:PutRule",
                "events:PutTargets",
                "events:RemoveTargets",
                "events:TagResource",
                "events:UntagResource",
            ],
            scope.arn("events", f"rule/{p}-*"),
        ),
        _allow(
            "ThisStacksSchedules",
            [
                "scheduler:CreateSchedule",
                "scheduler:DeleteSchedule",
                "scheduler:GetSchedule",
                "scheduler:UpdateSchedule",
            ],
            scope.arn("scheduler", f"schedule/default/{p}-*"),
        ),
        _allow(
            "ThisStacksAlarms",
            [
                "cloudwatch:DeleteAlarms",
                "cloudwatch:ListTagsForResource",
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:TagResource",
                "cloudwatch:UntagResource",
            ],
            scope.arn("cloudwatch", f"alarm:{p}-*"),
        ),
        _allow(
            "ThisStacksLogGroups",
            [
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:DeleteRetentionPolicy",
                "logs:FilterLogEvents",
                "logs:GetLogEvents",
                "logs:ListTagsForResource",
                "logs:ListTagsLogGroup",
                "logs:PutRetentionPolicy",
                "logs:TagLogGroup",
                "logs:TagResource",
                "logs:UntagLogGroup",
                "logs:UntagResource",
            ],
            [
                scope.arn("logs", f"log-group:/ecs/{p}-*"),
                scope.arn("logs", f"log-group:/ecs/{p}-*:*"),
                scope.arn("logs", f"log-group:/aws/lambda/{p}-*"),
                scope.arn("logs", f"log-group:/aws/lambda/{p}-*:*"),
            ],
        ),
        _allow(
            "ThisStacksAlarmTopic",
            [
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetSubscriptionAttributes",
                "sns:GetTopicAttributes",
                "sns:ListSubscriptionsByTopic",
                "sns:ListTagsForResource",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:TagResource",
                "sns:Unsubscribe",
                "sns:UntagResource",
            ],
            scope.arn("sns", f"{p}-*"),
        ),
        _allow(
            "ThisStacksQueues",
            [
                "sqs:CreateQueue",
                "sqs:DeleteQueue",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ListQueueTags",
                "sqs:SetQueueAttributes",
                "sqs:TagQueue",
                "sqs:UntagQueue",
            ],
            scope.arn("sqs", f"{p}-*"),
        ),
    ]


def reads(scope: Scope) -> list[dict]:
    """The reads Pulumi refreshes with and the workflow waits with, which AWS scopes to nothing
    (Describe and List calls of EC2, ELB, ECS, RDS, Logs, CloudWatch, autoscaling, ...)."""
    return [
        _allow(
            "UnscopedReads",
            [
                "application-autoscaling:DescribeScalableTargets",
                "application-autoscaling:DescribeScalingPolicies",
                "cloudwatch:DescribeAlarms",
                "cognito-idp:DescribeUserPoolDomain",
                "ec2:DescribeAddresses",
                "ec2:DescribeAddressesAttribute",
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeImages",
                "ec2:DescribeInstanceAttribute",
                "ec2:DescribeInstanceCreditSpecifications",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeInstances",
                "ec2:DescribeInternetGateways",
                "ec2:DescribeNatGateways",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribePrefixLists",
                "ec2:DescribeRouteTables",
                "ec2:DescribeSecurityGroupRules",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeTags",
                "ec2:DescribeVolumes",
                "ec2:DescribeVpcAttribute",
                "ec2:DescribeVpcEndpoints",
                "ec2:DescribeVpcEndpointServices",
                "ec2:DescribeVpcs",
                "elasticloadbalancing:DescribeListenerAttributes",
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeLoadBalancerAttributes",
                "elasticloadbalancing:DescribeLoadBalancers",
                "elasticloadbalancing:DescribeRules",
                "elasticloadbalancing:DescribeTags",
                "elasticloadbalancing:DescribeTargetGroupAttributes",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetHealth",
                "lambda:GetAccountSettings",
                "logs:DescribeLogGroups",
                "rds:DescribeDBInstances",
                "rds:DescribeDBParameterGroups",
                "rds:DescribeDBParameters",
                "rds:DescribeDBSubnetGroups",
                "secretsmanager:ListSecrets",
                "ssm:DescribeParameters",
                "sqs:ListQueues",
                "sts:GetCallerIdentity",
            ],
            "*",
            **_in_region(scope),
        ),
        # ECS task definitions and the registry login have no resource-level permissions.
        _allow(
            "NoResourceLevelPermissions",
            [
                "ecr:GetAuthorizationToken",
                "ecs:DeregisterTaskDefinition",
                "ecs:DescribeTaskDefinition",
                "ecs:RegisterTaskDefinition",
            ],
            "*",
            **_in_region(scope),
        ),
    ]


POLICIES = {
    "network": network,
    "data": data,
    "compute": compute,
    "identity": identity,
    "operations": operations,
    "reads": reads,
}


def deploy_policies(scope: Scope) -> dict[str, str]:
    """The deploy role's managed policies, by name, as JSON documents."""
    return {
        name: json.dumps({"Version": "2012-10-17", "Statement": build(scope)})
        for name, build in POLICIES.items()
    }


def boundary_statements(scope: Scope) -> list[dict]:
    """The ceiling of every role the main stack creates: the union of what its tasks, functions,
    the MLflow instance and the scheduler call, nothing else (infra/components)."""
    p = scope.prefix
    return [
        _allow(
            "Logs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [
                scope.arn("logs", f"log-group:/ecs/{p}-*:*"),
                scope.arn("logs", f"log-group:/aws/lambda/{p}-*:*"),
            ],
        ),
        _allow(
            "PullImages",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            scope.arn("ecr", f"repository/{p}-*"),
        ),
        _allow(
            "StackSecrets",
            ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
            [
                scope.arn("secretsmanager", f"secret:{p}/*"),
                scope.arn("secretsmanager", "secret:rds!*"),
            ],
        ),
        _allow(
            "Artifacts",
            ["s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"],
            [
                f"arn:{scope.partition}:s3:::{p}-artifacts-*",
                f"arn:{scope.partition}:s3:::{p}-artifacts-*/*",
            ],
        ),
        _allow("DeadLetters", ["sqs:SendMessage"], scope.arn("sqs", f"{p}-*")),
        _allow("Events", ["events:PutEvents"], scope.arn("events", "event-bus/default")),
        _allow(
            "RunTasks",
            ["ecs:RunTask"],
            scope.arn("ecs", f"task-definition/{p}-*:*"),
        ),
        _allow(
            "PassTaskRoles",
            ["iam:PassRole"],
            scope.arn("iam", f"role/{p}-*", region=False),
            StringEquals={"iam:PassedToService": "ecs-tasks.amazonaws.com"},
        ),
        _allow(
            "Unscoped",
            [
                "cloudwatch:PutMetricData",
                "ec2:AssignPrivateIpAddresses",
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSubnets",
                "ec2:UnassignPrivateIpAddresses",
                "ec2messages:AcknowledgeMessage",
                "ec2messages:DeleteMessage",
                "ec2messages:FailMessage",
                "ec2messages:GetEndpoint",
                "ec2messages:GetMessages",
                "ec2messages:SendReply",
                "ecr:GetAuthorizationToken",
                "secretsmanager:GetRandomPassword",
                "ssm:UpdateInstanceInformation",
                "ssmmessages:CreateControlChannel",
                "ssmmessages:CreateDataChannel",
                "ssmmessages:OpenControlChannel",
                "ssmmessages:OpenDataChannel",
                "xray:PutTelemetryRecords",
                "xray:PutTraceSegments",
            ],
            "*",
        ),
    ]


def boundary_policy(scope: Scope) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": boundary_statements(scope)})


def policy_chars(document: str) -> int:
    """The size IAM checks a managed policy against (whitespace does not count)."""
    return len("".join(document.split()))
