"""The artifact bucket (private, versioned, encrypted, TLS only) and the image repositories."""

from __future__ import annotations

import json

import pytest

from infra.policy.rules import (
    BUCKET_POLICY,
    PUBLIC_ACCESS_BLOCK,
    Declared,
    bucket_violations,
)
from tests.infra.conftest import Stack


def test_the_bucket_passes_every_rule(stack: Stack) -> None:
    assert bucket_violations(stack.resources) == []


def test_public_access_is_blocked_four_ways(stack: Stack) -> None:
    [block] = stack.of_type(PUBLIC_ACCESS_BLOCK)
    assert block.inputs["bucket"] == "storage-artifacts-id"
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert [block.inputs[f] for f in flags] == [True] * 4


def test_the_bucket_policy_denies_plain_http_on_bucket_and_objects(stack: Stack) -> None:
    [policy] = stack.of_type(BUCKET_POLICY)
    [statement] = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket_arn = "arn:aws:s3:eu-west-1:123456789012:storage-artifacts"
    assert statement["Resource"] == [bucket_arn, f"{bucket_arn}/*"]


def test_the_bucket_is_versioned_and_encrypted(stack: Stack) -> None:
    [versioning] = stack.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
    [encryption] = stack.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    [rule] = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")


@pytest.mark.parametrize(
    ("weaken", "expected"),
    [
        (PUBLIC_ACCESS_BLOCK, "public access block"),
        (BUCKET_POLICY, "aws:SecureTransport=false"),
    ],
)
def test_the_bucket_rule_catches_a_weakened_guard(stack: Stack, weaken: str, expected: str) -> None:
    # Given the stack with the public access block (or the TLS policy) weakened
    def weakened(r: Declared) -> Declared:
        if r.type == PUBLIC_ACCESS_BLOCK:
            return Declared(r.type, r.name, {**r.inputs, "restrictPublicBuckets": False}, r.id)
        policy = json.loads(r.inputs["policy"])
        policy["Statement"][0]["Effect"] = "Allow"
        return Declared(r.type, r.name, {**r.inputs, "policy": json.dumps(policy)}, r.id)

    resources = [weakened(r) if r.type == weaken else r for r in stack.resources]
    # Then the rule says which guard is missing
    [problem] = bucket_violations(resources)
    assert expected in problem


def test_images_are_scanned_on_push_with_immutable_tags(stack: Stack) -> None:
    repositories = stack.of_type("aws:ecr/repository:Repository")
    assert sorted(r.inputs["name"] for r in repositories) == [
        "pricebot-test-monitoring",
        "pricebot-test-service",
        "pricebot-test-training",
    ]
    for repository in repositories:
        assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repository.inputs["imageTagMutability"] == "IMMUTABLE"


def test_destroy_keeps_data_unless_force_destroy_is_configured(stack: Stack) -> None:
    [bucket] = stack.of_type("aws:s3/bucket:Bucket")
    assert bucket.inputs["forceDestroy"] is False
    for repository in stack.of_type("aws:ecr/repository:Repository"):
        assert repository.inputs["forceDelete"] is False
