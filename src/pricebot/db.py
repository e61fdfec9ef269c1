"""Database access: connections and the versioned schema.

Migrations are Alembic revisions under ``pricebot/migrations``; ``pricebot db upgrade`` applies
the missing ones and is safe to run any number of times.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import psycopg
from psycopg.rows import dict_row

from pricebot.errors import DatabaseUnavailableError


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return re.sub(r"//([^:/@]*):[^@]*@", r"//\1@", url)
    host, port, db = info.get("host", "?"), info.get("port", "5432"), info.get("dbname", "?")
    return f"postgresql://{info.get('user', '')}@{host}:{port}/{db}"


def connect(url: str, *, autocommit: bool = False, connect_timeout: int = 5) -> psycopg.Connection:
    """Open a connection, turning "cannot connect" into a message that says what to check."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"Cannot connect to {redact(url)}: {str(exc).strip()}. Is PostgreSQL running and "
            "PRICEBOT_DATABASE_URL right? (`make demo` starts a local one.)"
        ) from exc


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
    """Apply the migrations up to ``revision`` and return the revision the database is at."""
    from alembic import command

    connect(url).close()  # fail fast with our message, not SQLAlchemy's
    command.upgrade(_alembic_config(url), revision)
    return current_revision(url)


def current_revision(url: str) -> str | None:
    with connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
