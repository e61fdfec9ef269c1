"""The candle rules in their three forms agree (Python for REST pages, SQL for archives, CHECK
constraints on klines), against the real PostgreSQL; absurd REST pages are refused by rule with
nothing written; the migration refuses to add the rules over stored rows that break them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from pricebot import db
from pricebot.archive import import_archive, write_archive
from pricebot.candle_rules import RULES, check_kline
from pricebot.errors import (
    MalformedArchiveError,
    MalformedPayloadError,
    OversizedArchiveError,
    StoredRowsBreakRulesError,
)
from pricebot.ingest import catch_up
from pricebot.klines import count_klines, to_millis
from pricebot.settings import Settings
from pricebot_exchange.exchange import RunningExchange

MINUTE = timedelta(minutes=1)
JAN_2024 = datetime(2024, 1, 1, tzinfo=UTC)


def kline(opened: datetime, **fields: object) -> list:
    """A good 1m kline opening at ``opened``, with fields replaced by index (f5="-1")."""
    ms = to_millis(opened)
    row = [ms, "100.01", "100.05", "99.99", "100.02", "12.5", ms + 59_999, "1250.1", 7, "6.1",
           "610.0", "0"]  # fmt: skip
    for key, value in fields.items():
        row[int(key[1:])] = value
    return row


def now_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


def breaking(rule: str) -> list:
    """A row that breaks ``rule`` and no rule before it."""
    if rule == "known-time":
        return kline(datetime(2009, 12, 31, 23, 0, tzinfo=UTC))
    if rule == "not-in-the-future":
        return kline(now_minute() + 10 * MINUTE)
    if rule == "on-a-minute":
        return kline(JAN_2024 + timedelta(seconds=30))
    if rule == "one-minute":
        return kline(JAN_2024, f6=to_millis(JAN_2024) + 90_000)
    if rule == "closed":  # opens within the clock skew, closes after it
        return kline(now_minute() + 2 * MINUTE)
    return {
        "in-range": kline(JAN_2024, f5="1e25"),
        "non-negative": kline(JAN_2024, f5="-12.5"),
        "positive-prices": kline(JAN_2024, f1="0", f2="0", f3="0", f4="0"),
        "ordered-prices": kline(JAN_2024, f4="100.06"),
    }[rule]


ROW_RULES = ["known-time", "not-in-the-future", "on-a-minute", "one-minute", "closed", "in-range",
             "non-negative", "positive-prices", "ordered-prices"]  # fmt: skip


def write_one(tmp_path: Path, row: list) -> Path:
    """``row`` alone in a daily archive named for its day."""
    opened = datetime.fromtimestamp(row[0] / 1000, UTC)
    return write_archive(tmp_path, "BTCUSDT", opened.date(), [row], period="daily")


def count(url: str, symbol: str | None = None) -> int:
    with psycopg.connect(url) as conn:
        return count_klines(conn, symbol)


@pytest.mark.parametrize("rule", ROW_RULES)
def test_python_refuses_the_row_by_the_rule(rule: str) -> None:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is checked just below
        check_kline(breaking(rule), "BTCUSDT")
    assert getattr(caught.value, "rule", None) == rule


@pytest.mark.parametrize("rule", ROW_RULES)
def test_the_archive_import_refuses_the_row_by_the_same_rule(
    rule: str, database_url: str, tmp_path: Path
) -> None:
    path = write_one(tmp_path, breaking(rule))

    with pytest.raises(MalformedArchiveError, match=rf"\(rule {rule}: ") as caught:
        import_archive(database_url, path)

    assert caught.value.path == path
    assert count(database_url) == 0


@pytest.mark.parametrize("rule", ROW_RULES)
def test_the_table_refuses_the_row_by_the_same_rule_whoever_writes_it(
    rule: str, database_url: str
) -> None:
    # Given a row breaking the rule, written straight into klines by SQL (no pricebot code)
    row = breaking(rule)
    values = (
        "BTCUSDT", datetime.fromtimestamp(row[0] / 1000, UTC), row[1], row[2], row[3], row[4],
        row[5], datetime.fromtimestamp(row[6] / 1000, UTC), row[7], row[8], row[9], row[10],
        row[11], "sql",
    )  # fmt: skip
    # Then PostgreSQL refuses it, naming the rule's constraint (a candle from the future has
    # not closed either, and PostgreSQL may name that one)
    with (
        psycopg.connect(database_url) as conn,
        pytest.raises(psycopg.errors.CheckViolation) as caught,
    ):
        conn.execute(f"INSERT INTO klines VALUES ({', '.join(['%s'] * 14)})", values)
    broken = {rule, "closed"} if rule == "not-in-the-future" else {rule}
    assert caught.value.diag.constraint_name in {f"klines_{r.replace('-', '_')}" for r in broken}


# --- REST pages ---------------------------------------------------------------------------------

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "rule"),
    [("future", "not-in-the-future"), ("negative", "non-negative"), ("overflow", "in-range")],
)
def test_a_hostile_page_is_refused_by_rule_and_nothing_of_it_is_written(
    exchange: Callable[..., RunningExchange], database_url: str, kind: str, rule: str
) -> None:
    # Given an exchange spoiling one row of every page (a candle from 2060, a negative
    # volume, a price of 1e999999999)
    market = exchange(now=NOW, history_days=2, symbols=["BTCUSDT"], malformed_rate=1.0,
                      malformed_kinds=[kind])  # fmt: skip
    settings = Settings(_env_file=None, database_url=database_url, binance_url=market.url,
                        lookback_days=1)  # fmt: skip
    # When the symbol is caught up, Then the page is refused by its rule, naming the symbol,
    # the page and what to do, as our own error (never the database's)
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        pytest.raises(MalformedPayloadError, match=rf"\(rule {rule}: ") as caught,
    ):
        catch_up(conn, ["BTCUSDT"], settings=settings)
    assert "Malformed kline for BTCUSDT" in str(caught.value)
    assert "Nothing from this page was written" in str(caught.value)
    assert count(database_url) == 0


# --- the migration ------------------------------------------------------------------------------


def test_the_upgrade_refuses_to_add_rules_that_stored_rows_break_and_changes_nothing(
    database_url: str,
) -> None:
    # Given a database at revision 0002 holding a good candle and one with a negative volume
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.upgrade(database_url, "0002")
    with psycopg.connect(database_url) as conn:
        for minute, volume in ((0, 1), (1, -3)):
            opened = JAN_2024 + minute * MINUTE
            conn.execute(
                "INSERT INTO klines VALUES ('BTCUSDT', %s, 1, 1, 1, 1, %s, %s, 1, 1, 1, 1, '0', "
                "'rest')",
                (opened, volume, opened + timedelta(seconds=59.999)),
            )
    # When it is upgraded
    with pytest.raises(StoredRowsBreakRulesError) as caught:
        db.upgrade(database_url)
    # Then the error counts the rows breaking which rule, shows the first, says how to list
    # them and what to do, and the database is as it was
    message = str(caught.value)
    assert "klines_non_negative: 1 row(s), e.g. BTCUSDT 2024-01-01 00:01:00+00" in message
    assert "Nothing was changed" in message
    assert "SELECT * FROM klines WHERE NOT (volume >= 0" in message
    assert "pricebot db upgrade" in message
    assert db.current_revision(database_url) == "0002"
    assert check_constraints(database_url) == []
    # When the row is deleted, Then the upgrade goes through, adding a constraint per row rule
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM klines WHERE volume < 0")
    db.upgrade(database_url)
    assert check_constraints(database_url) == sorted(
        f"klines_{rule.replace('-', '_')}" for rule in RULES if rule != "fields"
    )


def check_constraints(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'klines'::regclass"
            " AND contype = 'c' AND convalidated ORDER BY conname"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_file_with_more_rows_than_its_day_is_refused_before_it_is_all_read(
    database_url: str, tmp_path: Path
) -> None:
    # Given a daily file of well-formed rows, small enough in bytes, with three days of minutes
    rows = [kline(JAN_2024 + i * MINUTE) for i in range(3 * 1440)]
    path = write_archive(tmp_path, "BTCUSDT", date(2024, 1, 1), rows, period="daily")
    # When it is imported
    with pytest.raises(OversizedArchiveError, match="more than 1,441 lines") as caught:
        import_archive(database_url, path)
    # Then it is refused for holding more than a day can, and nothing is stored
    assert "a day has 1,440 minutes" in str(caught.value)
    assert count(database_url) == 0
