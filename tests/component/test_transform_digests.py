"""Feature digests on a real PostgreSQL: a full recompute reads back only the days that changed.

Each test ends by checking the table against what the candles give (and, where it matters,
against a fresh recompute into an empty table), so skipping a day is never taken on trust.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from alembic import command
from typer.testing import CliRunner

from pricebot import db
from pricebot.candles import load_candles
from pricebot.features import DAY, WARMUP_MINUTES, compute_features
from pricebot.transform import TransformResult, load_features, update_features, update_symbol
from pricebot_cli import app
from tests.component.test_transform import START, kline_rows, store

MINUTE = timedelta(minutes=1)
ROWS_DAYS = 5
#: The warm-up, then five whole UTC days of rows (START is a UTC midnight, the warm-up whole days).
HISTORY = WARMUP_MINUTES + ROWS_DAYS * DAY


def full(url: str, symbol: str = "BTCUSDT") -> TransformResult:
    with psycopg.connect(url, autocommit=True) as conn:
        return update_symbol(conn, symbol, full=True)


def expected_features(url: str, symbol: str = "BTCUSDT") -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        return compute_features(load_candles(conn, symbol))


def stored(url: str, symbol: str = "BTCUSDT") -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        return load_features(conn, symbol)


def digests(url: str, symbol: str = "BTCUSDT") -> list[tuple]:
    """(day, rows, sha256) of every stored digest: what a fresh recompute must reproduce."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT day, rows, sha256 FROM feature_digests WHERE symbol = %s ORDER BY day",
            (symbol,),
        ).fetchall()


def fresh_recompute(url: str, symbol: str = "BTCUSDT") -> tuple[pd.DataFrame, list[tuple]]:
    """The rows and digests a recompute into an empty table gives (the table is emptied)."""
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM features WHERE symbol = %s", (symbol,))
        conn.execute("DELETE FROM feature_digests WHERE symbol = %s", (symbol,))
    result = full(url, symbol)
    assert (result.rows_kept, result.rows_compared) == (0, 0)
    return stored(url, symbol), digests(url, symbol)


def rows_on_days(frame: pd.DataFrame, days: set) -> int:
    return int(np.isin(frame.index.date, list(days)).sum())


def changed_days(before: pd.DataFrame, after: pd.DataFrame) -> set:
    """UTC days on which any row differs bit for bit (or exists on one side only)."""
    joined = before.join(after, how="outer", lsuffix="_b", rsuffix="_a")
    left = joined.filter(like="_b").to_numpy()
    right = joined.filter(like="_a").to_numpy()
    differs = ~((left == right) | (np.isnan(left) & np.isnan(right))).all(axis=1)
    return set(joined.index[differs].date)


@pytest.fixture
def computed(database_url: str) -> str:
    """Five days of BTCUSDT rows, computed into an empty table (so with their digests)."""
    store(database_url, kline_rows("BTCUSDT", HISTORY))
    update_features(database_url, ["BTCUSDT"])
    return database_url


def test_the_first_computation_stores_one_digest_per_day(computed: str) -> None:
    # Given rows computed into an empty table, Then each of their UTC days has a digest
    assert [(day, n) for day, n, _ in digests(computed)] == [
        ((START + (WARMUP_MINUTES + i * DAY) * MINUTE).date(), DAY) for i in range(ROWS_DAYS)
    ]


def test_an_identical_recompute_writes_nothing_and_reads_no_row_back(computed: str) -> None:
    # Given stored rows with their digests, and candles that have not changed
    before = stored(computed)

    # When everything is recomputed
    result = full(computed)

    # Then no row was written nor compared: every day's digest matched
    assert (result.rows_written, result.rows_kept, result.rows_compared) == (0, len(before), 0)
    pd.testing.assert_frame_equal(stored(computed), before)


def test_a_changed_candle_rewrites_only_the_days_whose_rows_it_changes(computed: str) -> None:
    # Given a candle on the third day of rows corrected after the rows were computed: rows
    # before it cannot see it (the EMAs carry it, ever smaller, into every later row)
    before = stored(computed)
    moment = START + (WARMUP_MINUTES + 2 * DAY + 600) * MINUTE
    with psycopg.connect(computed) as conn:
        conn.execute(
            "UPDATE klines SET close = (high + low) / 2 WHERE symbol = 'BTCUSDT'"
            " AND open_time = %s",
            (moment,),
        )

    # When everything is recomputed
    result = full(computed)
    after = stored(computed)

    # Then the table is what the candles give, only the changed days were read back, and only
    # the changed rows written
    pd.testing.assert_frame_equal(after, expected_features(computed))
    days = changed_days(before, after)
    assert min(days) == moment.date()
    assert 0 < len(days) < ROWS_DAYS
    assert result.rows_compared == rows_on_days(after, days)
    assert 0 < result.rows_written <= result.rows_compared
    # and the rows and digests are those a recompute into an empty table gives
    rewritten = digests(computed)
    fresh_rows, fresh_digests = fresh_recompute(computed)
    pd.testing.assert_frame_equal(after, fresh_rows)
    assert rewritten == fresh_digests


