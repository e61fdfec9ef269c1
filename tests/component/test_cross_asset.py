"""The cross-asset feature set v2x on a real PostgreSQL: the transform reads the reference coins'
stored candles, incrementally exactly as in a full recompute, and says when one is missing."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import psycopg
import pytest

from pricebot.candles import load_candles
from pricebot.errors import MissingReferenceError
from pricebot.features import DAY, V2_WARMUP_MINUTES, compute_features, feature_names
from pricebot.transform import load_features, update_features, update_symbol
from pricebot_local.localdb import LocalPostgres
from tests.conftest import TEMPLATE_DB

START = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HISTORY = V2_WARMUP_MINUTES + DAY  # a day of rows after the 98-day warm-up


@cache
def candle_frame(minutes: int, seed: int, level: float) -> pd.DataFrame:
    """A seeded random walk of klines as the table holds them (prices as decimal text)."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0.0, 1e-3, minutes)))
    open_ = np.concatenate([[level], close[:-1]])
    spread = np.abs(rng.normal(0.0, 5e-4, minutes)) * close
    volume = rng.lognormal(3.0, 1.0, minutes)
    opens = pd.date_range(START, periods=minutes, freq="min")
    return pd.DataFrame(
        {
            "open_time": opens.strftime("%Y-%m-%d %H:%M:%S+00"),
            "open": np.round(open_, 6),
            "high": np.round(np.maximum(open_, close) + spread, 6),
            "low": np.round(np.minimum(open_, close) - spread, 6),
            "close": np.round(close, 6),
            "volume": np.round(volume, 4),
            "close_time": (opens + pd.Timedelta(milliseconds=59_999)).strftime(
                "%Y-%m-%d %H:%M:%S.%f+00"
            ),
            "quote_volume": np.round(volume * close, 4),
            "trades": 10 + np.arange(minutes) % 50,
            "taker_base": np.round(volume / 2, 4),
            "taker_quote": np.round(volume * close / 2, 4),
            "ignore": "0",
            "source": "test",
        }
    )


def store(url: str, symbol: str, frame: pd.DataFrame) -> None:
    """COPY the rows in (a hundred thousand candles in well under a second)."""
    buffer = io.StringIO()
    frame.assign(symbol=symbol)[["symbol", *frame.columns]].to_csv(
        buffer, sep="\t", header=False, index=False
    )
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cur,
        cur.copy("COPY klines FROM STDIN") as copy,
    ):
        copy.write(buffer.getvalue())


def expected_features(url: str, symbol: str, references: tuple[str, ...]) -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        candles = load_candles(conn, symbol)
        loaded = {r: load_candles(conn, r, columns=["close"]) for r in references}
    return compute_features(candles, "v2x", loaded)


def stored(url: str, symbol: str) -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        return load_features(conn, symbol, feature_set="v2x")


COINS = {"SOLUSDT": (1, 150.0), "BTCUSDT": (2, 90_000.0), "ETHUSDT": (3, 3_000.0)}


@pytest.fixture(scope="module")
def coins_template(postgres: LocalPostgres) -> Iterator[str]:
    """A database holding a coin and the two default references, each with a day of rows past
    the warm-up: loaded once, copied for each test (CREATE DATABASE ... TEMPLATE)."""
    name = f"cross_asset_{os.getpid()}"
    url = postgres.create_database(name, template=TEMPLATE_DB)
    for symbol, (seed, level) in COINS.items():
        store(url, symbol, candle_frame(HISTORY, seed, level))
    yield name
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def coins(postgres: LocalPostgres, coins_template: str) -> Iterator[str]:
    name = f"{coins_template}_{os.urandom(4).hex()}"
    yield postgres.create_database(name, template=coins_template)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_full_update_stores_what_compute_features_gives_with_the_references(coins: str) -> None:
    written = update_features(coins, ["SOLUSDT"], feature_set="v2x")

    got = stored(coins, "SOLUSDT")
    assert written == {"SOLUSDT": DAY}
    assert list(got.columns) == ["close", *feature_names("v2x")]
    pd.testing.assert_frame_equal(got, expected_features(coins, "SOLUSDT", ("BTCUSDT", "ETHUSDT")))


