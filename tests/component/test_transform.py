"""The features table on a real PostgreSQL: incremental == full, reads back exactly, CLI."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from pricebot import pgbinary
from pricebot.candles import load_candles
from pricebot.features import DAY, WARMUP_MINUTES, compute_features, feature_names
from pricebot.klines import insert_klines, parse_kline
from pricebot.pgbinary import CopyLayoutError
from pricebot.transform import latest_features, load_features, update_features, update_symbol
from pricebot_cli import app

START = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
BATCH = 4000  # insert_klines sends one statement per batch (14 parameters a row, < 65535)


@cache
def kline_rows(symbol: str, minutes: int, seed: int = 0) -> tuple[tuple, ...]:
    """Parsed 1m klines of a seeded random walk, exactly as ingestion would store them."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, minutes)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 5e-4, minutes)) * close
    volume = rng.lognormal(3.0, 1.0, minutes)
    start_ms = int(START.timestamp() * 1000)
    rows = []
    for i in range(minutes):
        o, c = open_[i], close[i]
        hi, lo = max(o, c) + spread[i], min(o, c) - spread[i]
        open_ms = start_ms + i * 60_000
        raw = [open_ms, f"{o:.6f}", f"{hi:.6f}", f"{lo:.6f}", f"{c:.6f}", f"{volume[i]:.4f}",
               open_ms + 59_999, f"{volume[i] * c:.4f}", 10 + i % 50, f"{volume[i] / 2:.4f}",
               f"{volume[i] * c / 2:.4f}", "0"]  # fmt: skip
        rows.append(parse_kline(raw, symbol, "test"))
    return tuple(rows)


def store(url: str, rows: tuple[tuple, ...] | list[tuple]) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        for start in range(0, len(rows), BATCH):
            insert_klines(conn, rows[start : start + BATCH], market="binance")


def stored_features(url: str, symbol: str) -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        return load_features(conn, symbol)


def assert_same_features(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert got.index.equals(expected.index)
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)


HISTORY = WARMUP_MINUTES + 2 * DAY  # two days of rows after the warm-up


def test_full_update_stores_exactly_what_compute_features_gives(database_url: str) -> None:
    # Given two days' worth of candles past the warm-up
    store(database_url, kline_rows("BTCUSDT", HISTORY))

    # When the features are computed into the table
    written = update_features(database_url, ["BTCUSDT"])

    # Then every row comes back bit for bit as the one definition computes it
    with psycopg.connect(database_url) as conn:
        expected = compute_features(load_candles(conn, "BTCUSDT"))
        got = load_features(conn, "BTCUSDT")
    assert written == {"BTCUSDT": 2 * DAY}
    pd.testing.assert_frame_equal(got, expected)


def test_incremental_steps_of_random_sizes_across_a_gap_equal_a_full_recompute(
    database_url: str,
) -> None:
    # Given candles arriving in steps of random sizes, with a 3-hour outage in the middle
    rows = list(kline_rows("ETHUSDT", WARMUP_MINUTES + 9 * DAY, seed=1))
    outage = range(WARMUP_MINUTES + 2 * DAY, WARMUP_MINUTES + 2 * DAY + 180)
    rows = [row for i, row in enumerate(rows) if i not in outage]
    # small steps (under an hour: the thin read) mixed with large ones (the warm-up read)
    rng = np.random.default_rng(42)
    sizes = rng.permutation(
        np.concatenate([rng.integers(1, 60, 15), rng.integers(60, DAY, 8), [1, 59, 60]])
    )
    first = WARMUP_MINUTES + 100
    steps = [rows[:first]]
    position = first
    for size in sizes:
        if position >= len(rows):
            break
        steps.append(rows[position : position + int(size)])
        position += int(size)
    steps.append(rows[position:])

    # When the transform runs after every step
    written = 0
    for step in steps:
        store(database_url, step)
        written += update_features(database_url, ["ETHUSDT"])["ETHUSDT"]
    incremental = stored_features(database_url, "ETHUSDT")
    # and then everything is recomputed from scratch
    update_features(database_url, ["ETHUSDT"], full=True)
    full = stored_features(database_url, "ETHUSDT")

    # Then the rows written step by step equal the full recompute to 1e-9, none twice
    assert len(steps) == len(sizes) + 2  # every planned step ran, then the rest in one go
    assert written == len(incremental) == len(full) > 4 * DAY
    assert_same_features(incremental, full)