def test_a_vacuum_freeze_keeps_the_digests_trusted(computed: str) -> None:
    # Given the rows frozen by VACUUM (what autovacuum does to old rows; the xmin stays stored)
    with psycopg.connect(computed, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE) features")

    # When everything is recomputed, Then no day needed reading back
    assert full(computed).rows_compared == 0


def test_a_row_altered_behind_the_digests_back_is_found_and_fixed(computed: str) -> None:
    # Given a stored row changed by hand, its day's digest left as it was
    victim = START + (WARMUP_MINUTES + 2 * DAY + 77) * MINUTE
    with psycopg.connect(computed) as conn:
        conn.execute(
            "UPDATE features SET values[3] = values[3] + 1 WHERE open_time = %s", (victim,)
        )

    # When everything is recomputed
    result = full(computed)

    # Then that day alone was read back (the row's new xmin gave it away), and the row fixed
    assert (result.rows_compared, result.rows_written) == (DAY, 1)
    pd.testing.assert_frame_equal(stored(computed), expected_features(computed))
    # and the day's digest is trusted again
    assert full(computed).rows_compared == 0


def test_a_row_deleted_behind_the_digests_back_is_written_again(computed: str) -> None:
    # Given a stored row deleted by hand
    victim = START + (WARMUP_MINUTES + 4 * DAY + 5) * MINUTE
    with psycopg.connect(computed) as conn:
        conn.execute("DELETE FROM features WHERE open_time = %s", (victim,))

    # When everything is recomputed
    result = full(computed)

    # Then its day was compared and the missing row written
    assert (result.rows_compared, result.rows_written) == (DAY - 1, 1)
    pd.testing.assert_frame_equal(stored(computed), expected_features(computed))


def test_without_digests_every_row_is_compared_and_the_result_is_right(computed: str) -> None:
    # Given the digests deleted by hand, and a candle changed since the rows were computed
    before = stored(computed)
    with psycopg.connect(computed) as conn:
        conn.execute("DELETE FROM feature_digests")
        conn.execute(
            "UPDATE klines SET close = open WHERE symbol = 'BTCUSDT' AND open_time = %s",
            (START + (WARMUP_MINUTES + 3 * DAY) * MINUTE,),
        )

    # When everything is recomputed
    result = full(computed)

    # Then every stored row was read back, the table is what the candles give, only the
    # changed rows were written, and the digests are back
    after = stored(computed)
    assert result.rows_compared == len(before)
    pd.testing.assert_frame_equal(after, expected_features(computed))
    assert 0 < result.rows_written < len(after) // 2
    assert len(digests(computed)) == ROWS_DAYS
    assert full(computed).rows_compared == 0


def test_an_incremental_append_then_a_full_recompute_is_right(computed: str) -> None:
    # Given 90 more minutes appended incrementally (the last day of rows grows into a new one)
    store(computed, kline_rows("BTCUSDT", HISTORY + 90)[HISTORY:])
    assert update_features(computed, ["BTCUSDT"]) == {"BTCUSDT": 90}
    # Then the digest of the day appended to is gone (no other was touched)
    assert len(digests(computed)) == ROWS_DAYS

    # When everything is recomputed
    result = full(computed)

    # Then only the day without a digest was read back (its rows are rewritten where the
    # incremental computation's EMAs, started later, differ in the last bits), and the table is
    # what the candles give
    assert result.rows_compared == 90
    assert result.rows_written <= 90
    pd.testing.assert_frame_equal(stored(computed), expected_features(computed))
    assert len(digests(computed)) == ROWS_DAYS + 1
    assert full(computed).rows_compared == 0


def test_an_append_to_a_day_with_a_digest_forgets_that_digest(computed: str) -> None:
    # Given a day's last rows deleted, then its digests recomputed (the day is now partial)
    cut = START + (HISTORY - 60) * MINUTE
    with psycopg.connect(computed) as conn:
        conn.execute("DELETE FROM features WHERE open_time >= %s", (cut,))
        conn.execute("DELETE FROM feature_digests")
        conn.execute("DELETE FROM klines WHERE open_time >= %s", (cut,))
    full(computed)
    assert len(digests(computed)) == ROWS_DAYS

    # When the rest of the day arrives and is appended incrementally
    store(computed, kline_rows("BTCUSDT", HISTORY)[-60:])
    assert update_features(computed, ["BTCUSDT"]) == {"BTCUSDT": 60}

    # Then that day has no digest any more, and a full recompute compares it and is right
    assert len(digests(computed)) == ROWS_DAYS - 1
    result = full(computed)
    assert result.rows_compared == DAY
    assert result.rows_written <= 60
    pd.testing.assert_frame_equal(stored(computed), expected_features(computed))