def test_a_reference_coins_own_row_carries_its_own_returns(coins: str) -> None:
    update_features(coins, ["BTCUSDT"], feature_set="v2x")

    got = stored(coins, "BTCUSDT")
    assert len(got) == DAY
    np.testing.assert_array_equal(got["ref_btcusdt_logret_1h"], got["logret_1h"])
    np.testing.assert_allclose(got["ref_btcusdt_corr_24h"], 1.0, rtol=1e-9)
    pd.testing.assert_frame_equal(got, expected_features(coins, "BTCUSDT", ("BTCUSDT", "ETHUSDT")))


def test_incremental_steps_with_lagging_references_equal_a_full_recompute(
    database_url: str,
) -> None:
    # Given the coin's and the references' candles arriving in steps of random sizes (under an
    # hour: the thin read; more: the warm-up read), the references sometimes behind the coin
    frames = {s: candle_frame(HISTORY, seed, level) for s, (seed, level) in COINS.items()}
    rng = np.random.default_rng(7)
    first = V2_WARMUP_MINUTES + 30
    for symbol, frame in frames.items():
        store(database_url, symbol, frame.iloc[:first])
    coin_at, reference_at = first, first
    steps = 0
    written = 0
    while coin_at < HISTORY:
        coin_was, coin_at = coin_at, min(HISTORY, coin_at + int(rng.choice([1, 7, 59, 60, 200])))
        # the references catch up to somewhere between where they were and the coin
        lag = 0 if coin_at == HISTORY else int(rng.integers(0, 90))
        new_reference_at = max(reference_at, coin_at - lag)
        store(database_url, "SOLUSDT", frames["SOLUSDT"].iloc[coin_was:coin_at])
        for reference in ("BTCUSDT", "ETHUSDT"):
            store(database_url, reference, frames[reference].iloc[reference_at:new_reference_at])
        reference_at = new_reference_at
        written += update_features(database_url, ["SOLUSDT"], feature_set="v2x")["SOLUSDT"]
        steps += 1
    incremental = stored(database_url, "SOLUSDT")

    # When everything is recomputed from scratch
    update_features(database_url, ["SOLUSDT"], feature_set="v2x", full=True)
    full = stored(database_url, "SOLUSDT")

    # Then the rows written step by step equal the full recompute to 1e-9, each written once
    assert steps > 10
    assert written == len(incremental) == len(full) > DAY - 60
    assert incremental.index.equals(full.index)
    np.testing.assert_allclose(incremental.to_numpy(), full.to_numpy(), rtol=1e-9, atol=1e-12)


def test_rows_wait_for_the_references_candle_at_their_minute(coins: str) -> None:
    # Given the coin ten minutes ahead of one of its references
    store(coins, "SOLUSDT", candle_frame(HISTORY + 10, 1, 150.0).iloc[HISTORY:])

    written = update_features(coins, ["SOLUSDT"], feature_set="v2x")

    # Then its rows stop at the reference's newest candle, to be written once it catches up
    assert written == {"SOLUSDT": DAY}
    assert stored(coins, "SOLUSDT").index[-1] == START + (HISTORY - 1) * MINUTE


def test_a_reference_with_no_candles_is_named_with_the_fix(coins: str) -> None:
    with psycopg.connect(coins) as conn:
        conn.execute("DELETE FROM klines WHERE symbol = 'ETHUSDT'")

    with (
        psycopg.connect(coins, autocommit=True) as conn,
        pytest.raises(MissingReferenceError, match=r"reference coin ETHUSDT.*PRICEBOT_SYMBOLS"),
    ):
        update_symbol(conn, "SOLUSDT", "v2x")
    assert stored(coins, "SOLUSDT").empty


def test_v2_needs_no_reference(coins: str) -> None:
    with psycopg.connect(coins) as conn:
        conn.execute("DELETE FROM klines WHERE symbol <> 'SOLUSDT'")

    written = update_features(coins, ["SOLUSDT"], feature_set="v2")

    with psycopg.connect(coins) as conn:
        expected = compute_features(load_candles(conn, "SOLUSDT"), "v2")
        got = load_features(conn, "SOLUSDT", feature_set="v2")
    assert written == {"SOLUSDT": DAY}
    pd.testing.assert_frame_equal(got, expected)
