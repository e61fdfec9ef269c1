"""REST catch-up end to end: the simulated exchange over real HTTP into a real PostgreSQL.

The exchange's clock is frozen half-way through a minute so "the candle still open" is a fixed,
known candle; its candles are a pure function of (seed, symbol, minute), so what must be stored
is ``synthetic_klines`` for the range, compared field by field as the exchange's strings.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pricebot.binance import BinanceClient
from pricebot.errors import (
    MalformedPayloadError,
    RestrictedLocationError,
    RetriesExhaustedError,
    SymbolNotListedError,
)
from pricebot.gaps import list_gaps
from pricebot.ingest import IngestResult, PageEvent, catch_up
from pricebot.klines import insert_klines, parse_kline
from pricebot.settings import Settings, get_settings
from pricebot_cli import app
from pricebot_exchange.exchange import ExchangeConfig, RunningExchange, synthetic_klines
from pricebot_local.localdb import LocalPostgres

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)  # mid-minute: the 12:00 candle is still open
MINUTE = timedelta(minutes=1)
LAST_CLOSED = datetime(2026, 3, 2, 11, 59, tzinfo=UTC)
MINUTE_MS = 60_000
SIMULATED = "simulated:market"  # the market the simulated exchange's default mode announces


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def stored(url: str, symbol: str) -> list[list]:
    """The stored candles in the exchange's 12-field shape, prices as the text stored."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT (extract(epoch FROM open_time) * 1000)::bigint, open::text, high::text,
                      low::text, close::text, volume::text,
                      (extract(epoch FROM close_time) * 1000)::bigint, quote_volume::text,
                      trades, taker_buy_base_volume::text, taker_buy_quote_volume::text, ignore
               FROM klines WHERE symbol = %s ORDER BY open_time""",
            (symbol,),
        ).fetchall()
    return [list(row) for row in rows]


def expected(config: ExchangeConfig, symbol: str, start: datetime, end: datetime) -> list[list]:
    """What the exchange has for open times in [start, end] (any history depth: candles are a
    function of the minute, so a deeper history gives the same values)."""
    deep = config.model_copy(update={"history_days": 60.0})
    return synthetic_klines(deep, symbol, ms(start), ms(end))


def audit(url: str, symbol: str) -> list[dict]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT * FROM ingestion_runs WHERE symbol = %s ORDER BY id", (symbol,)
        ).fetchall()


def ingest(url: str, symbols: list[str], **options: object) -> list[IngestResult]:
    """Catch up as the CLI does: one autocommit connection held through the whole call."""
    with psycopg.connect(url, autocommit=True) as conn:
        return catch_up(conn, symbols, **options)


def settings_for(ex: RunningExchange, url: str, **overrides: object) -> Settings:
    values = {
        "database_url": url,
        "binance_url": ex.url,
        "lookback_days": 1,
        "backoff_base_seconds": 0.01,
        "backoff_cap_seconds": 0.05,
        "max_retries": 4,
        "http_timeout_seconds": 5.0,
    }
    return Settings(_env_file=None, **{**values, **overrides})


@pytest.fixture
def market(exchange: Callable[..., RunningExchange]) -> RunningExchange:
    return exchange(now=NOW, history_days=3, symbols=["BTCUSDT", "ETHUSDT"])


# --- the happy paths --------------------------------------------------------------------------


def test_catch_up_stores_exactly_the_exchanges_closed_candles(
    market: RunningExchange, database_url: str
) -> None:
    # Given a new symbol and a one-day look-back
    config = settings_for(market, database_url)
    # When it is caught up
    [result] = ingest(database_url, ["BTCUSDT"], settings=config)
    # Then every closed candle of the last day is stored, exactly as the exchange sent it
    start = LAST_CLOSED.replace(hour=12, minute=0) - timedelta(days=1)
    want = expected(market.config, "BTCUSDT", start, LAST_CLOSED)
    assert stored(database_url, "BTCUSDT") == want
    assert (result.rows_written, result.pages, result.retries) == (len(want), 2, 0)
    assert (result.start, result.end) == (start, LAST_CLOSED)


def test_the_audit_records_the_run(market: RunningExchange, database_url: str) -> None:
    # Given a new symbol, When it is caught up
    ingest(database_url, ["BTCUSDT"], settings=settings_for(market, database_url))
    # Then its audit row says what was done
    [run] = audit(database_url, "BTCUSDT")
    assert run["outcome"] == "success"
    assert run["source"] == "rest"
    assert (run["rows_written"], run["pages"], run["retries"]) == (1440, 2, 0)
    assert run["range_start"] == NOW.replace(second=0) - timedelta(days=1)
    assert run["range_end"] == LAST_CLOSED
    assert run["duration_s"] > 0


def test_the_still_open_candle_is_not_stored(market: RunningExchange, database_url: str) -> None:
    # Given an exchange whose newest candle (12:00) is still open at its clock (12:00:30)
    with BinanceClient(market.url) as client:
        served = client.klines("BTCUSDT", ms(LAST_CLOSED), ms(NOW))
    assert [row[0] for row in served] == [ms(LAST_CLOSED), ms(LAST_CLOSED + MINUTE)]
    assert served[-1][6] >= ms(NOW)
    # When the symbol is caught up
    ingest(database_url, ["BTCUSDT"], settings=settings_for(market, database_url))
    # Then the newest stored candle is the last closed one
    assert stored(database_url, "BTCUSDT")[-1][0] == ms(LAST_CLOSED)


def test_a_rerun_writes_nothing(market: RunningExchange, database_url: str) -> None:
    # Given a symbol already caught up
    config = settings_for(market, database_url)
    ingest(database_url, ["BTCUSDT"], settings=config)
    before = stored(database_url, "BTCUSDT")
    requests_before = market.stats.requests("/api/v3/klines")
    # When it is caught up again at the same moment
    [result] = ingest(database_url, ["BTCUSDT"], settings=config)
    # Then nothing is written, nothing is fetched, and the audit says so
    assert result.rows_written == 0
    assert market.stats.requests("/api/v3/klines") == requests_before
    assert stored(database_url, "BTCUSDT") == before
    assert [r["rows_written"] for r in audit(database_url, "BTCUSDT")] == [1440, 0]


def test_resumes_after_the_newest_stored_candle(market: RunningExchange, database_url: str) -> None:
    # Given a symbol caught up at 12:00:30
    config = settings_for(market, database_url)
    ingest(database_url, ["BTCUSDT"], settings=config)
    # When 90 minutes pass and it is caught up again
    market.config.now = NOW + 90 * MINUTE
    requests_before = market.stats.requests("/api/v3/klines")
    [result] = ingest(database_url, ["BTCUSDT"], settings=config)
    # Then exactly the 90 new closed candles are fetched (one request) and written
    assert result.rows_written == 90
    assert market.stats.requests("/api/v3/klines") - requests_before == 1
    start = NOW.replace(second=0) - timedelta(days=1)
    want = expected(market.config, "BTCUSDT", start, LAST_CLOSED + 90 * MINUTE)
    assert stored(database_url, "BTCUSDT") == want


def test_since_sets_where_a_new_symbol_starts(market: RunningExchange, database_url: str) -> None:
    # Given a new symbol, When it is caught up --since two days ago (past the one-day look-back)
    since = datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    ingest(database_url, ["ETHUSDT"], since=since, settings=settings_for(market, database_url))
    # Then it starts at since
    assert stored(database_url, "ETHUSDT") == expected(market.config, "ETHUSDT", since, LAST_CLOSED)


def test_since_older_than_the_stored_candles_backfills_them(
    market: RunningExchange, database_url: str
) -> None:
    # Given a symbol holding the last day
    config = settings_for(market, database_url)
    ingest(database_url, ["BTCUSDT"], settings=config)
    # When it is caught up --since 30 hours ago
    since = NOW.replace(second=0) - timedelta(hours=30)
    [result] = ingest(database_url, ["BTCUSDT"], since=since, settings=config)
    # Then the six older hours are added and the stored block is the exchange's, whole
    assert result.rows_written == 360
    assert result.start == since
    assert stored(database_url, "BTCUSDT") == expected(market.config, "BTCUSDT", since, LAST_CLOSED)


def test_a_never_seen_symbol_gets_the_configured_look_back(
    market: RunningExchange, database_url: str
) -> None:
    # Given a look-back of two days
    config = settings_for(market, database_url, lookback_days=2)
    # When a new symbol is caught up
    ingest(database_url, ["ETHUSDT"], settings=config)
    # Then its first candle is two days before the exchange's clock
    rows = stored(database_url, "ETHUSDT")
    assert rows[0][0] == ms(NOW.replace(second=0) - timedelta(days=2))
    assert len(rows) == 2 * 1440


def test_several_symbols_are_each_caught_up(market: RunningExchange, database_url: str) -> None:
    # Given two new symbols, When both are caught up
    results = ingest(
        database_url, ["BTCUSDT", "ETHUSDT"], settings=settings_for(market, database_url)
    )
    # Then each has its own candles and its own audit row
    assert [r.symbol for r in results] == ["BTCUSDT", "ETHUSDT"]
    start = NOW.replace(second=0) - timedelta(days=1)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert stored(database_url, symbol) == expected(market.config, symbol, start, LAST_CLOSED)
        assert [r["outcome"] for r in audit(database_url, symbol)] == ["success"]


# --- gaps -------------------------------------------------------------------------------------


def test_minutes_the_exchange_has_no_candle_for_are_recorded_as_gaps(
    market: RunningExchange, database_url: str
) -> None:
    # Given an exchange with a 10-minute outage at 06:00
    outage = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    market.config.missing = [(outage, outage + 10 * MINUTE)]
    # When the symbol is caught up
    [result] = ingest(database_url, ["BTCUSDT"], settings=settings_for(market, database_url))
    # Then the missing minutes are not invented, and the gap is recorded once, exactly
    rows = stored(database_url, "BTCUSDT")
    assert len(rows) == 1440 - 10
    assert ms(outage) not in {row[0] for row in rows}
    assert result.gaps == 1
    with psycopg.connect(database_url) as conn:
        [gap] = list_gaps(conn, "BTCUSDT")
    assert (gap.start, gap.end, gap.minutes) == (outage, outage + 9 * MINUTE, 10)


def test_a_gap_between_the_stored_candles_and_the_new_ones_is_recorded(
    market: RunningExchange, database_url: str
) -> None:
    # Given a symbol caught up at 12:00:30, and an outage from 12:00 to 12:20
    config = settings_for(market, database_url)
    ingest(database_url, ["BTCUSDT"], settings=config)
    start = NOW.replace(second=0)
    market.config.missing = [(start, start + 20 * MINUTE)]
    # When an hour later it is caught up again
    market.config.now = NOW + 60 * MINUTE
    [result] = ingest(database_url, ["BTCUSDT"], settings=config)
    # Then the 20 minutes between the old newest candle and the first new one are a gap
    assert result.rows_written == 40
    with psycopg.connect(database_url) as conn:
        [gap] = list_gaps(conn, "BTCUSDT")
    assert (gap.start, gap.end, gap.minutes) == (start, start + 19 * MINUTE, 20)


def test_pricebot_gaps_lists_the_recorded_gaps(
    market: RunningExchange, settings_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a symbol ingested across two outages
    first, second = datetime(2026, 3, 2, 3, 0, tzinfo=UTC), datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    market.config.missing = [(first, first + 5 * MINUTE), (second, second + 2 * MINUTE)]
    ingest(settings_env, ["BTCUSDT"], settings=settings_for(market, settings_env))
    # When `pricebot gaps` lists them
    done = CliRunner().invoke(app, ["gaps", "--symbol", "btcusdt"])
    # Then both appear with their first and last missing minute and size, and the total
    assert done.exit_code == 0, done.output
    assert "2026-03-02 03:00" in done.output
    assert "2026-03-02 03:04" in done.output
    assert "2026-03-02 09:30" in done.output
    assert "2026-03-02 09:31" in done.output
    assert "2 gaps" in done.output
    # And --since leaves out the earlier one
    later = CliRunner().invoke(app, ["gaps", "--symbol", "BTCUSDT", "--since", "2026-03-02T06:00"])
    assert "03:00" not in later.output
    assert "09:30" in later.output


# --- faults -----------------------------------------------------------------------------------


def test_5xx_storm_still_stores_every_candle_and_counts_the_retries(
    market: RunningExchange, database_url: str
) -> None:
    # Given an exchange failing a third of its requests
    market.config.failure_rate = 0.33
    # When a symbol is caught up
    [result] = ingest(
        database_url, ["BTCUSDT"], settings=settings_for(market, database_url, max_retries=10)
    )
    # Then every candle is stored and the audit counts the retries the client made
    start = NOW.replace(second=0) - timedelta(days=1)
    assert stored(database_url, "BTCUSDT") == expected(market.config, "BTCUSDT", start, LAST_CLOSED)
    failures = sum(market.stats.requests(status=s) for s in (500, 502, 503))
    assert failures > 0
    assert result.retries == audit(database_url, "BTCUSDT")[0]["retries"]
    assert result.retries > 0


def test_429_during_catch_up_is_waited_out(market: RunningExchange, database_url: str) -> None:
    # Given an exchange allowing 24 weight a minute: exchangeInfo (20) + time (1) + one page (2)
    market.config.weight_limit = 24
    market.config.retry_after_seconds = 1
    config = settings_for(market, database_url, weight_limit=100_000)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        __import__("time").sleep(seconds)

    # When a symbol needing two pages is caught up
    with BinanceClient.from_settings(config, sleep=sleep) as client:
        [result] = ingest(database_url, ["BTCUSDT"], settings=config, client=client)
    # Then the second page met a 429, waited exactly its Retry-After, and everything is stored
    assert market.stats.requests("/api/v3/klines", 429) == 1
    assert pauses == [1.0]
    assert result.retries == 1
    assert len(stored(database_url, "BTCUSDT")) == 1440


def test_retries_exhausted_fails_the_run_and_the_audit_says_so(
    market: RunningExchange, database_url: str
) -> None:
    # Given an exchange that starts failing every request once the first page is stored
    config = settings_for(market, database_url, max_retries=2, lookback_days=2)

    def break_exchange(event: PageEvent) -> None:
        market.config.failure_rate = 1.0

    # When a symbol needing three pages is caught up
    with pytest.raises(RetriesExhaustedError, match="failed 3 times"):
        ingest(database_url, ["BTCUSDT"], settings=config, on_page=break_exchange)
    # Then the pages stored before the failure are kept (the next one may have been fetched
    # already: it is fetched while the previous one is written), and the audit says failed
    rows = stored(database_url, "BTCUSDT")
    assert len(rows) in (1000, 2000)
    [run] = audit(database_url, "BTCUSDT")
    assert run["outcome"] == "failed"
    assert run["error"].startswith("RetriesExhaustedError")
    assert (run["rows_written"], run["pages"], run["retries"]) == (len(rows), len(rows) // 1000, 2)


def test_451_stops_with_the_mirror_suggestion(market: RunningExchange, database_url: str) -> None:
    # Given an exchange refusing this location
    market.config.restricted = True
    # When a catch-up is attempted
    with pytest.raises(RestrictedLocationError, match=r"data-api\.binance\.vision"):
        ingest(database_url, ["BTCUSDT"], settings=settings_for(market, database_url))
    # Then nothing was written
    assert stored(database_url, "BTCUSDT") == []


def test_unknown_symbols_are_named_before_any_work(
    market: RunningExchange, database_url: str
) -> None:
    # Given one good and two misspelt symbols
    symbols = ["BTCUSDT", "BTCUSTD", "ETHUSD"]
    # When they are caught up
    with pytest.raises(SymbolNotListedError) as caught:
        ingest(database_url, symbols, settings=settings_for(market, database_url))
    # Then the error names the two bad ones and nothing was fetched or audited
    assert caught.value.symbols == ["BTCUSTD", "ETHUSD"]
    assert "BTCUSTD, ETHUSD" in str(caught.value)
    assert market.stats.requests("/api/v3/klines") == 0
    assert audit(database_url, "BTCUSDT") == []


def test_a_malformed_page_is_not_written_and_earlier_pages_stay(
    market: RunningExchange, database_url: str
) -> None:
    # Given an exchange that starts spoiling a row in every page once the first page is stored
    config = settings_for(market, database_url, lookback_days=2)

    def spoil(event: PageEvent) -> None:
        market.config.malformed_rate = 1.0

    # When a symbol is caught up
    with pytest.raises(MalformedPayloadError) as caught:
        ingest(database_url, ["BTCUSDT"], settings=config, on_page=spoil)
    # Then what is stored is whole pages ending just before the malformed page, exactly as sent
    rows = stored(database_url, "BTCUSDT")
    start = NOW.replace(second=0) - timedelta(days=2)
    assert rows
    assert len(rows) % 1000 == 0
    assert rows == expected(market.config, "BTCUSDT", start, start + (len(rows) - 1) * MINUTE)
    bad_page = (start + len(rows) * MINUTE).isoformat()
    # And the message names the symbol, the page, a time and what to do
    message = str(caught.value)
    assert "Malformed kline for BTCUSDT at 2026-" in message
    assert f"in the page from {bad_page}" in message
    assert "Nothing from this page was written" in message
    assert audit(database_url, "BTCUSDT")[0]["outcome"] == "failed"


def test_a_database_that_goes_away_mid_run_loses_and_doubles_nothing(
    market: RunningExchange, database_url: str
) -> None:
    # Given a catch-up whose database connection is killed after its first page
    config = settings_for(market, database_url, lookback_days=2)
    killed: list[int] = []

    def kill_the_ingest_connection(event: PageEvent) -> None:
        if killed:
            return
        with psycopg.connect(database_url, autocommit=True) as admin:
            killed.extend(
                row[0]
                for row in admin.execute(
                    """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid()"""
                )
            )

    # When it runs, Then it fails with the database's error; its connection gone, its audit row
    # still says running (as when a Lambda is killed at its timeout)
    with pytest.raises(psycopg.OperationalError):
        ingest(database_url, ["BTCUSDT"], settings=config, on_page=kill_the_ingest_connection)
    assert killed
    assert [r["outcome"] for r in audit(database_url, "BTCUSDT")] == ["running"]
    assert len(stored(database_url, "BTCUSDT")) == 1000
    # When it is run again
    [result] = ingest(database_url, ["BTCUSDT"], settings=config)
    # Then it resumed after the first page and the stored candles are the exchange's, once each
    assert result.rows_written == 2 * 1440 - 1000
    start = NOW.replace(second=0) - timedelta(days=2)
    assert stored(database_url, "BTCUSDT") == expected(market.config, "BTCUSDT", start, LAST_CLOSED)
    # And the dead run is now recorded as failed: interrupted
    interrupted, rerun = audit(database_url, "BTCUSDT")
    assert (interrupted["outcome"], rerun["outcome"]) == ("failed", "success")
    assert interrupted["error"].startswith("interrupted: ")


# --- the command line -------------------------------------------------------------------------


def test_pricebot_ingest_end_to_end(
    market: RunningExchange, settings_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the settings pointing at the exchange
    monkeypatch.setenv("PRICEBOT_BINANCE_URL", market.url)
    get_settings.cache_clear()
    # When `pricebot ingest` runs for two symbols since a moment
    done = CliRunner().invoke(
        app, ["ingest", "--symbols", "BTCUSDT,ethusdt", "--since", "2026-03-02T06:00"]
    )
    # Then both are stored from that moment and the summary table shows them
    assert done.exit_code == 0, done.output
    since = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert stored(settings_env, symbol) == expected(market.config, symbol, since, LAST_CLOSED)
        assert symbol in done.output
    assert "360" in done.output  # 6 hours of candles each


def test_pricebot_ingest_with_an_unknown_symbol_exits_with_a_message(
    market: RunningExchange, settings_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRICEBOT_BINANCE_URL", market.url)
    get_settings.cache_clear()
    done = CliRunner().invoke(app, ["ingest", "--symbols", "BTCUSDT,DOGEXYZ"])
    assert done.exit_code == 1
    assert "Unknown symbol DOGEXYZ" in done.output


def test_pricebot_ingest_on_an_unmigrated_database_says_to_upgrade(
    market: RunningExchange, postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database without the schema
    name = f"unmigrated_{os.getpid()}"
    monkeypatch.setenv("PRICEBOT_DATABASE_URL", postgres.create_database(name))
    monkeypatch.setenv("PRICEBOT_BINANCE_URL", market.url)
    get_settings.cache_clear()
    try:
        # When ingest runs
        done = CliRunner().invoke(app, ["ingest", "--symbols", "BTCUSDT"])
    finally:
        get_settings.cache_clear()
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    # Then it exits naming the command that creates the schema
    assert done.exit_code == 1
    assert "pricebot db upgrade" in done.output


def test_pricebot_ingest_rejects_a_bad_since(settings_env: str) -> None:
    done = CliRunner().invoke(app, ["ingest", "--symbols", "BTCUSDT", "--since", "yesterday"])
    assert done.exit_code == 1
    assert "--since 'yesterday' is not a date" in done.output


# --- the property -----------------------------------------------------------------------------


class InjectedFailureError(Exception):
    """A failure injected between pages."""


run_plans = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(min_value=0, max_value=2 * 1440)),  # since, minutes back
        st.integers(min_value=0, max_value=600),  # minutes the clock moves on before the run
        st.one_of(st.none(), st.integers(min_value=1, max_value=3)),  # fail after this page
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=run_plans)
def test_any_mix_of_runs_ends_with_exactly_the_exchanges_candles(
    exchange: Callable[..., RunningExchange], database_url: str, plans: list
) -> None:
    # Given one exchange for all examples and an empty table for each
    market = _property_exchange(exchange)
    market.config.now = NOW
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE klines, gaps, ingestion_runs")
    config = settings_for(market, database_url)
    starts: list[datetime] = []
    sinces: list[datetime] = []
    # When runs with random --since values and clock moves are interrupted after random pages
    for since_back, advance, fail_after in plans:
        market.config.now += advance * MINUTE
        now_minute = market.config.now.replace(second=0)
        since = None if since_back is None else now_minute - since_back * MINUTE
        empty = not stored(database_url, "BTCUSDT")
        if since is not None:
            sinces.append(since)
            starts.append(since)
        elif empty:
            starts.append(now_minute - timedelta(days=1))

        def interrupt(event: PageEvent, fail_after: int | None = fail_after) -> None:
            if fail_after is not None and event.pages >= fail_after:
                raise InjectedFailureError

        with contextlib.suppress(InjectedFailureError):
            ingest(database_url, ["BTCUSDT"], since=since, settings=config, on_page=interrupt)
    # And a last run, uninterrupted, repeats the earliest --since (as a user rerunning would)
    ingest(database_url, ["BTCUSDT"], since=min(sinces, default=None), settings=config)
    # Then the table holds exactly the exchange's candles from the earliest start to the newest
    # closed minute: none lost, none twice
    last_closed = market.config.now.replace(second=0) - MINUTE
    assert stored(database_url, "BTCUSDT") == expected(
        market.config, "BTCUSDT", min(starts), last_closed
    )


_PROPERTY_EXCHANGE: dict[int, RunningExchange] = {}


def _property_exchange(exchange: Callable[..., RunningExchange]) -> RunningExchange:
    """One exchange for all of a property test's examples (the fixture is per test)."""
    key = id(exchange)
    if key not in _PROPERTY_EXCHANGE:
        _PROPERTY_EXCHANGE.clear()
        # Five days of history: every --since (up to two days back) stays served as the clock moves.
        _PROPERTY_EXCHANGE[key] = exchange(now=NOW, history_days=5, symbols=["BTCUSDT"])
    return _PROPERTY_EXCHANGE[key]


