"""Database credentials from Secrets Manager (moto): cached, re-read on demand, errors named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pricebot import cloud, db
from pricebot.errors import RoleConfigError
from pricebot.roles import LoginRole, parse_login_roles

SERVICE = "pricebot_service_group"
SECRET = json.dumps({"username": "pricebot_service_login", "password": "first"})


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    db.forget_credential_sources()
    with mock_aws():
        yield boto3.client("secretsmanager")
    db.forget_credential_sources()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_credentials_are_read_once_within_their_max_age(client: Any) -> None:
    arn = client.create_secret(Name="db/service", SecretString=SECRET)["ARN"]
    clock = Clock()
    source = cloud.SecretCredentials(arn, max_age=300, clock=clock)

    first = source.credentials()
    clock.now = 299
    second = source.credentials()

    assert first == second == db.Credentials("pricebot_service_login", "first")
    assert source.reads == 1


def test_credentials_are_read_again_once_too_old(client: Any) -> None:
    arn = client.create_secret(Name="db/service", SecretString=SECRET)["ARN"]
    clock = Clock()
    source = cloud.SecretCredentials(arn, max_age=300, clock=clock)
    source.credentials()
    client.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": "u", "password": "second"})
    )

    clock.now = 300
    assert source.credentials().password == "second"
    assert source.reads == 2


def test_refresh_reads_the_secret_whatever_the_cache_holds(client: Any) -> None:
    arn = client.create_secret(Name="db/service", SecretString=SECRET)["ARN"]
    source = cloud.SecretCredentials(arn, clock=Clock())
    source.credentials()
    client.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": "u", "password": "second"})
    )

    assert source.credentials().password == "first"  # cached
    assert source.credentials(refresh=True).password == "second"


def test_a_missing_secret_is_named(client: Any) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf"
    with pytest.raises(cloud.SecretUnavailableError, match=r"gone-AbCdEf.*GetSecretValue"):
        cloud.SecretCredentials(arn).credentials()


def test_an_empty_secret_is_refused_naming_it(client: Any) -> None:
    arn = client.create_secret(Name="db/empty")["ARN"]
    with pytest.raises(cloud.SecretUnavailableError, match="db/empty"):
        cloud.SecretCredentials(arn).credentials()


@pytest.mark.parametrize("value", ["not json", json.dumps({"username": "u"}), json.dumps([1])])
def test_a_secret_without_username_and_password_is_refused(client: Any, value: str) -> None:
    arn = client.create_secret(Name="db/odd", SecretString=value)["ARN"]
    with pytest.raises(cloud.SecretUnavailableError, match="username"):
        cloud.SecretCredentials(arn).credentials()


def test_one_source_per_secret_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    db.forget_credential_sources()
    monkeypatch.setenv(db.DATABASE_SECRET_ENV, "arn:one")
    assert db.credential_source() is db.credential_source() is db.secret_source("arn:one")
    assert db.credential_source({}) is None
    db.forget_credential_sources()


def test_credentials_never_show_the_password() -> None:
    assert "hunter2" not in repr(db.Credentials("u", "hunter2"))


def test_url_with_credentials_puts_the_secret_in_the_url_for_sqlalchemy() -> None:
    class Fixed:
        def credentials(self, *, refresh: bool = False) -> db.Credentials:
            return db.Credentials("owner", "p@ss/word")

    url = db.url_with_credentials("postgresql://db.example:5432/pricebot?sslmode=require", Fixed())

    assert url == "postgresql://owner:p%40ss%2Fword@db.example:5432/pricebot?sslmode=require"
    info = psycopg.conninfo.conninfo_to_dict(url)
    assert (info["user"], info["password"]) == ("owner", "p@ss/word")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('FATAL:  password authentication failed for user "x"', True),
        ("fe_sendauth: no password supplied", True),
        ("connection refused", False),
        ('FATAL:  database "x" does not exist', False),
    ],
)
def test_authentication_failures_are_told_from_other_connection_failures(
    message: str, expected: bool
) -> None:
    assert db.is_authentication_failure(psycopg.OperationalError(message)) is expected


def test_login_roles_parse_from_the_migration_tasks_environment() -> None:
    text = json.dumps(
        {"pricebot_jobs": {"secret_arn": "arn:s", "member_of": ["pricebot_pipeline_group",
                                                               "pricebot_training_group"]}}
    )  # fmt: skip
    assert parse_login_roles(text) == [
        LoginRole("pricebot_jobs", "arn:s", ("pricebot_pipeline_group", "pricebot_training_group"))
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({"x": {"secret_arn": "a", "member_of": ["admins"]}}), "one of"),
        (json.dumps({"Bad-Name": {"secret_arn": "a", "member_of": ["pricebot_service_group"]}}),
         "lower-case identifier"),
        (json.dumps({"x": {"secret_arn": "", "member_of": [SERVICE]}}), "no secret"),
        (json.dumps({SERVICE: {"secret_arn": "a", "member_of": [SERVICE]}}), "not a group role"),
    ],
)  # fmt: skip
def test_bad_role_descriptions_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(RoleConfigError, match=message):
        parse_login_roles(text)
