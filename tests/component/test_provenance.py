"""Provenance end to end: the market of each run and import is recorded, and one symbol's
candles never mix real and simulated markets (the simulated exchange over real HTTP, archives
on disk, the real PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from pricebot import db, provenance
from pricebot.archive import import_archive, import_archives, write_archive
from pricebot.errors import MixedMarketsError
from pricebot.ingest import IngestResult, catch_up
from pricebot.klines import count_klines, insert_klines, parse_kline, to_millis
from pricebot.settings import Settings, get_settings
from pricebot_cli import app
from pricebot_exchange.exchange import RunningExchange, synthetic_klines

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
DAY = date(2026, 2, 27)  # a day of archive, before the exchange's day of history
MINUTE = timedelta(minutes=1)


def ingest(url: str, ex: RunningExchange, symbols: list[str]) -> list[IngestResult]:
    settings = Settings(_env_file=None, database_url=url, binance_url=ex.url, lookback_days=1)
    with psycopg.connect(url, autocommit=True) as conn:
        return catch_up(conn, symbols, settings=settings)


def archive_rows(symbol: str, day: date, minutes: int) -> list[list]:
    """Real-looking rows for an archive: the synthetic market's candles of that day."""
    from pricebot_exchange.exchange import ExchangeConfig

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    config = ExchangeConfig(now=start + timedelta(days=1), history_days=2, symbols=[symbol])
    return synthetic_klines(
        config, symbol, to_millis(start), to_millis(start + (minutes - 1) * MINUTE)
    )


