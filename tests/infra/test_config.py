"""Stack configuration: read once, typed, checked, and documented key by key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from infra.config import (
    REPO_ROOT,
    StackSettings,
    StackSettingsError,
    check_manifest,
    config_keys,
    load_settings,
)
from tests.infra.conftest import variant

ZIPS = ("layer-core.zip", "layer-data.zip", "ingest.zip", "transform.zip")


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A repository root whose layers/build holds what `make layers` writes."""
    out = tmp_path / "layers" / "build"
    out.mkdir(parents=True)
    for name in ZIPS:
        (out / name).write_bytes(b"PK\x05\x06" + bytes(18))
    (out / "manifest.json").write_text(json.dumps({"arch": "x86_64", "runtime": "python3.12"}))
    return tmp_path


def example_config() -> dict[str, object]:
    return yaml.safe_load((REPO_ROOT / "Pulumi.example.yaml").read_text())["config"]


def test_the_example_stack_documents_every_key_and_no_other() -> None:
    documented = {
        k.removeprefix("pricebot:") for k in example_config() if k.startswith("pricebot:")
    }
    assert documented == set(config_keys())


def test_the_example_stack_loads_as_strings_the_way_pulumi_passes_them(built: Path) -> None:
    # Given the example's values as Pulumi hands them to a program (strings; lists as JSON)
    raw = {
        k.removeprefix("pricebot:"): v if isinstance(v, str) else json.dumps(v)
        for k, v in example_config().items()
        if k.startswith("pricebot:")
    }
    # When loaded
    settings = load_settings(raw, region="eu-west-1", stack="dev", root=built)
    # Then the values are typed, and empty strings mean "not set"
    assert settings.symbols == ("BTCUSDT", "ETHUSDT", "ADAUSDT")
    assert settings.az_count == 2
    assert settings.interface_endpoints is True
    assert settings.db_deletion_protection is True
    assert settings.extra_tags == {"owner": "data-team", "cost-center": "research"}
    assert settings.certificate_arn is None
    assert settings.service_image_tag is None
    assert settings.name == "pricebot-dev"


def test_the_defaults_are_the_example_stack(built: Path) -> None:
    assert load_settings({}, region="eu-west-1", stack="dev", root=built) == StackSettings(
        region="eu-west-1", stack="dev"
    )


def test_a_misspelt_key_is_refused_rather_than_ignored(built: Path) -> None:
    with pytest.raises(StackSettingsError, match=r"unknown config keys \['dbDeletionProtecton'\]"):
        load_settings({"dbDeletionProtecton": "false"}, region="eu-west-1", stack="d", root=built)


def test_a_region_is_required(built: Path) -> None:
    with pytest.raises(StackSettingsError, match="pulumi config set aws:region"):
        load_settings({}, region=None, stack="dev", root=built)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dbMultiAz", "yes", "dbMultiAz must be true or false"),
        ("azCount", "two", "azCount must be a number"),
        ("natGateways", "3", "natGateways is 3; use 1"),
        ("vpcCidr", "10.40.0.0/24", "too small"),
        ("ingressCidrs", '["everyone"]', "not a CIDR block"),
        ("lambdaArchitecture", "sparc", "use x86_64 or arm64"),
        ("serviceMinTasks", "0", "need 1 <= min <= max"),
    ],
)
def test_bad_values_name_the_key(built: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(StackSettingsError, match=message):
        load_settings({key: value}, region="eu-west-1", stack="dev", root=built)


@pytest.mark.parametrize("stack", ["Dev", "my_stack", "a-very-long-production-stack"])
def test_a_name_aws_would_refuse_is_refused_up_front(built: Path, stack: str) -> None:
    with pytest.raises(StackSettingsError, match="must be lower-case letters, digits and hyphens"):
        load_settings({}, region="eu-west-1", stack=stack, root=built)


def test_missing_lambda_zips_say_to_run_make_layers(tmp_path: Path) -> None:
    with pytest.raises(StackSettingsError, match=r"Run `make layers` first") as error:
        load_settings({}, region="eu-west-1", stack="dev", root=tmp_path)
    assert "layers/build/ingest.zip" in str(error.value)


def test_zips_built_for_another_architecture_are_refused(built: Path) -> None:
    with pytest.raises(
        StackSettingsError, match="built for x86_64, but lambdaArchitecture is arm64"
    ):
        check_manifest(variant(lambda_architecture="arm64"), built)


def test_the_world_is_not_let_in_by_default(built: Path) -> None:
    settings = load_settings({}, region="eu-west-1", stack="dev", root=built)
    assert settings.ingress_cidrs == ()


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_opening_the_load_balancer_to_everyone_needs_an_explicit_opt_in(
    built: Path, cidr: str
) -> None:
    # Given ingressCidrs with the whole internet, then it is refused naming the opt-in
    with pytest.raises(StackSettingsError, match="allowPublicIngress: true"):
        load_settings({"ingressCidrs": json.dumps([cidr])}, region="eu-west-1", stack="d",
                      root=built)  # fmt: skip
    # and accepted with it
    opened = load_settings(
        {"ingressCidrs": json.dumps([cidr]), "allowPublicIngress": "true"},
        region="eu-west-1", stack="d", root=built,
    )  # fmt: skip
    assert opened.ingress_cidrs == (cidr,)


@pytest.mark.parametrize("auth", ["cognito", "oidc"])
def test_a_sign_in_without_https_is_refused_with_the_fix(built: Path, auth: str) -> None:
    with pytest.raises(
        StackSettingsError,
        match=rf"monitoringAuth is {auth}, but the load balancer's authenticate actions work "
        "only on an HTTPS listener: set certificateArn",
    ):
        load_settings({"monitoringAuth": auth}, region="eu-west-1", stack="d", root=built)


def test_a_certificate_needs_the_name_it_is_for(built: Path) -> None:
    with pytest.raises(StackSettingsError, match="domainName is not"):
        load_settings(
            {"certificateArn": "arn:aws:acm:eu-west-1:1:certificate/x"},
            region="eu-west-1", stack="d", root=built,
        )  # fmt: skip


def test_oidc_names_the_provider_settings_it_lacks(built: Path) -> None:
    values = {
        "monitoringAuth": "oidc",
        "certificateArn": "arn:aws:acm:eu-west-1:1:certificate/x",
        "domainName": "pricebot.example.com",
        "oidcIssuer": "https://login.example.com",
    }
    with pytest.raises(StackSettingsError) as error:
        load_settings(values, region="eu-west-1", stack="d", root=built)
    assert "'oidcTokenEndpoint'" in str(error.value)
    assert "'oidcIssuer'" not in str(error.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("monitoringAuth", "basic", "use none, cognito or oidc"),
        ("targets", '["ret24x"]', "targets:"),
        ("hostedZoneId", "Z1", "domainName is not"),
        ("modelHealthAlarmHours", "0", "at least 1"),
    ],
)
def test_more_bad_values_name_the_key(built: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(StackSettingsError, match=message):
        load_settings({key: value}, region="eu-west-1", stack="dev", root=built)


def test_the_oidc_client_secret_is_not_a_setting(built: Path) -> None:
    # It is read as a Pulumi secret by the program, never into the plain settings
    secret = "never-in-settings-4f9c"
    settings = load_settings(
        {"oidcClientSecret": secret}, region="eu-west-1", stack="d", root=built
    )
    assert secret not in repr(settings)