def test_a_rerun_without_new_candles_writes_nothing(database_url: str) -> None:
    store(database_url, kline_rows("BTCUSDT", HISTORY))
    update_features(database_url, ["BTCUSDT"])
    before = stored_features(database_url, "BTCUSDT")

    again = update_features(database_url, ["BTCUSDT"])

    assert again == {"BTCUSDT": 0}
    pd.testing.assert_frame_equal(stored_features(database_url, "BTCUSDT"), before)


def test_too_little_history_writes_no_rows_until_the_warmup_is_there(database_url: str) -> None:
    rows = kline_rows("BTCUSDT", HISTORY)
    store(database_url, rows[:WARMUP_MINUTES])

    assert update_features(database_url, ["BTCUSDT"]) == {"BTCUSDT": 0}

    store(database_url, rows[WARMUP_MINUTES : WARMUP_MINUTES + 5])
    assert update_features(database_url, ["BTCUSDT"]) == {"BTCUSDT": 5}


def test_symbols_are_updated_independently(database_url: str) -> None:
    store(database_url, kline_rows("BTCUSDT", HISTORY))
    store(database_url, kline_rows("ADAUSDT", WARMUP_MINUTES + 10, seed=2))

    written = update_features(database_url, ["BTCUSDT", "ADAUSDT", "NOCANDLES"])

    assert written == {"BTCUSDT": 2 * DAY, "ADAUSDT": 10, "NOCANDLES": 0}
    assert stored_features(database_url, "ADAUSDT")["close"].iloc[-1] == pytest.approx(
        float(kline_rows("ADAUSDT", WARMUP_MINUTES + 10, seed=2)[-1][5])
    )


def test_full_recompute_picks_up_a_backfilled_gap(database_url: str) -> None:
    # Given features computed while a day of candles was missing
    rows = kline_rows("BTCUSDT", HISTORY)
    hole = set(range(WARMUP_MINUTES + 100, WARMUP_MINUTES + 160))
    store(database_url, [row for i, row in enumerate(rows) if i not in hole])
    update_features(database_url, ["BTCUSDT"])
    # and the missing candles arriving later (an incremental run cannot see them: they are old)
    store(database_url, [rows[i] for i in sorted(hole)])

    # When the features are recomputed in full
    update_features(database_url, ["BTCUSDT"], full=True)

    # Then the table is what the complete candles give
    with psycopg.connect(database_url) as conn:
        expected = compute_features(load_candles(conn, "BTCUSDT"))
    pd.testing.assert_frame_equal(stored_features(database_url, "BTCUSDT"), expected)
    assert len(expected) == 2 * DAY


def test_a_failed_full_recompute_leaves_the_table_as_it_was(database_url: str) -> None:
    # Given stored features, and a database that will refuse the next write
    store(database_url, kline_rows("BTCUSDT", HISTORY))
    update_features(database_url, ["BTCUSDT"])
    before = stored_features(database_url, "BTCUSDT")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full (test)'; END $$;"
            "CREATE TRIGGER refuse BEFORE INSERT ON features FOR EACH ROW EXECUTE FUNCTION refuse()"
        )

    # When a full recompute (delete + insert) fails half-way
    with pytest.raises(psycopg.errors.RaiseException, match="disk full"):
        update_features(database_url, ["BTCUSDT"], full=True)

    # Then the delete was rolled back with it
    pd.testing.assert_frame_equal(stored_features(database_url, "BTCUSDT"), before)


