"""The MLflow server: private, reached through Session Manager, bootstrapped from the secret."""

from __future__ import annotations

import base64
import pathlib
import subprocess

import pytest

from infra.components.mlflow_server import user_data
from tests.infra.conftest import Stack

INSTANCE = "aws:ec2/instance:Instance"


@pytest.fixture(scope="module")
def script() -> str:
    return user_data(
        region="eu-west-1",
        bucket="artifacts-bucket",
        db_host="db.example.internal",
        db_port=5432,
        admin_database="pricebot",
        secret_arn="arn:aws:secretsmanager:eu-west-1:1:secret:rds!db-1",
        mlflow_version="3.17.2",
    )


def test_the_instance_is_private_with_no_key_and_imdsv2_only(stack: Stack) -> None:
    [instance] = stack.of_type(INSTANCE)
    assert instance.inputs["associatePublicIpAddress"] is False
    assert "keyName" not in instance.inputs
    assert instance.inputs["metadataOptions"]["httpTokens"] == "required"
    assert instance.inputs["rootBlockDevice"]["encrypted"] is True
    assert instance.inputs["iamInstanceProfile"] == "pricebot-test-mlflow"
    assert instance.inputs["ami"] == "ami-0123456789abcdef0"  # the SSM public parameter


def test_the_rendered_user_data_is_what_the_instance_boots(stack: Stack, script: str) -> None:
    [instance] = stack.of_type(INSTANCE)
    declared = instance.inputs["userData"]
    assert "s3://pricebot-test-artifacts-0001/mlflow" in declared
    assert "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1" in declared
    assert instance.inputs["userDataReplaceOnChange"] is True


def test_mlflow_runs_under_systemd_with_rds_and_proxied_s3_artifacts(script: str) -> None:
    assert "pip install --quiet 'mlflow==3.17.2'" in script
    assert "systemctl enable --now mlflow.service" in script
    assert "ExecStart=/usr/local/bin/mlflow-serve" in script
    assert "postgresql+psycopg2://db.example.internal:5432/mlflow?sslmode=require" in script
    assert "--artifacts-destination 's3://artifacts-bucket/mlflow'" in script
    assert "--port 5000" in script


def test_the_password_is_read_at_start_and_never_written_to_disk(script: str) -> None:
    assert "aws secretsmanager get-secret-value --region eu-west-1" in script
    assert "PGPASSWORD=$(jq -r .password" in script
    # no file under /etc or elsewhere receives it
    assert "EnvironmentFile" not in script
    assert "> /etc" not in script.replace("> /etc/systemd/system/mlflow.service", "")


def test_the_mlflow_database_is_created_once_on_the_same_instance(script: str) -> None:
    assert "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" in script
    assert "CREATE DATABASE mlflow" in script


def test_user_data_fits_ec2s_limit(script: str) -> None:
    assert len(base64.b64encode(script.encode())) < 16 * 1024


def test_tracking_uri_is_private(stack: Stack) -> None:
    assert stack.outputs["mlflow_url"] == "http://10.40.16.10:5000"


def test_the_boot_script_and_the_service_script_are_valid_bash(
    script: str, tmp_path: pathlib.Path
) -> None:
    serve = script.split("<<'SCRIPT'\n", 1)[1].split("\nSCRIPT\n", 1)[0]
    for name, text in (("user-data.sh", script), ("mlflow-serve", serve)):
        path = tmp_path / name
        path.write_text(text)
        checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
    assert serve.startswith("#!/bin/bash")
