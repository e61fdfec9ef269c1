"""Market-data faults end to end, bounded in time: the simulated exchange banning for two minutes,
and a hostile set of archives (issue 15's fault suite, market-data part).

Real servers throughout: the simulated exchange over HTTP, the suite's PostgreSQL. The ban's two
minutes pass on driven clocks (the exchange's frozen clock and ours, which the client reads and
sleeps on), not in real time.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from pricebot.archive import csv_size, import_archives, write_archive
from pricebot.binance import BinanceClient
from pricebot.errors import (
    MalformedArchiveError,
    OversizedArchiveError,
    RateLimitBanError,
)
from pricebot.ingest import BANNED, IngestResult, PageEvent, catch_up
from pricebot.klines import to_millis
from pricebot.settings import Settings
from pricebot_exchange.exchange import RunningExchange, synthetic_klines

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
BAN = timedelta(minutes=2)


class Clock:
    """Our clock: the real time at the start, then only what the test or a sleep adds."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def ingest(
    url: str, market: RunningExchange, clock: Clock, **options: object
) -> list[IngestResult]:
    settings = Settings(_env_file=None, database_url=url, binance_url=market.url,
                        lookback_days=2, max_retry_after_seconds=60)  # fmt: skip
    with (
        BinanceClient.from_settings(settings, sleep=clock.sleep, clock=clock.time) as client,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        return catch_up(conn, ["BTCUSDT", "ETHUSDT"], settings=settings, client=client, **options)


def stored(url: str, symbol: str) -> list[list]:
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


def audit(url: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, outcome, split_part(error, ':', 1) FROM ingestion_runs ORDER BY id"
        ).fetchall()


def test_a_two_minute_ban_costs_no_request_until_it_ends_then_the_catch_up_completes(
    exchange: Callable[..., RunningExchange], database_url: str
) -> None:
    # Given the simulated exchange, frozen at NOW, that bans this client for two minutes once the
    # first page of BTCUSDT is stored
    market = exchange(now=NOW, history_days=3, symbols=["BTCUSDT", "ETHUSDT"])
    clock = Clock()
    first_day = NOW.replace(second=0) - timedelta(days=2)

    def ban_after_the_first_page(event: PageEvent) -> None:
        if market.config.banned_until is None:
            market.config.banned_until = NOW + BAN

    # When the catch-up runs into the ban
    [btc, eth] = ingest(database_url, market, clock, on_page=ban_after_the_first_page)
    # Then it stops at the first 418, keeping the pages before it, with the ban's end to resume at
    assert market.stats.requests(status=418) == 1
    assert btc.resume_at == datetime.fromtimestamp(clock.time(), UTC) + BAN
    assert (eth.skipped, eth.resume_at) == (BANNED, btc.resume_at)
    kept = stored(database_url, "BTCUSDT")
    assert len(kept) == btc.rows_written >= 1000
    asked = market.stats.requests()

    # When the schedule keeps firing every 30 s (of both clocks) during the ban
    for _ in range(4):
        market.config.now += timedelta(seconds=30)
        clock.sleep(30)
        if clock.time() >= btc.resume_at.timestamp():
            break
        results = ingest(database_url, market, clock)
        # Then not one request reaches the exchange, and each run says when it resumes
        assert [r.resume_at for r in results] == [btc.resume_at] * 2
        assert market.stats.requests() == asked

    # When the ban is over on both clocks
    market.config.now = NOW + BAN + timedelta(seconds=1)
    clock.now = btc.resume_at.timestamp() + 1
    [btc_after, eth_after] = ingest(database_url, market, clock)
    # Then the catch-up completes: exactly the exchange's closed candles, none lost, none twice
    # (BTCUSDT from its first run's look-back, ETHUSDT, first asked now, from today's)
    last_closed = market.config.now.replace(second=0) - MINUTE
    deep = market.config.model_copy(update={"history_days": 10.0})
    starts = {"BTCUSDT": first_day, "ETHUSDT": last_closed + MINUTE - timedelta(days=2)}
    for symbol, start in starts.items():
        want = synthetic_klines(deep, symbol, to_millis(start), to_millis(last_closed))
        assert stored(database_url, symbol) == want
    assert (btc_after.resume_at, eth_after.resume_at) == (None, None)
    # And the audit shows the run the ban stopped, then the two that completed
    assert audit(database_url) == [
        ("BTCUSDT", "failed", RateLimitBanError.__name__),
        ("BTCUSDT", "success", None),
        ("ETHUSDT", "success", None),
    ]


# --- a hostile archive set ----------------------------------------------------------------------


def good_rows(start: datetime, minutes: int) -> list[list]:
    rows = []
    for i in range(minutes):
        ms = to_millis(start + i * MINUTE)
        rows.append([ms, "100.01", "100.05", "99.99", "100.02", "12.5", ms + 59_999, "1250.1", 7,
                     "6.1", "610.0", "0"])  # fmt: skip
    return rows


def bomb(directory: Path, symbol: str, day: date, rows: int) -> Path:
    """A daily zip of one well-formed row repeated: a few kB packed, far beyond a day unpacked."""
    stem = f"{symbol}-1m-{day:%Y-%m-%d}"
    ms = to_millis(datetime(day.year, day.month, day.day, tzinfo=UTC))
    line = f"{ms},100.01,100.05,99.99,100.02,12.5,{ms + 59_999},1250.1,7,6.1,610.0,0\n".encode()
    path = directory / f"{stem}.zip"
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open(f"{stem}.csv", "w", force_zip64=True) as member,
    ):
        block = line * 10_000
        for _ in range(rows // 10_000):
            member.write(block)
    return path


def overflowing_stamp(directory: Path) -> Path:
    rows = good_rows(datetime(2024, 1, 1, tzinfo=UTC), 5)
    rows[2][0] = "99999999999999999999"  # past bigint
    return write_archive(directory, "DOTUSDT", date(2024, 1, 1), rows)


def test_a_hostile_archive_set_is_refused_file_by_file_with_its_reason_and_nothing_written(
    database_url: str, tmp_path: Path
) -> None:
    # Given one good file and hostile ones, each a different symbol (so "nothing written" shows)
    jan = datetime(2024, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    soon = now + 10 * MINUTE if (now + 10 * MINUTE).month == now.month else now + 3 * MINUTE
    negative = good_rows(jan, 20)
    negative[7][5] = "-12.5"
    short, long_ = good_rows(jan, 10), good_rows(jan, 10)
    short[3] = short[3][:11]
    long_[4] = [*long_[4], "13th"]
    huge = good_rows(jan, 10)
    huge[5][2] = "1e999999999"
    files = {
        "good": write_archive(tmp_path, "BTCUSDT", jan.date(), good_rows(jan, 60)),
        "future month": write_archive(tmp_path, "ETHUSDT", date(2060, 1, 1),
                                      good_rows(datetime(2060, 1, 1, tzinfo=UTC), 10)),
        "future rows": write_archive(tmp_path / "f", "ETHUSDT", soon.date().replace(day=1),
                                     good_rows(soon, 5)),
        "negative volume": write_archive(tmp_path, "ADAUSDT", jan.date(), negative),
        "11 columns": write_archive(tmp_path, "SOLUSDT", jan.date(), short),
        "13 columns": write_archive(tmp_path, "XRPUSDT", jan.date(), long_),
        "1e999999999": write_archive(tmp_path, "LTCUSDT", jan.date(), huge),
        "overflowing stamp": overflowing_stamp(tmp_path),
        "bomb": bomb(tmp_path, "TRXUSDT", jan.date(), 200_000),
    }  # fmt: skip
    read: list[int] = []
    # When they are imported in one batch
    outcome = import_archives(database_url, list(files.values()), on_bytes=read.append)
    results = dict(zip(files, outcome, strict=True))
    # Then the good file is stored, and each hostile one is refused with its reason
    assert results["good"].error is None
    assert results["good"].rows_new == 60
    expected = {
        "future month": (MalformedArchiveError, r"names 2060-01, a month that has not begun"),
        "future rows": (MalformedArchiveError, r"is in the future \(rule not-in-the-future"),
        "negative volume": (MalformedArchiveError, r"line 8 .*negative volume=-12.5"),
        "11 columns": (MalformedArchiveError, r"line 4: missing data for column .*rule fields"),
        "13 columns": (MalformedArchiveError, r"line 5: extra data after last expected column"),
        "1e999999999": (MalformedArchiveError, r"line 6 \(column high\).*rule in-range"),
        "overflowing stamp": (MalformedArchiveError, r"line 3 \(column open_time\).*in-range"),
        "bomb": (OversizedArchiveError, r"bytes unpacked, more than a day can"),
    }
    for label, (kind, pattern) in expected.items():
        error = results[label].error
        assert isinstance(error, kind), f"{label}: {error!r}"
        assert re.search(pattern, str(error)), f"{label}: {error}"
    # And nothing of any hostile file was written; every attempt is audited
    with psycopg.connect(database_url) as conn:
        by_symbol = dict(conn.execute("SELECT symbol, count(*) FROM klines GROUP BY symbol"))
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM ingestion_runs GROUP BY 1"))
    assert by_symbol == {"BTCUSDT": 60}
    assert outcomes == {"success": 1, "failed": len(expected)}
    # And the bomb (a few kB packed, megabytes unpacked) was refused on what its zip says it
    # holds: not one of its bytes was unpacked
    assert files["bomb"].stat().st_size < 64 * 1024 < csv_size(files["bomb"])
    assert sum(read) <= sum(csv_size(p) for label, p in files.items() if label != "bomb")
