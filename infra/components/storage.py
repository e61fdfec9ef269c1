"""The artifact bucket (MLflow artifacts under mlflow/, Lambda zips under lambda/) and ECR.

The bucket is private four ways (public access block), versioned (a Lambda update is an
object version, and an overwritten model artifact can be recovered), encrypted at rest and
reachable only over TLS (a Deny on aws:SecureTransport=false). Images are scanned on push and
their tags are immutable, so a tag in the stack config always means the same image.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

MLFLOW_PREFIX = "mlflow"
LAMBDA_PREFIX = "lambda"
IMAGES = ("service", "monitoring", "training")


@dataclass(frozen=True)
class StorageArgs:
    name: str
    force_destroy: bool = False


def tls_only_policy(bucket_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Deny every request to the bucket and its objects that does not come over TLS."""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class Storage(pulumi.ComponentResource):
    """Artifact bucket and image repositories."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    repository_urls: dict[str, pulumi.Output[str]]
    repository_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: StorageArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("pricebot:infra:Storage", name, None, opts)
        child = ResourceOptions(parent=self)

        bucket = aws.s3.Bucket(
            f"{name}-artifacts",
            bucket_prefix=f"{args.name}-artifacts-",
            force_destroy=args.force_destroy,
            opts=child,
        )
        # The block comes first so no later resource can ever make the bucket public.
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-artifacts",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-artifacts",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-artifacts",
            bucket=bucket.id,
            rules=[
                {
                    # SSE-S3: no key to pay for or to grant; switch to aws:kms with a
                    # customer key if key usage must be audited separately.
                    "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-artifacts",
            bucket=bucket.id,
            policy=tls_only_policy(bucket.arn),
            opts=ResourceOptions(parent=self, depends_on=[block]),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-artifacts",
            bucket=bucket.id,
            rules=[
                {
                    # Old Lambda zips and overwritten artifacts are kept a while, not forever.
                    "id": "expire-noncurrent",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": 30},
                }
            ],
            opts=child,
        )

        repositories = {
            image: aws.ecr.Repository(
                f"{name}-{image}",
                name=f"{args.name}-{image}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "AES256"}],
                force_delete=args.force_destroy,
                opts=child,
            )
            for image in IMAGES
        }
        for image, repository in repositories.items():
            aws.ecr.LifecyclePolicy(
                f"{name}-{image}",
                repository=repository.name,
                policy=pulumi.Output.json_dumps(
                    {
                        "rules": [
                            {
                                "rulePriority": 1,
                                "description": "keep the 20 newest images",
                                "selection": {
                                    "tagStatus": "any",
                                    "countType": "imageCountMoreThan",
                                    "countNumber": 20,
                                },
                                "action": {"type": "expire"},
                            }
                        ]
                    }
                ),
                opts=child,
            )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.repository_urls = {k: r.repository_url for k, r in repositories.items()}
        self.repository_arns = {k: r.arn for k, r in repositories.items()}
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "repository_urls": self.repository_urls,
            }
        )
