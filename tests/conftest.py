"""Shared fixtures: a real PostgreSQL server for the whole session, a fresh database per test.

The server is started once (fsync off, it is throw-away) in a temporary directory; a template
database carries the migrated schema, and each test that asks for ``database_url`` gets its own
copy of it (CREATE DATABASE ... TEMPLATE takes a few tens of milliseconds).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pricebot import db
from pricebot_local.localdb import LocalPostgres
from pricebot_local.stack import free_port  # re-exported: tests import it from here

# Fixture modules, each owned by the area it serves.
pytest_plugins = [
    "tests.fixtures.mlflow",
    "tests.fixtures.exchange",
    "tests.fixtures.models",
    "tests.fixtures.vision",
]

TEMPLATE_DB = "pricebot_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """The session's PostgreSQL server, with the migrated template database."""
    root = Path(tempfile.mkdtemp(prefix="pricebot-pg-"))
    server = LocalPostgres(root / "data", port=free_port(), durable=False)
    server.start()
    try:
        db.upgrade(server.create_database(TEMPLATE_DB))
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres: LocalPostgres) -> Iterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"t{os.getpid()}_{next(_counter)}"
    url = postgres.create_database(name, template=TEMPLATE_DB)
    yield url
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> str:
    """Point the settings at the test database and a temporary home; return the database URL."""
    from pricebot.settings import get_settings

    monkeypatch.setenv("PRICEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("PRICEBOT_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()
