"""Database access: connections, the credentials they log in with, and the versioned schema.

Migrations are Alembic revisions under ``pricebot/migrations``; ``pricebot db upgrade`` applies
the missing ones and is safe to run any number of times.

Credentials. Locally the URL says who connects (``postgresql://pricebot@127.0.0.1/pricebot``).
Deployed, each component logs in as its own PostgreSQL role whose password lives in a Secrets
Manager secret (``{"username": ..., "password": ...}``): the task gets the secret's ARN in
``PRICEBOT_DATABASE_SECRET_ARN`` and a URL without user or password. Every connection made here
takes its user and password from that secret, read through a cache (:mod:`pricebot.cloud`), and
when the server refuses the password (it was rotated since the cache filled) the secret is
read again and the connection retried once. So a rotated password is picked up at the next
connection, without a restart. Connection pools get the same behaviour by opening their
connections with :class:`CredentialedConnection` (``ConnectionPool(...,
connection_class=CredentialedConnection)``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from pricebot.errors import DatabaseUnavailableError

DATABASE_SECRET_ENV = "PRICEBOT_DATABASE_SECRET_ARN"  # noqa: S105 - a variable name
# What libpq says when the server refused the password or none was given; psycopg reports
# connection-time failures without an SQLSTATE, so the message is all there is to go by.
_AUTHENTICATION_FAILED = (
    "password authentication failed",
    "authentication failed for user",
    "no password supplied",
    "pam authentication failed",
)


@dataclass(frozen=True)
class Credentials:
    """Who logs in, and with what password."""

    user: str
    password: str

    def __repr__(self) -> str:  # never print a password, not even in a traceback
        return f"Credentials(user={self.user!r}, password='***')"


class CredentialSource(Protocol):
    """Where a connection's credentials come from; ``refresh`` bypasses any cache."""

    def credentials(self, *, refresh: bool = False) -> Credentials: ...


_sources: dict[str, CredentialSource] = {}
_sources_lock = threading.Lock()


def credential_source(environ: Mapping[str, str] | None = None) -> CredentialSource | None:
    """The source ``PRICEBOT_DATABASE_SECRET_ARN`` names, or None when it is unset (local runs).

    One source per secret per process, so its cache is shared by every connection and pool.
    """
    arn = (environ if environ is not None else os.environ).get(DATABASE_SECRET_ENV, "").strip()
    if not arn:
        return None
    return secret_source(arn)


def secret_source(secret_arn: str) -> CredentialSource:
    """The process-wide cached reader of one Secrets Manager secret."""
    with _sources_lock:
        source = _sources.get(secret_arn)
        if source is None:
            from pricebot.cloud import SecretCredentials

            source = _sources[secret_arn] = SecretCredentials(secret_arn)
        return source


def forget_credential_sources() -> None:
    """Drop every cached source (tests, or a process that switches accounts)."""
    with _sources_lock:
        _sources.clear()


