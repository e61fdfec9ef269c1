"""The MLflow tracking server: one EC2 instance in an app subnet, reached through Session Manager.

No SSH key and no ingress but MLflow's port from the service and monitoring tasks; operators use
``aws ssm start-session`` (port forwarding for the UI). The instance role (no access keys) may
read the database secret and use the ``mlflow/`` prefix of the artifact bucket, nothing else.
At every start the service reads the password from Secrets Manager, creates the ``mlflow``
database if it is missing, and runs ``mlflow server`` with the RDS backend and proxied S3
artifacts (clients never need S3 credentials). The instance keeps no state: replacing it loses
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra import iam
from infra.components.database import MLFLOW_DATABASE_NAME
from infra.components.network import MLFLOW_PORT
from infra.components.storage import MLFLOW_PREFIX

PSYCOPG2_VERSION = "2.9.13"


@dataclass(frozen=True)
class MlflowServerArgs:
    name: str
    region: str
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    db_host: pulumi.Input[str]
    db_port: pulumi.Input[int]
    db_admin_database: str
    db_secret_arn: pulumi.Input[str]
    instance_type: str = "t3.small"
    mlflow_version: str = "3.17.2"
    ami_parameter: str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def user_data(
    *,
    region: str,
    bucket: str,
    db_host: str,
    db_port: int,
    admin_database: str,
    secret_arn: str,
    mlflow_version: str,
) -> str:
    """Cloud-init script: install MLflow, and a systemd unit that starts it with the secret."""
    return f"""#!/bin/bash
# pricebot MLflow server bootstrap (rendered by infra/components/mlflow_server.py).
set -euo pipefail
dnf install -y python3.11 python3.11-pip postgresql16 jq
python3.11 -m venv /opt/mlflow
/opt/mlflow/bin/pip install --quiet 'mlflow=={mlflow_version}' \\
    'psycopg2-binary=={PSYCOPG2_VERSION}' boto3
id mlflow >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/mlflow mlflow

cat > /usr/local/bin/mlflow-serve <<'SCRIPT'
#!/bin/bash
# Reads the RDS-managed password at each start (so a rotation needs only a restart);
# it lives in this process's environment, never on disk.
set -euo pipefail
secret=$(aws secretsmanager get-secret-value --region {region} \\
    --secret-id '{secret_arn}' --query SecretString --output text)
PGUSER=$(jq -r .username <<<"$secret")
PGPASSWORD=$(jq -r .password <<<"$secret")
export PGUSER PGPASSWORD PGSSLMODE=require PGHOST={db_host} PGPORT={db_port}
exists=$(psql -d {admin_database} -tAc \\
    "SELECT 1 FROM pg_database WHERE datname = '{MLFLOW_DATABASE_NAME}'")
[ "$exists" = 1 ] || psql -d {admin_database} -c 'CREATE DATABASE {MLFLOW_DATABASE_NAME}'
backend='postgresql+psycopg2://{db_host}:{db_port}/{MLFLOW_DATABASE_NAME}?sslmode=require'
exec /opt/mlflow/bin/mlflow server --backend-store-uri "$backend" \\
    --artifacts-destination 's3://{bucket}/{MLFLOW_PREFIX}' \\
    --host 0.0.0.0 --port {MLFLOW_PORT} --workers 2
SCRIPT
chmod 0755 /usr/local/bin/mlflow-serve

cat > /etc/systemd/system/mlflow.service <<'UNIT'
[Unit]
Description=MLflow tracking server (pricebot)
After=network-online.target
Wants=network-online.target

[Service]
User=mlflow
Environment=AWS_DEFAULT_REGION={region}
Environment=MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
ExecStart=/usr/local/bin/mlflow-serve
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now mlflow.service
"""


def instance_policy(
    *, bucket_arn: pulumi.Input[str], secret_arn: pulumi.Input[str]
) -> pulumi.Output[str]:
    """Its secret, its bucket prefix and the Session Manager agent's calls."""
    prefix_objects = pulumi.Output.concat(bucket_arn, f"/{MLFLOW_PREFIX}/*")
    return iam.document(
        iam.allow(["secretsmanager:GetSecretValue"], secret_arn),
        iam.allow(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], prefix_objects),
        iam.allow(
            ["s3:ListBucket"],
            bucket_arn,
            condition={"StringLike": {"s3:prefix": [MLFLOW_PREFIX, f"{MLFLOW_PREFIX}/*"]}},
        ),
        iam.allow(
            list(iam.SSM_AGENT_ACTIONS),
            iam.any_resource(
                "the Session Manager agent's channel and message calls have no resource-level "
                "permissions (the same statement as AmazonSSMManagedInstanceCore, minus "
                "inventory, patching and parameters)"
            ),
        ),
    )


class MlflowServer(pulumi.ComponentResource):
    """The instance; outputs its private tracking URI and instance id (for SSM sessions)."""

    tracking_uri: pulumi.Output[str]
    instance_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: MlflowServerArgs, opts: ResourceOptions | None = None
    ) -> None:
        super().__init__("pricebot:infra:MlflowServer", name, None, opts)
        child = ResourceOptions(parent=self)

        role = aws.iam.Role(
            f"{name}-instance",
            name=f"{args.name}-mlflow",
            assume_role_policy=iam.assume_role_policy("ec2.amazonaws.com"),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-instance",
            role=role.id,
            policy=instance_policy(bucket_arn=args.bucket_arn, secret_arn=args.db_secret_arn),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(
            f"{name}-instance", name=f"{args.name}-mlflow", role=role.name, opts=child
        )
        ami = aws.ssm.get_parameter_output(name=args.ami_parameter).value
        script = pulumi.Output.all(
            args.bucket_name, args.db_host, args.db_port, args.db_secret_arn
        ).apply(
            lambda v: user_data(
                region=args.region,
                bucket=v[0],
                db_host=v[1],
                db_port=int(v[2]),
                admin_database=args.db_admin_database,
                secret_arn=v[3],
                mlflow_version=args.mlflow_version,
            )
        )
        instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami,
            instance_type=args.instance_type,
            subnet_id=args.subnet_id,
            vpc_security_group_ids=[args.security_group_id],
            iam_instance_profile=profile.name,
            associate_public_ip_address=False,
            metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 1},
            root_block_device={"encrypted": True, "volume_type": "gp3", "volume_size": 20},
            user_data=script,
            user_data_replace_on_change=True,
            tags={"Name": f"{args.name}-mlflow"},
            # A newer AMI is picked up by replacing the instance on purpose, not on every `up`.
            opts=ResourceOptions(parent=self, ignore_changes=["ami"]),
        )
        self.instance_id = instance.id
        self.tracking_uri = pulumi.Output.concat("http://", instance.private_ip, f":{MLFLOW_PORT}")
        self.register_outputs({"tracking_uri": self.tracking_uri, "instance_id": self.instance_id})
