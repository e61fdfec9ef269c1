"""Component roles against the real PostgreSQL, secrets in moto: who may do what, and a rotated
password picked up at the next connection without a restart.

The session's server trusts every local login (it is throw-away); for these tests the members
of the component group roles must log in with their password (``scram-sha-256``), so a wrong
password is really refused. The rule is prepended to pg_hba.conf for this module only and
matches nobody else: the tests' own user is not a member of those groups.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pricebot import db
from pricebot.errors import RoleConfigError, SecretUnavailableError
from pricebot.roles import (
    API_KEYS_SECRET_ENV,
    ROLE_SECRETS_ENV,
    LoginRole,
    memberships,
    provision_from_env,
    rotate_password,
    sync_role_passwords,
)
from pricebot_local.localdb import LocalPostgres

HBA_RULE = (
    "host all +pricebot_service_group,+pricebot_monitoring_group,+pricebot_pipeline_group,"
    "+pricebot_training_group 127.0.0.1/32 scram-sha-256  # test_roles.py\n"
)
LOGINS = {
    "t_service": ("pricebot_service_group",),
    "t_monitoring": ("pricebot_monitoring_group",),
    "t_pipeline": ("pricebot_pipeline_group",),
    "t_training": ("pricebot_training_group",),
}


@pytest.fixture(scope="module")
def password_auth(postgres: LocalPostgres) -> Iterator[None]:
    """Members of the component groups log in with a password for this module's tests."""
    hba = postgres.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(HBA_RULE + original)
    _reload(postgres)
    try:
        yield
    finally:
        hba.write_text(original)
        _reload(postgres)
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            for name in LOGINS:
                conn.execute(f"DROP ROLE IF EXISTS {name}")


def _reload(postgres: LocalPostgres) -> None:
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        [(errors,)] = conn.execute(
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
        ).fetchall()
    assert errors == 0


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto Secrets Manager with the fake credentials boto3 needs; no cached sources leak."""
    import boto3
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(db.DATABASE_SECRET_ENV, raising=False)
    db.forget_credential_sources()
    with mock_aws():
        yield boto3.client("secretsmanager")
    db.forget_credential_sources()


@pytest.fixture
def logins(password_auth: None, secrets: Any, database_url: str) -> dict[str, LoginRole]:
    """The four login roles, provisioned from empty secrets as the migration task does."""
    roles = {
        name: LoginRole(name, secrets.create_secret(Name=f"db/{name}")["ARN"], groups)
        for name, groups in LOGINS.items()
    }
    sync_role_passwords(database_url, list(roles.values()), client=secrets)
    return roles


def url_without_user(database_url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    return f"postgresql://{info['host']}:{info['port']}/{info['dbname']}"


def connect_as(role: LoginRole, database_url: str) -> psycopg.Connection:
    """As a deployed component does: a URL without credentials and its secret's ARN."""
    return db.connect(url_without_user(database_url), source=db.secret_source(role.secret_arn))


def secret(client: Any, role: LoginRole) -> dict:
    answer = client.get_secret_value(SecretId=role.secret_arn, VersionStage="AWSCURRENT")
    return json.loads(answer["SecretString"])


# --- provisioning -------------------------------------------------------------------------------
def test_empty_secrets_get_generated_passwords_the_roles_log_in_with(
    logins: dict[str, LoginRole], secrets: Any, database_url: str
) -> None:
    # Given the login roles provisioned from secrets the stack created empty
    role = logins["t_service"]

    # Then the secret holds the role's name and a generated password, and it logs in
    value = secret(secrets, role)
    assert value["username"] == "t_service"
    assert len(value["password"]) == 40
    assert value["password"].isalnum()
    with connect_as(role, database_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("t_service",)


def test_a_wrong_password_is_refused(logins: dict[str, LoginRole], database_url: str) -> None:
    # Guards the other tests: the server really checks these roles' passwords
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=info["host"], port=info["port"], dbname=info["dbname"], user="t_service",
            password="not-the-password",
        )  # fmt: skip


def test_provisioning_twice_keeps_the_passwords(
    logins: dict[str, LoginRole], secrets: Any, database_url: str
) -> None:
    before = {name: secret(secrets, role) for name, role in logins.items()}

    report = sync_role_passwords(database_url, list(logins.values()), client=secrets)

    assert report.generated_secrets == []
    assert sorted(report.updated_roles) == sorted(LOGINS)
    assert {name: secret(secrets, role) for name, role in logins.items()} == before
    with connect_as(logins["t_pipeline"], database_url):
        pass


