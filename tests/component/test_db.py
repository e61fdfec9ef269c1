"""The schema: migrations apply, are idempotent, and numeric columns keep what was sent."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from pricebot import db
from pricebot_cli import app


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    # Given a database already at head (the template is migrated)
    before = db.current_revision(database_url)

    # When the upgrade runs again
    after = db.upgrade(database_url)

    # Then nothing changes and the revision is the head
    assert before == after == db.head_revision()


def test_cli_db_upgrade_reports_revision(database_url: str) -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--database-url", database_url])

    assert result.exit_code == 0, result.output
    assert db.head_revision() in result.output


def test_cli_db_upgrade_unreachable_database_says_what_to_check() -> None:
    url = "postgresql://nobody@127.0.0.1:1/nowhere"

    result = CliRunner().invoke(app, ["db", "upgrade", "--database-url", url])

    assert result.exit_code == 1
    assert "Cannot connect to postgresql://nobody@127.0.0.1:1/nowhere" in result.output
    assert "PRICEBOT_DATABASE_URL" in result.output


@pytest.mark.parametrize("text", ["0.01000000", "67234.12000000", "0.00000001", "123456789.1"])
def test_numeric_prices_round_trip_exactly(database_url: str, text: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO klines VALUES ('X', now(), %s, %s, %s, %s, %s, now(), %s, 1, %s, %s,"
            " '0', 'test')",
            [text] * 8,
        )
        value = conn.execute("SELECT open::text FROM klines").fetchone()[0]

    assert value == text


def test_sqlalchemy_url_rejects_non_postgres() -> None:
    with pytest.raises(ValueError, match="Not a PostgreSQL URL"):
        db.sqlalchemy_url("mysql://x@y/z")