# --- the page write ---------------------------------------------------------------------------


def _parsed(config: ExchangeConfig, start: datetime, minutes: int) -> list[tuple]:
    raw = expected(config, "BTCUSDT", start, start + (minutes - 1) * MINUTE)
    return [parse_kline(row, "BTCUSDT", "rest") for row in raw]


def test_insert_klines_skips_stored_candles_and_counts_only_new_ones(database_url: str) -> None:
    # Given 10 stored candles
    rows = _parsed(
        ExchangeConfig(now=NOW, symbols=["BTCUSDT"]), LAST_CLOSED - timedelta(hours=2), 30
    )
    with psycopg.connect(database_url) as conn, conn.transaction():
        assert insert_klines(conn, rows[:10], market=SIMULATED) == 10
    # When a page overlapping them (and repeating a row) is inserted
    with psycopg.connect(database_url) as conn, conn.transaction():
        written = insert_klines(conn, [*rows[5:], rows[20]], market=SIMULATED)
    # Then only the 20 new candles were written, each once
    assert written == 20
    assert [row[0] for row in stored(database_url, "BTCUSDT")] == [ms(r[1]) for r in rows]


def test_insert_klines_takes_several_pages_in_one_transaction(database_url: str) -> None:
    # Given pages that overlap each other, written in one transaction that is then rolled back
    rows = _parsed(
        ExchangeConfig(now=NOW, symbols=["BTCUSDT"]), LAST_CLOSED - timedelta(hours=2), 30
    )
    with psycopg.connect(database_url) as conn:
        counts = [
            insert_klines(conn, rows[:20], market=SIMULATED),
            insert_klines(conn, rows[10:30], market=SIMULATED),
        ]
        conn.rollback()
        # When the same pages are written again and committed
        again = [
            insert_klines(conn, rows[:20], market=SIMULATED),
            insert_klines(conn, rows[10:30], market=SIMULATED),
        ]
        conn.commit()
    # Then each call counted only its new candles, and the rollback left nothing behind
    assert counts == again == [20, 10]
    assert len(stored(database_url, "BTCUSDT")) == 30