def test_a_login_role_ends_up_in_exactly_its_groups(
    logins: dict[str, LoginRole], secrets: Any, database_url: str
) -> None:
    # Given the training login moved from the training group to the pipeline group
    moved = LoginRole("t_training", logins["t_training"].secret_arn, ("pricebot_pipeline_group",))

    # When provisioned again
    sync_role_passwords(database_url, [moved], client=secrets)

    # Then it left the old group
    with db.connect(database_url) as conn:
        assert memberships(conn, "t_training") == {"pricebot_pipeline_group"}


def test_a_secret_holding_another_roles_credentials_is_refused(
    password_auth: None, secrets: Any, database_url: str
) -> None:
    arn = secrets.create_secret(
        Name="db/mixed", SecretString=json.dumps({"username": "someone", "password": "pw"})
    )["ARN"]
    with pytest.raises(RoleConfigError, match="belongs to 'someone'"):
        sync_role_passwords(
            database_url, [LoginRole("t_service", arn, ("pricebot_service_group",))], client=secrets
        )


def test_a_secret_the_stack_never_created_is_named_and_no_role_is_made(
    password_auth: None, secrets: Any, database_url: str
) -> None:
    # Given a login role whose secret does not exist (a stack that does not declare it)
    gone = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db/t_orphan-AbCdEf"

    # When the roles are provisioned, Then the secret is named, and the role was not created
    with pytest.raises(SecretUnavailableError, match=r"Cannot store .* secret arn:.*t_orphan"):
        sync_role_passwords(
            database_url, [LoginRole("t_orphan", gone, ("pricebot_service_group",))],
            client=secrets,
        )  # fmt: skip
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 't_orphan'").fetchone() is None


