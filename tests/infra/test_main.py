"""The program Pulumi runs: config in, the whole stack declared, the five outputs exported."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.config import REPO_ROOT, StackSettingsError
from infra.policy.rules import violations
from tests.infra.conftest import run_program

ZIPS = {
    "coreLayerZip": "layer-core.zip",
    "dataLayerZip": "layer-data.zip",
    "ingestZip": "ingest.zip",
    "transformZip": "transform.zip",
}


def test_the_program_declares_a_clean_stack_and_exports_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given stack config as Pulumi passes it (PULUMI_CONFIG), pointing at built zips
    config = {"aws:region": "eu-west-1", "pricebot:serviceImageTag": "v1"}
    for key, name in ZIPS.items():
        (tmp_path / name).write_bytes(b"zip")
        config[f"pricebot:{key}"] = str(tmp_path / name)
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", exported.__setitem__)

    # When the program runs under the mocks
    stack = run_program(lambda: runpy.run_path(str(REPO_ROOT / "infra" / "__main__.py")))

    # Then it declared the stack, passing every rule, and exported what the README promises
    assert len(stack.resources) > 100
    assert violations(stack.resources) == []
    assert {
        "api_url",
        "monitoring_url",
        "mlflow_url",
        "database_endpoint",
        "database_secret_arn",
        # what the deploy workflow reads (docs/ci.md)
        "repository_urls",
        "api_keys_secret_arn",
        "alb_security_group_id",
        "cluster_name",
        "service_names",
        "target_group_arns",
        "jobs",
        "migrate_targets",
        "monitoring_routed",
    } <= set(exported)
    [ingest] = [r for r in stack.resources if r.name == "pipeline-ingest-zip"]
    assert ingest.inputs["source"].path == str(tmp_path / "ingest.zip")


def test_the_program_refuses_unknown_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"aws:region": "eu-west-1", "pricebot:natGateway": "2"}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    with pytest.raises(StackSettingsError, match=r"unknown config keys \['natGateway'\]"):
        run_program(lambda: runpy.run_path(str(REPO_ROOT / "infra" / "__main__.py")))


def test_the_program_reads_the_oidc_client_secret_as_a_pulumi_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an OIDC sign-in whose client secret is stack config (Pulumi passes secrets decrypted)
    config = {
        "aws:region": "eu-west-1",
        "pricebot:certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x",
        "pricebot:domainName": "pricebot.example.com",
        "pricebot:monitoringAuth": "oidc",
        "pricebot:oidcIssuer": "https://login.example.com",
        "pricebot:oidcAuthorizationEndpoint": "https://login.example.com/authorize",
        "pricebot:oidcTokenEndpoint": "https://login.example.com/token",
        "pricebot:oidcUserInfoEndpoint": "https://login.example.com/userinfo",
        "pricebot:oidcClientId": "pricebot",
        "pricebot:oidcClientSecret": "from-the-stack-file",
    }
    for key, name in ZIPS.items():
        (tmp_path / name).write_bytes(b"zip")
        config[f"pricebot:{key}"] = str(tmp_path / name)
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["pricebot:oidcClientSecret"]))
    monkeypatch.setattr(pulumi, "export", lambda *_: None)

    # When the program runs, then the listener rule got it (and nothing refused it as unknown)
    stack = run_program(lambda: runpy.run_path(str(REPO_ROOT / "infra" / "__main__.py")))
    [rule] = [r for r in stack.resources if r.type == "aws:lb/listenerRule:ListenerRule"]
    [sign_in] = [a for a in rule.inputs["actions"] if a["type"] == "authenticate-oidc"]
    assert sign_in["authenticateOidc"]["clientSecret"] == "from-the-stack-file"