def is_authentication_failure(exc: BaseException) -> bool:
    """Whether a connection failed because the server refused the credentials."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in ("28P01", "28000"):  # invalid_password, invalid_authorization_specification
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _AUTHENTICATION_FAILED)


class CredentialedConnection(psycopg.Connection):
    """A psycopg connection that logs in with the credentials of the configured source.

    With no source configured it is a plain ``psycopg.Connection``. With one, the source's
    cached credentials override any user/password in the conninfo; if the server refuses them,
    the source is read again (bypassing its cache) and the connection is retried once.
    ``psycopg_pool.ConnectionPool(connection_class=CredentialedConnection)`` gives a pool the
    same rotation behaviour.
    """

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> CredentialedConnection:  # type: ignore[override]
        source = kwargs.pop("credential_source", None) or credential_source()
        if source is None:
            return super().connect(conninfo, **kwargs)
        try:
            return super().connect(conninfo, **_login(kwargs, source.credentials()))
        except psycopg.OperationalError as exc:
            if not is_authentication_failure(exc):
                raise
        return super().connect(conninfo, **_login(kwargs, source.credentials(refresh=True)))


def _login(kwargs: dict[str, Any], credentials: Credentials) -> dict[str, Any]:
    return {**kwargs, "user": credentials.user, "password": credentials.password}


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return re.sub(r"//([^:/@]*):[^@]*@", r"//\1@", url)
    host, port, db = info.get("host", "?"), info.get("port", "5432"), info.get("dbname", "?")
    return f"postgresql://{info.get('user', '')}@{host}:{port}/{db}"


def connect(
    url: str,
    *,
    autocommit: bool = False,
    connect_timeout: int = 5,
    source: CredentialSource | None = None,
) -> psycopg.Connection:
    """Open a connection, turning "cannot connect" into a message that says what to check.

    Credentials come from ``source``, else from the secret ``PRICEBOT_DATABASE_SECRET_ARN``
    names, else from the URL itself (see the module docstring for the rotation behaviour).
    """
    try:
        return CredentialedConnection.connect(
            url, autocommit=autocommit, connect_timeout=connect_timeout, credential_source=source
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"Cannot connect to {redact(url)}: {str(exc).strip()}. Is PostgreSQL running and "
            "PRICEBOT_DATABASE_URL right? (`make demo` starts a local one.)"
        ) from exc


def url_with_credentials(url: str, source: CredentialSource | None = None) -> str:
    """``url`` with the source's user and password in it, for libraries that take only a URL
    (SQLAlchemy under Alembic). Without a source, ``url`` unchanged."""
    source = source or credential_source()
    if source is None:
        return url
    from urllib.parse import quote

    info = psycopg.conninfo.conninfo_to_dict(url)
    credentials = source.credentials()
    user, password = quote(credentials.user, safe=""), quote(credentials.password, safe="")
    host, port, dbname = (
        info.get("host", "localhost"),
        info.get("port", "5432"),
        info.get("dbname", ""),
    )
    query = "&".join(
        f"{key}={quote(str(value), safe='')}"
        for key, value in info.items()
        if key not in ("user", "password", "host", "port", "dbname")
    )
    return f"postgresql://{user}:{password}@{host}:{port}/{dbname}" + (f"?{query}" if query else "")


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """One connection, one transaction: committed if the block ends, rolled back if it raises."""
    with connect(url) as conn, conn.transaction():
        yield conn


def fetch_dicts(conn: psycopg.Connection, sql: str, params: object = None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def sqlalchemy_url(url: str) -> str:
    """The same database as a SQLAlchemy URL for the psycopg 3 driver (Alembic, MLflow)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"Not a PostgreSQL URL: {redact(url)}; expected postgresql://user@host/db")


def _alembic_config(url: str):  # -> alembic.config.Config, imported lazily (slow import)
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("pricebot") / "migrations"))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> str:
    """Apply the migrations up to ``revision`` and return the revision the database is at.

    Deployed, the migration task also hands the component roles their passwords: when
    ``PRICEBOT_DB_ROLE_SECRETS`` (or ``PRICEBOT_API_KEYS_SECRET_ARN``) is set, the secrets it
    names are filled in where empty and each login role is made to match its secret
    (:func:`pricebot.roles.provision_from_env`). Without them (locally) nothing more happens.
    """
    from alembic import command

    from pricebot.roles import provision_from_env

    connect(url).close()  # fail fast with our message, not SQLAlchemy's
    command.upgrade(_alembic_config(url_with_credentials(url)), revision)
    provision_from_env(url)
    return current_revision(url)


def head_revision() -> str:
    """The newest revision the migrations define (what ``upgrade`` brings a database to)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(
        _alembic_config("postgresql://localhost/x")
    ).get_current_head()
    if head is None:
        raise RuntimeError("the migrations define no revision")
    return head


def current_revision(url: str) -> str | None:
    with connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