def test_db_upgrade_provisions_roles_and_the_api_key_named_in_the_environment(
    password_auth: None, secrets: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the migration task's environment
    arn = secrets.create_secret(Name="db/t_monitoring")["ARN"]
    keys = secrets.create_secret(Name="api-keys")["ARN"]
    monkeypatch.setenv(
        ROLE_SECRETS_ENV,
        json.dumps(
            {"t_monitoring": {"secret_arn": arn, "member_of": ["pricebot_monitoring_group"]}}
        ),
    )
    monkeypatch.setenv(API_KEYS_SECRET_ENV, keys)

    # When `pricebot db upgrade` runs
    db.upgrade(database_url)

    # Then the monitoring login works and the service has an API key
    with connect_as(LoginRole("t_monitoring", arn, ("pricebot_monitoring_group",)), database_url):
        pass
    assert len(secrets.get_secret_value(SecretId=keys)["SecretString"]) == 40


def test_an_existing_api_key_is_kept(secrets: Any) -> None:
    keys = secrets.create_secret(Name="api-keys", SecretString="old-key,new-key")["ARN"]
    report = provision_from_env("postgresql://unused", {API_KEYS_SECRET_ENV: keys}, client=secrets)
    assert report.api_key_generated is False
    assert secrets.get_secret_value(SecretId=keys)["SecretString"] == "old-key,new-key"


def test_without_the_environment_nothing_is_provisioned(database_url: str) -> None:
    assert provision_from_env(database_url, {}) == provision_from_env(database_url, {})
    assert provision_from_env(database_url, {}).created_roles == []


# --- privileges ---------------------------------------------------------------------------------
# A closed candle on a minute: the candle rules' CHECK constraints (migration 0003) hold for all.
A_CANDLE = (
    "INSERT INTO klines VALUES ('X', date_trunc('minute', now()) - interval '1 minute', 1, 1, 1,"
    " 1, 1, date_trunc('minute', now()) - interval '1 millisecond', 1, 1, 1, 1, '0', 't')"
)
ALLOWED = {
    "t_service": [
        "SELECT count(*) FROM candle_markets",
        "SELECT count(*) FROM features",
        "SELECT count(*) FROM klines",
        "INSERT INTO predictions (made_at, symbol, target, model_name, model_version,"
        " feature_time, horizon_minutes, prediction) VALUES (now(), 'X', 'ret1h', 'm', '1',"
        " now(), 60, 0.1)",
        # the prediction log's own write: idempotent on request_id (migrations 0006, 0007)
        "INSERT INTO predictions (made_at, symbol, target, model_name, model_version,"
        " feature_time, horizon_minutes, prediction, request_id) VALUES (now(), 'X', 'ret1h',"
        " 'm', '1', now(), 60, 0.1, 'r-1') ON CONFLICT (request_id) DO NOTHING",
    ],
    "t_monitoring": [
        f"SELECT count(*) FROM {table}"
        for table in (
            "klines",
            "ingestion_runs",
            "gaps",
            "features",
            "predictions",
            "model_alias_events",
            "candle_markets",
            "exchange_bans",
            "feature_digests",
        )
    ],
    "t_pipeline": [
        A_CANDLE,
        "INSERT INTO ingestion_runs (symbol, source) VALUES ('X', 'rest')",
        "UPDATE ingestion_runs SET outcome = 'success'",
        "DELETE FROM gaps",
        "DELETE FROM features",
        # a full recompute's digests (migration 0008): read, deleted and added, never updated
        "SELECT count(*) FROM feature_digests",
        "DELETE FROM feature_digests",
        "INSERT INTO feature_digests VALUES ('X', 'v1', '2026-01-01', 1, sha256(''),"
        " decode(md5(''), 'hex'))",
        "UPDATE predictions SET actual = 0.1, scored_at = now() WHERE actual IS NULL",
        "SELECT id FROM predictions WHERE actual IS NULL FOR UPDATE SKIP LOCKED",
        "CREATE TEMP TABLE staging (LIKE klines INCLUDING DEFAULTS)",
        "INSERT INTO candle_markets (symbol, class, markets) VALUES ('X', 'real', '{binance}')"
        " ON CONFLICT (symbol) DO UPDATE SET markets = excluded.markets",
        "DELETE FROM candle_markets WHERE symbol = 'X'",
        "INSERT INTO exchange_bans (exchange, banned_until, status, message)"
        " VALUES ('https://x', now(), 418, 'm') ON CONFLICT (exchange) DO UPDATE"
        " SET banned_until = excluded.banned_until",
        "SELECT count(*) FROM exchange_bans WHERE banned_until > now()",
    ],
    "t_training": [
        "SELECT count(*) FROM candle_markets",
        "SELECT count(*) FROM klines",
        "SELECT count(*) FROM features",
        "INSERT INTO model_alias_events (model_name, alias, moved_by, reason)"
        " VALUES ('m', 'champion', 'test', 'test')",
    ],
}
DENIED = {
    "t_service": [
        "INSERT INTO candle_markets (symbol, class, markets) VALUES ('X', 'real', '{binance}')",
        A_CANDLE,
        "UPDATE predictions SET actual = 1",
        "SELECT count(*) FROM ingestion_runs",
        "DELETE FROM predictions",
        "SELECT prediction FROM predictions",
        "SELECT count(*) FROM feature_digests",
    ],
    "t_monitoring": [
        "DELETE FROM candle_markets",
        "INSERT INTO model_alias_events (model_name, alias, moved_by, reason)"
        " VALUES ('m', 'champion', 'test', 'test')",
        "DELETE FROM klines",
        "DELETE FROM feature_digests",
    ],
    "t_pipeline": [
        "UPDATE predictions SET prediction = 1",
        "UPDATE feature_digests SET rows = 2",
        "INSERT INTO model_alias_events (model_name, alias, moved_by, reason)"
        " VALUES ('m', 'champion', 'test', 'test')",
        "DELETE FROM klines",
    ],
    "t_training": [
        "INSERT INTO features (symbol, feature_set, open_time, close, values)"
        " VALUES ('X', 'v1', now(), 1, '{1}')",
        "UPDATE predictions SET actual = 1",
        "SELECT count(*) FROM predictions",
        "SELECT count(*) FROM feature_digests",
    ],
}
EVERYONE_DENIED = [
    "CREATE TABLE mine (x int)",
    "DROP TABLE klines",
    "SELECT count(*) FROM alembic_version",
]


@pytest.mark.parametrize(
    ("login", "statement"), [(login, s) for login, ss in ALLOWED.items() for s in ss]
)
def test_each_component_may_do_what_it_needs(
    logins: dict[str, LoginRole], database_url: str, login: str, statement: str
) -> None:
    with connect_as(logins[login], database_url) as conn:
        conn.execute(statement)


@pytest.mark.parametrize(
    ("login", "statement"),
    [(login, s) for login, ss in DENIED.items() for s in ss]
    + [(login, s) for login in LOGINS for s in EVERYONE_DENIED],
)
def test_each_component_is_refused_the_rest(
    logins: dict[str, LoginRole], database_url: str, login: str, statement: str
) -> None:
    with (
        connect_as(logins[login], database_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_the_pipeline_role_runs_transforms_that_keep_and_use_the_digests(
    logins: dict[str, LoginRole], database_url: str
) -> None:
    from pricebot.features import DAY, WARMUP_MINUTES
    from pricebot.transform import update_symbol
    from tests.component.test_transform import kline_rows, store

    # Given the candles of a day of rows but its last half hour, and the pipeline's login
    candles = kline_rows("BTCUSDT", WARMUP_MINUTES + DAY)
    store(database_url, candles[:-30])
    with connect_as(logins["t_pipeline"], database_url) as conn:
        conn.autocommit = True
        # When it computes the rows (writing their digest), appends the last half hour
        # (dropping the day's digest), then recomputes in full twice
        first = update_symbol(conn, "BTCUSDT")
        store(database_url, candles[-30:])
        appended = update_symbol(conn, "BTCUSDT")
        compared = update_symbol(conn, "BTCUSDT", full=True)
        trusted = update_symbol(conn, "BTCUSDT", full=True)

    # Then each step was allowed, and the digests did their work
    assert (first.rows_written, appended.rows_written) == (DAY - 30, 30)
    assert compared.rows_compared == DAY
    assert (trusted.rows_written, trusted.rows_kept, trusted.rows_compared) == (0, DAY, 0)


def test_monitoring_may_read_a_table_a_later_migration_creates(
    logins: dict[str, LoginRole], database_url: str
) -> None:
    # Given a table created after 0004 by the migrating role (the owner)
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE later_table (x int)")

    # Then the default privileges let monitoring read it, and nobody else
    with connect_as(logins["t_monitoring"], database_url) as conn:
        conn.execute("SELECT count(*) FROM later_table")
    with (
        connect_as(logins["t_service"], database_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT count(*) FROM later_table")


# --- rotation -----------------------------------------------------------------------------------
def test_a_rotated_password_is_picked_up_at_the_next_connection(
    logins: dict[str, LoginRole], secrets: Any, database_url: str
) -> None:
    # Given a component that connected once (its credentials are now cached)
    role = logins["t_service"]
    source = db.secret_source(role.secret_arn)
    with connect_as(role, database_url):
        pass
    reads = source.reads

    # When an operator changes the role's password and the secret, outside the component
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER ROLE t_service PASSWORD 'rotated-by-hand-42'")
    secrets.put_secret_value(
        SecretId=role.secret_arn,
        SecretString=json.dumps({"username": "t_service", "password": "rotated-by-hand-42"}),
    )

    # Then the next connection of the same process works: the cached password was refused,
    # the secret was read again, once
    with connect_as(role, database_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("t_service",)
    assert source.reads == reads + 1


def test_rotate_password_keeps_the_secret_and_the_role_in_step(
    logins: dict[str, LoginRole], secrets: Any, database_url: str
) -> None:
    role = logins["t_pipeline"]
    before = secret(secrets, role)["password"]
    with connect_as(role, database_url):
        pass

    rotate_password(database_url, role, client=secrets)

    assert secret(secrets, role)["password"] != before
    with connect_as(role, database_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("t_pipeline",)
    stages = secrets.describe_secret(SecretId=role.secret_arn)["VersionIdsToStages"]
    assert sorted(s for v in stages.values() for s in v if s.startswith("AWS")) == [
        "AWSCURRENT",
        "AWSPREVIOUS",
    ]


def test_a_connection_pool_survives_a_rotation_without_a_restart(
    logins: dict[str, LoginRole], secrets: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psycopg_pool import ConnectionPool

    # Given a service-style pool whose credentials come from its environment's secret
    role = logins["t_service"]
    monkeypatch.setenv(db.DATABASE_SECRET_ENV, role.secret_arn)
    pool = ConnectionPool(
        url_without_user(database_url),
        min_size=1,
        max_size=1,
        open=True,
        check=ConnectionPool.check_connection,
        connection_class=db.CredentialedConnection,
        kwargs={"autocommit": True},
    )
    try:
        with pool.connection() as conn:
            [(pid,)] = conn.execute("SELECT pg_backend_pid()").fetchall()

        # When an operator (the owner, not this environment's role) rotates the password and
        # the server drops the pooled connection
        with monkeypatch.context() as operator:
            operator.delenv(db.DATABASE_SECRET_ENV)
            rotate_password(database_url, role, client=secrets)
            with db.connect(database_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        # Then the pool reconnects with the new password, in the same process
        with pool.connection(timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("t_service",)
    finally:
        pool.close()