def run_markets(url: str, symbol: str) -> list[tuple[str, str | None, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT source, market, outcome FROM ingestion_runs WHERE symbol = %s ORDER BY id",
            (symbol,),
        ).fetchall()


def markets_of(url: str, symbol: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return provenance.symbol_markets(conn, symbol)


def count(url: str, symbol: str) -> int:
    with psycopg.connect(url) as conn:
        return count_klines(conn, symbol)


@pytest.fixture
def simulated(exchange: Callable[..., RunningExchange]) -> RunningExchange:
    return exchange(now=NOW, history_days=2, symbols=["BTCUSDT", "ETHUSDT"])


# --- recorded -------------------------------------------------------------------------------


def test_the_simulated_exchange_names_its_mode_and_ingest_records_it(
    simulated: RunningExchange, database_url: str
) -> None:
    # Given the simulated exchange in its default mode
    # When a symbol is caught up from it
    [result] = ingest(database_url, simulated, ["BTCUSDT"])
    # Then the run, the result and the symbol's candles all say simulated:market
    assert result.market == "simulated:market"
    assert run_markets(database_url, "BTCUSDT") == [("rest", "simulated:market", "success")]
    assert markets_of(database_url, "BTCUSDT") == {"simulated:market"}


def test_a_server_that_does_not_name_its_market_is_recorded_as_binance(
    exchange: Callable[..., RunningExchange], database_url: str
) -> None:
    # Given an exchange passing for Binance (no market header)
    plain = exchange(now=NOW, history_days=2, symbols=["BTCUSDT"], announce_market=False)
    # When a symbol is caught up from it
    ingest(database_url, plain, ["BTCUSDT"])
    # Then its candles are recorded as Binance's, a real market
    assert run_markets(database_url, "BTCUSDT") == [("rest", "binance", "success")]
    with psycopg.connect(database_url) as conn:
        assert provenance.market_class(provenance.symbol_markets(conn, "BTCUSDT")) == "real"


def test_an_archive_import_is_recorded_as_binance_vision(database_url: str, tmp_path: Path) -> None:
    path = write_archive(tmp_path, "BTCUSDT", DAY, archive_rows("BTCUSDT", DAY, 60), period="daily")

    import_archive(database_url, path)

    assert run_markets(database_url, "BTCUSDT") == [("archive", "binance-vision", "success")]
    assert markets_of(database_url, "BTCUSDT") == {"binance-vision"}


def test_binance_rest_and_binance_vision_share_a_symbol_as_one_real_market(
    exchange: Callable[..., RunningExchange], database_url: str, tmp_path: Path
) -> None:
    # Given a symbol with archive candles, When newer candles come from Binance's REST API
    path = write_archive(tmp_path, "BTCUSDT", DAY, archive_rows("BTCUSDT", DAY, 60), period="daily")
    import_archive(database_url, path)
    plain = exchange(now=NOW, history_days=2, symbols=["BTCUSDT"], announce_market=False)
    [result] = ingest(database_url, plain, ["BTCUSDT"])
    # Then both are stored, and the symbol's candles are real, from both doors
    assert count(database_url, "BTCUSDT") == 60 + result.rows_written > 60
    assert markets_of(database_url, "BTCUSDT") == {"binance", "binance-vision"}
    assert provenance.market_class(markets_of(database_url, "BTCUSDT")) == "real"


def test_a_symbol_without_candles_has_no_market(database_url: str) -> None:
    assert markets_of(database_url, "BTCUSDT") == set()


# --- refused --------------------------------------------------------------------------------


def test_simulated_candles_for_a_symbol_stored_from_binance_are_refused_before_any_request(
    simulated: RunningExchange, database_url: str, tmp_path: Path
) -> None:
    # Given BTCUSDT stored from a Binance Vision archive
    path = write_archive(tmp_path, "BTCUSDT", DAY, archive_rows("BTCUSDT", DAY, 60), period="daily")
    import_archive(database_url, path)
    # When it is caught up from the simulated exchange
    with pytest.raises(MixedMarketsError) as caught:
        ingest(database_url, simulated, ["BTCUSDT"])
    # Then the error names both markets and the fix, no klines were asked for, nothing was
    # written, and the refused run is audited as failed
    message = str(caught.value)
    assert "stored candles came from binance-vision (Binance Vision archives)" in message
    assert "these come from simulated:market (the simulated exchange, market mode)" in message
    assert "Nothing was written" in message
    assert "PRICEBOT_DATABASE_URL" in message
    assert "DELETE FROM klines WHERE symbol = 'BTCUSDT'" in message
    assert simulated.stats.requests("/api/v3/klines") == 0
    assert count(database_url, "BTCUSDT") == 60
    assert run_markets(database_url, "BTCUSDT")[-1] == ("rest", "simulated:market", "failed")
    assert markets_of(database_url, "BTCUSDT") == {"binance-vision"}


def test_archives_for_a_symbol_stored_from_the_simulated_exchange_are_refused_before_reading(
    simulated: RunningExchange, database_url: str, tmp_path: Path
) -> None:
    # Given ETHUSDT caught up from the simulated exchange, and two archive files
    ingest(database_url, simulated, ["ETHUSDT"])
    before = count(database_url, "ETHUSDT")
    eth = write_archive(tmp_path, "ETHUSDT", DAY, archive_rows("ETHUSDT", DAY, 30), period="daily")
    btc = write_archive(tmp_path, "BTCUSDT", DAY, archive_rows("BTCUSDT", DAY, 30), period="daily")
    read: list[int] = []
    # When they are imported
    with pytest.raises(MixedMarketsError, match=r"ETHUSDT: the stored candles came from "
                       r"simulated:market .*these come from binance-vision"):  # fmt: skip
        import_archives(database_url, [btc, eth], on_bytes=read.append)
    # Then no file was read and nothing written, not even for the other symbol
    assert read == []
    assert (count(database_url, "ETHUSDT"), count(database_url, "BTCUSDT")) == (before, 0)


def test_two_simulated_modes_do_not_mix_either(
    exchange: Callable[..., RunningExchange], database_url: str
) -> None:
    # Given BTCUSDT from the simulated market, When a swinging exchange serves it
    ingest(database_url, exchange(now=NOW, history_days=2, symbols=["BTCUSDT"]), ["BTCUSDT"])
    swinging = exchange(now=NOW, history_days=2, symbols=["BTCUSDT"], market="swinging")
    # Then it is refused naming both modes
    with pytest.raises(MixedMarketsError, match=r"simulated:market .*simulated:swinging"):
        ingest(database_url, swinging, ["BTCUSDT"])


def test_deleting_a_symbols_candles_frees_it_for_another_market(
    simulated: RunningExchange, database_url: str, tmp_path: Path
) -> None:
    # Given BTCUSDT from the simulated exchange, then deleted as the refusal's message says
    ingest(database_url, simulated, ["BTCUSDT"])
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM klines WHERE symbol = 'BTCUSDT'")
    # When a Binance Vision archive of it is imported
    path = write_archive(tmp_path, "BTCUSDT", DAY, archive_rows("BTCUSDT", DAY, 60), period="daily")
    result = import_archive(database_url, path)
    # Then it is stored, and its candles are Binance Vision's alone
    assert result.rows_new == 60
    assert markets_of(database_url, "BTCUSDT") == {"binance-vision"}


def test_a_write_racing_another_markets_waits_for_it_and_is_refused(database_url: str) -> None:
    # Given a transaction writing simulated candles of BTCUSDT, not yet committed
    start = datetime(2026, 2, 1, tzinfo=UTC)
    rows = [
        parse_kline([to_millis(start + i * MINUTE), "10.0", "10.5", "9.5", "10.1", "1.0",
                     to_millis(start + (i + 1) * MINUTE) - 1, "10.0", 3, "0.5", "5.0", "0"],
                    "BTCUSDT", "test")
        for i in range(20)
    ]  # fmt: skip
    first = psycopg.connect(database_url)
    insert_klines(first, rows[:10], market="simulated:market")
    outcome: list[BaseException | int] = []

    def write_real() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as second:
                outcome.append(insert_klines(second, rows[10:], market="binance"))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    # When another connection writes real candles of it meanwhile
    writer = threading.Thread(target=write_real)
    writer.start()
    writer.join(timeout=1.0)
    still_waiting = writer.is_alive()
    first.commit()
    first.close()
    writer.join(timeout=30)
    # Then it waited for the first to commit, was refused, and wrote nothing
    assert still_waiting
    [refused] = outcome
    assert isinstance(refused, MixedMarketsError)
    assert count(database_url, "BTCUSDT") == 10
    assert markets_of(database_url, "BTCUSDT") == {"simulated:market"}


def test_the_database_refuses_a_mixed_record_whoever_writes_it(database_url: str) -> None:
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO candle_markets (symbol, class, markets) "
            "VALUES ('BTCUSDT', 'real', ARRAY['binance', 'simulated:market'])"
        )


def test_pricebot_ingest_onto_another_market_exits_with_the_message(
    simulated: RunningExchange, settings_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given BTCUSDT from an archive, and the settings pointing at the simulated exchange
    path = write_archive(tmp_path, "BTCUSDT", DAY, archive_rows("BTCUSDT", DAY, 60), period="daily")
    import_archive(settings_env, path)
    monkeypatch.setenv("PRICEBOT_BINANCE_URL", simulated.url)
    get_settings.cache_clear()
    # When `pricebot ingest` runs
    done = CliRunner().invoke(app, ["ingest", "--symbols", "BTCUSDT"])
    # Then it exits 1 naming both markets
    assert done.exit_code == 1
    assert "binance-vision" in done.output
    assert "simulated:market" in done.output


# --- the migration ------------------------------------------------------------------------------


def test_the_migration_records_existing_candles_by_the_door_they_came_in(
    database_url: str,
) -> None:
    # Given a database at revision 0001 holding REST and archive candles
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.upgrade(database_url, "0001")
    moment = datetime(2026, 2, 1, tzinfo=UTC)
    with psycopg.connect(database_url) as conn:
        for symbol, opened, source in (("BTCUSDT", moment, "rest"),
                                       ("BTCUSDT", moment + MINUTE, "archive"),
                                       ("ETHUSDT", moment, "archive")):  # fmt: skip
            conn.execute(
                "INSERT INTO klines VALUES (%s, %s, 1, 1, 1, 1, 1, %s, 1, 1, 1, 1, '0', %s)",
                (symbol, opened, opened + timedelta(seconds=59.999), source),
            )
    # When it is upgraded
    db.upgrade(database_url)
    # Then each symbol's candles are recorded as real, from the markets of their doors
    assert markets_of(database_url, "BTCUSDT") == {"binance", "binance-vision"}
    assert markets_of(database_url, "ETHUSDT") == {"binance-vision"}