def test_concurrent_transforms_of_one_symbol_write_each_row_once(database_url: str) -> None:
    # Given candles, and two transforms (say the Lambda and a CLI) starting at the same moment
    store(database_url, kline_rows("BTCUSDT", HISTORY))
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []

    def transform() -> None:
        start.wait()
        results.append(update_features(database_url, ["BTCUSDT"]))

    # When both run
    threads = [threading.Thread(target=transform) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one wrote the rows and the other, serialised behind it, found nothing new
    assert sorted(r["BTCUSDT"] for r in results) == [0, 2 * DAY]
    assert len(stored_features(database_url, "BTCUSDT")) == 2 * DAY


def test_update_symbol_refuses_a_connection_inside_a_transaction(database_url: str) -> None:
    # Inside the caller's transaction the per-symbol commit would silently become a savepoint.
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT 1")  # psycopg opened a transaction

        with pytest.raises(RuntimeError, match="not inside a transaction"):
            update_symbol(conn, "BTCUSDT")


def test_an_unknown_feature_set_fails_before_any_work(database_url: str) -> None:
    with pytest.raises(ValueError, match="Unknown feature set 'v0'"):
        update_features(database_url, ["BTCUSDT"], feature_set="v0")


@pytest.fixture
def computed(database_url: str) -> str:
    """A database with two days of BTCUSDT feature rows."""
    store(database_url, kline_rows("BTCUSDT", HISTORY))
    update_features(database_url, ["BTCUSDT"])
    return database_url


def test_load_features_bounds_are_inclusive(computed: str) -> None:
    first = START + WARMUP_MINUTES * MINUTE
    start, end = first + 10 * MINUTE, first + 20 * MINUTE

    with psycopg.connect(computed) as conn:
        frame = load_features(conn, "BTCUSDT", start, end)

    assert frame.index[0] == start
    assert frame.index[-1] == end
    assert len(frame) == 11
    assert str(frame.index.tz) == "UTC"
    assert list(frame.columns) == ["close", *feature_names()]


def test_load_features_of_an_unknown_symbol_is_empty(computed: str) -> None:
    with psycopg.connect(computed) as conn:
        frame = load_features(conn, "NOPE")

    assert frame.empty
    assert list(frame.columns) == ["close", *feature_names()]


def test_load_features_refuses_naive_datetimes(computed: str) -> None:
    with psycopg.connect(computed) as conn, pytest.raises(ValueError, match="timezone-aware"):
        load_features(conn, "BTCUSDT", start=datetime(2026, 1, 1))


def test_load_features_of_rows_of_another_width_says_to_recompute(computed: str) -> None:
    with psycopg.connect(computed) as conn:
        conn.execute("UPDATE features SET values = values[1:3]")

        with pytest.raises(CopyLayoutError, match=r"hold 3 values.*transform --full"):
            load_features(conn, "BTCUSDT")


def test_load_features_of_rows_with_null_values_says_to_recompute(computed: str) -> None:
    with psycopg.connect(computed) as conn:
        conn.execute(
            "UPDATE features SET values[2] = NULL WHERE open_time = %s",
            (START + HISTORY * MINUTE - MINUTE,),
        )

        with pytest.raises(CopyLayoutError, match=r"unreadable.*NULL.*transform --full"):
            load_features(conn, "BTCUSDT")


def test_load_features_pages_through_large_results(
    computed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given rows read in one piece, and the same rows read in pages of 1,000
    with psycopg.connect(computed) as conn:
        whole = load_features(conn, "BTCUSDT")
        monkeypatch.setattr(pgbinary, "PACKED_CHUNK_ROWS", 1000)
        paged = load_features(conn, "BTCUSDT")

    # Then nothing is lost, doubled or reordered at the page seams
    assert len(whole) == 2 * DAY
    pd.testing.assert_frame_equal(paged, whole)


def test_latest_features_of_a_row_of_another_width_says_to_recompute(computed: str) -> None:
    with psycopg.connect(computed) as conn:
        conn.execute("UPDATE features SET values = values[1:3]")

        with pytest.raises(CopyLayoutError, match=r"holds 3 values.*transform --full"):
            latest_features(conn, "BTCUSDT")


def test_latest_features_is_the_newest_row(computed: str) -> None:
    with psycopg.connect(computed) as conn:
        everything = load_features(conn, "BTCUSDT")
        row = latest_features(conn, "BTCUSDT")

    assert row is not None
    assert row.open_time == everything.index[-1]
    assert row.close == everything["close"].iloc[-1]
    np.testing.assert_array_equal(row.values, everything.iloc[-1, 1:].to_numpy())
    assert list(row.as_frame().columns) == feature_names()


def test_latest_features_of_a_symbol_without_rows_is_none(computed: str) -> None:
    with psycopg.connect(computed) as conn:
        assert latest_features(conn, "NOPE") is None


def test_load_candles_gives_floats_of_the_stored_prices(database_url: str) -> None:
    rows = kline_rows("BTCUSDT", 50)
    store(database_url, rows)

    with psycopg.connect(database_url) as conn:
        candles = load_candles(conn, "BTCUSDT", START + 10 * MINUTE, START + 19 * MINUTE)

    assert len(candles) == 10
    assert candles.index[0] == START + 10 * MINUTE
    assert candles["close"].dtype == np.float64
    assert candles["close"].iloc[0] == float(rows[10][5])
    assert candles["trades"].iloc[0] == rows[10][9]
    assert candles["taker_buy_base_volume"].iloc[-1] == float(rows[19][10])


# The command line, end to end on a real database.


def flat(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_cli_transform_writes_rows_and_prints_a_summary(settings_env: str) -> None:
    store(settings_env, kline_rows("BTCUSDT", HISTORY))
    store(settings_env, kline_rows("ETHUSDT", WARMUP_MINUTES + 10, seed=1))

    result = CliRunner().invoke(app, ["transform", "--symbols", "btcusdt,ETHUSDT"])

    assert result.exit_code == 0, result.output
    assert "BTCUSDT" in result.output
    assert "2,880" in result.output
    assert "2,890 feature rows written for 2 symbol(s)" in result.output
    assert len(stored_features(settings_env, "ETHUSDT")) == 10


def test_cli_transform_second_run_is_incremental(settings_env: str) -> None:
    store(settings_env, kline_rows("BTCUSDT", HISTORY))
    runner = CliRunner()
    runner.invoke(app, ["transform", "--symbols", "BTCUSDT"])

    result = runner.invoke(app, ["transform", "--symbols", "BTCUSDT"])

    assert result.exit_code == 0, result.output
    assert "incremental" in result.output
    assert "0 feature rows written for 1 symbol(s)" in result.output


def test_cli_transform_full_recomputes(settings_env: str) -> None:
    store(settings_env, kline_rows("BTCUSDT", HISTORY))
    runner = CliRunner()
    runner.invoke(app, ["transform", "--symbols", "BTCUSDT"])

    result = runner.invoke(app, ["transform", "--symbols", "BTCUSDT", "--full"])

    assert result.exit_code == 0, result.output
    assert "full recompute" in result.output
    assert "2,880 feature rows written" in result.output


def test_cli_transform_too_little_history_says_how_much_is_needed(settings_env: str) -> None:
    store(settings_env, kline_rows("BTCUSDT", 100))

    result = CliRunner().invoke(app, ["transform", "--symbols", "BTCUSDT"])

    assert result.exit_code == 0, result.output
    assert "needs 24 days of candles before it and 100 minutes are stored" in flat(result.output)


def test_cli_transform_symbol_without_candles_says_to_ingest(settings_env: str) -> None:
    result = CliRunner().invoke(app, ["transform", "--symbols", "DOGEUSDT"])

    assert result.exit_code == 1
    assert "No candles stored for DOGEUSDT" in result.output
    assert "pricebot ingest --symbols DOGEUSDT" in flat(result.output)


def test_cli_transform_unknown_feature_set(settings_env: str) -> None:
    result = CliRunner().invoke(app, ["transform", "--feature-set", "v0"])

    assert result.exit_code == 1
    assert "Unknown feature set 'v0'" in result.output


def test_cli_transform_unreachable_database() -> None:
    url = "postgresql://nobody@127.0.0.1:1/nowhere"

    result = CliRunner().invoke(app, ["transform", "--database-url", url, "--symbols", "BTCUSDT"])

    assert result.exit_code == 1
    assert "Cannot connect to postgresql://nobody@127.0.0.1:1/nowhere" in result.output
