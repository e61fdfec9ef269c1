"""Ban-aware ingestion: a ban's end is stored, no run asks before it, overlapping runs never
double the request weight (the simulated exchange over real HTTP, the real PostgreSQL).

The exchange's clock is frozen; ours is a :class:`Clock` the client reads and sleeps on, so a
two-minute ban passes without two minutes of waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from pricebot.bans import Ban, active_ban, record_ban
from pricebot.binance import BinanceClient
from pricebot.ingest import BANNED, BUSY, IngestResult, PageEvent, catch_up, symbol_lock
from pricebot.settings import Settings, get_settings
from pricebot_cli import app
from pricebot_exchange.exchange import RunningExchange, synthetic_klines

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Clock:
    """Our side's clock: starts at the real time, moves only when slept on or moved."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def settings_for(ex: RunningExchange, url: str) -> Settings:
    return Settings(_env_file=None, database_url=url, binance_url=ex.url, lookback_days=2,
                    max_retry_after_seconds=60)  # fmt: skip


def ingest(
    url: str, ex: RunningExchange, clock: Clock, symbols: list[str], **options: object
) -> list[IngestResult]:
    settings = settings_for(ex, url)
    with (
        BinanceClient.from_settings(settings, sleep=clock.sleep, clock=clock.time) as client,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        return catch_up(conn, symbols, settings=settings, client=client, **options)


def stored(url: str, symbol: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT (extract(epoch FROM open_time) * 1000)::bigint FROM klines WHERE symbol = %s"
            " ORDER BY open_time",
            (symbol,),
        ).fetchall()
    return [row[0] for row in rows]


def expected(ex: RunningExchange, symbol: str, start: datetime, end: datetime) -> list[int]:
    deep = ex.config.model_copy(update={"history_days": 10.0})
    rows = synthetic_klines(
        deep, symbol, int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    )
    return [row[0] for row in rows]


@pytest.fixture
def market(exchange: Callable[..., RunningExchange]) -> RunningExchange:
    return exchange(now=NOW, history_days=3, symbols=["BTCUSDT", "ETHUSDT"])


def test_a_ban_met_mid_run_is_stored_and_the_pages_before_it_kept(
    market: RunningExchange, database_url: str
) -> None:
    # Given an exchange that bans for 2 minutes once the first page is stored
    clock = Clock()

    def ban(event: PageEvent) -> None:
        market.config.banned_until = market.config.now + 2 * MINUTE

    # When two days of BTCUSDT are caught up
    [result, eth] = ingest(database_url, market, clock, ["BTCUSDT", "ETHUSDT"], on_page=ban)
    # Then the pages before the ban are stored, and the ban's end (on our clock) is recorded
    assert 1000 <= result.rows_written < 2 * 1440
    assert len(stored(database_url, "BTCUSDT")) == result.rows_written
    until = datetime.fromtimestamp(clock.time() + 120, UTC)
    assert result.resume_at == until
    with psycopg.connect(database_url) as conn:
        recorded = active_ban(conn, market.url, datetime.fromtimestamp(clock.time(), UTC))
    assert (recorded.until, recorded.status) == (until, 418)
    # And the next symbol was not asked for at all
    assert (eth.skipped, eth.resume_at, eth.rows_written) == (BANNED, until, 0)
    assert stored(database_url, "ETHUSDT") == []


def test_every_run_before_the_ban_ends_makes_no_request_and_says_when_it_resumes(
    market: RunningExchange, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a ban recorded (by any run) for this exchange, ending in 90 s
    clock = Clock()
    until = datetime.fromtimestamp(clock.time() + 90, UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        record_ban(conn, Ban(market.url, until, 418, "Way too many requests"))
    # When runs come every 30 s of our clock until then
    for _ in range(3):
        with caplog.at_level(logging.WARNING, logger="pricebot.ingest"):
            results = ingest(database_url, market, clock, ["BTCUSDT", "ETHUSDT"])
        # Then none asks the exchange anything, and each says when it resumes
        assert [(r.skipped, r.resume_at) for r in results] == [(BANNED, until)] * 2
        assert market.stats.requests() == 0
        assert f"until {until:%Y-%m-%d %H:%M:%S} UTC" in caplog.text
        clock.sleep(30)
    # When the ban has ended, Then the next run catches up
    [btc, eth] = ingest(database_url, market, clock, ["BTCUSDT", "ETHUSDT"])
    assert (btc.resume_at, btc.rows_written, eth.rows_written) == (None, 2 * 1440, 2 * 1440)


def test_a_later_ban_outlasts_an_earlier_one(database_url: str) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        record_ban(conn, Ban("https://x", now + 10 * MINUTE, 418, "long"))
        kept = record_ban(conn, Ban("https://x", now + MINUTE, 429, "short"))
        assert kept.until == now + 10 * MINUTE
        assert active_ban(conn, "https://x", now + 5 * MINUTE).message == "long"
        assert active_ban(conn, "https://x", now + 11 * MINUTE) is None


def test_an_overlapping_run_skips_the_symbol_another_run_holds_without_a_request(
    market: RunningExchange, database_url: str
) -> None:
    # Given a run holding BTCUSDT's ingestion lock on its connection
    with psycopg.connect(database_url, autocommit=True) as other, symbol_lock(other, "BTCUSDT"):
        # When another run catches up BTCUSDT and ETHUSDT
        [btc, eth] = ingest(database_url, market, Clock(), ["BTCUSDT", "ETHUSDT"])
    # Then BTCUSDT is skipped without a klines request or an audit row; ETHUSDT is caught up
    assert (btc.skipped, btc.requests, btc.run_id) == (BUSY, 0, None)
    assert eth.rows_written == 2 * 1440
    assert market.stats.requests("/api/v3/klines") == eth.requests
    assert stored(database_url, "BTCUSDT") == []


def test_pricebot_ingest_during_a_ban_exits_saying_when_to_run_again(
    market: RunningExchange, settings_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a ban recorded for the configured exchange
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=7)
    with psycopg.connect(settings_env, autocommit=True) as conn:
        record_ban(conn, Ban(market.url, until, 418, "Way too many requests"))
    monkeypatch.setenv("PRICEBOT_BINANCE_URL", market.url)
    get_settings.cache_clear()
    # When `pricebot ingest` runs, Then it asks nothing and exits 1 saying until when
    done = CliRunner().invoke(app, ["ingest", "--symbols", "BTCUSDT"])
    assert done.exit_code == 1
    assert f"banned this client until {until:%Y-%m-%d %H:%M:%S} UTC" in done.output
    assert "run `pricebot ingest` again after that" in done.output
    assert market.stats.requests() == 0