def test_days_gone_from_the_candles_are_deleted_with_their_digests(computed: str) -> None:
    # Given the candles of the last two days deleted
    with psycopg.connect(computed) as conn:
        conn.execute(
            "DELETE FROM klines WHERE open_time >= %s",
            (START + (HISTORY - 2 * DAY) * MINUTE,),
        )

    # When everything is recomputed
    result = full(computed)

    # Then their rows and digests are gone, and nothing else was read back
    assert (result.rows_written, result.rows_compared) == (0, 0)
    pd.testing.assert_frame_equal(stored(computed), expected_features(computed))
    assert len(digests(computed)) == ROWS_DAYS - 2


def test_candles_too_few_for_any_row_leave_no_row_and_no_digest(computed: str) -> None:
    # Given all but the warm-up's candles deleted
    with psycopg.connect(computed) as conn:
        conn.execute("DELETE FROM klines WHERE open_time >= %s", (START + WARMUP_MINUTES * MINUTE,))

    # When everything is recomputed, Then nothing is left
    result = full(computed)
    assert (result.rows_written, result.rows_kept, result.rows_compared) == (0, 0, 0)
    assert stored(computed).empty
    assert digests(computed) == []


def test_a_failed_recompute_leaves_rows_and_digests_as_they_were(computed: str) -> None:
    # Given a changed candle, and a database that will refuse the next digest written
    with psycopg.connect(computed) as conn:
        conn.execute(
            "UPDATE klines SET close = open WHERE symbol = 'BTCUSDT' AND open_time = %s",
            (START + (WARMUP_MINUTES + DAY) * MINUTE,),
        )
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full (test)'; END $$;"
            "CREATE TRIGGER refuse BEFORE INSERT ON feature_digests FOR EACH ROW"
            " EXECUTE FUNCTION refuse()"
        )
    before, kept = stored(computed), digests(computed)

    # When a full recompute fails at its last step
    with pytest.raises(psycopg.errors.RaiseException, match="disk full"):
        full(computed)

    # Then the rows it had rewritten were rolled back with the digests
    pd.testing.assert_frame_equal(stored(computed), before)
    assert digests(computed) == kept


def test_cli_full_recompute_reports_the_rows_compared(settings_env: str) -> None:
    store(settings_env, kline_rows("BTCUSDT", HISTORY))
    runner = CliRunner()
    runner.invoke(app, ["transform", "--symbols", "BTCUSDT"])
    with psycopg.connect(settings_env) as conn:
        conn.execute(
            "DELETE FROM feature_digests WHERE day = %s",
            ((START + (WARMUP_MINUTES + DAY) * MINUTE).date(),),
        )

    result = runner.invoke(app, ["transform", "--symbols", "BTCUSDT", "--full"])

    assert result.exit_code == 0, result.output
    assert "compared" in result.output
    assert f"{DAY:,} stored rows were read back to compare" in " ".join(result.output.split())


# --- the migration ------------------------------------------------------------------------------
def exists(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('feature_digests')").fetchone()[0] is not None


def test_the_migration_downgrades_and_upgrades_again(computed: str) -> None:
    # Given a database at head, with digests stored
    assert exists(computed)

    # When it is downgraded to 0007, Then the table is gone and a full recompute still works
    command.downgrade(db._alembic_config(computed), "0007")
    assert db.current_revision(computed) == "0007"
    assert not exists(computed)

    # When it is upgraded again, Then the table is back, empty: the first recompute compares all
    assert db.upgrade(computed) == db.head_revision() == "0008"
    assert digests(computed) == []
    before = stored(computed)
    result = full(computed)
    assert (result.rows_compared, result.rows_written) == (len(before), 0)
    assert len(digests(computed)) == ROWS_DAYS


def test_the_migration_grants_the_digests_to_the_pipeline_and_monitoring_only(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        granted = conn.execute(
            "SELECT grantee, string_agg(privilege_type, ',' ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants WHERE table_name = 'feature_digests'"
            " AND grantee LIKE 'pricebot%group' GROUP BY grantee ORDER BY grantee"
        ).fetchall()

    assert granted == [
        ("pricebot_monitoring_group", "SELECT"),
        ("pricebot_pipeline_group", "DELETE,INSERT,SELECT"),
    ]
