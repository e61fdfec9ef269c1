"""Catch-up ingestion: bring each symbol's 1-minute candles up to the last closed minute.

Per symbol the stored candles are kept as one contiguous block (up to the exchange's own gaps),
so that a run that dies at any point leaves nothing to repair: the next run resumes.

* Forward: from the minute after the newest stored candle (or ``since``, or the configured
  look-back for a symbol never seen) up to the newest closed candle, 1,000 candles a request,
  each request starting just past the last open time received.
* Backfill: when ``since`` is older than the oldest stored candle, the missing older part is
  fetched newest-first, window by window, so an interruption still leaves one block.

Every page is written in one transaction (``insert_klines`` skips candles already stored, so a
rerun never writes a candle twice) together with the gaps it reveals, including the one
between the previously newest candle and the first new one. The candle still open (close time
at or after the exchange's clock or ours) is never stored.

Each run records the market the candles came from (the exchange says so in a header, see
:mod:`pricebot.provenance`) and refuses, before any klines request, a symbol stored from
another class of market. One connection is held through a whole call; on it each symbol's run
holds an advisory lock, so two overlapping runs (a Lambda and a CLI, or a retried invocation)
never fetch the same symbol twice.

No numpy, no pandas: the ingest Lambda imports this and must start fast.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from pricebot.binance import MAX_KLINES_PER_REQUEST, BinanceClient
from pricebot.errors import MalformedKlineError, MalformedPayloadError, UsageError
from pricebot.gaps import record_gaps
from pricebot.klines import MINUTE_MS, insert_klines, parse_kline, to_datetime
from pricebot.provenance import check_compatible
from pricebot.runs import RunStats, close_interrupted_runs, finish_run, start_run
from pricebot.settings import Settings, get_settings

MINUTE = timedelta(minutes=1)

log = logging.getLogger(__name__)

SOURCE = "rest"
BUSY = "another run is catching it up"


@dataclass(frozen=True)
class IngestResult:
    """What one symbol's catch-up did.

    ``start`` is the first open time this run wrote (None when it wrote nothing); ``end`` is
    the newest open time stored for the symbol afterwards (None when there is none), so
    ``now - end`` is how far behind the symbol is.
    """

    symbol: str
    start: datetime | None
    end: datetime | None
    rows_written: int
    pages: int
    retries: int
    gaps: int
    requests: int = 0
    run_id: int | None = None
    market: str | None = None
    skipped: str | None = None  # why the symbol was not caught up (then nothing was asked)


@dataclass(frozen=True)
class PageEvent:
    """Handed to ``on_page`` after each page is committed (progress displays, tests)."""

    symbol: str
    first_open: datetime | None  # None when a backfill window held no candle
    last_open: datetime | None
    rows_received: int
    rows_written: int
    minutes_covered: int  # minutes of the planned range this page accounts for
    minutes_planned: int  # minutes the symbol's run set out to cover
    pages: int


OnPage = Callable[[PageEvent], None]
_Request = tuple[int, int]  # open times [lo, hi] in epoch ms asked for in one klines request


def floor_minute_ms(ms: int) -> int:
    return ms - ms % MINUTE_MS


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC (the CLI's --since 2026-01-01)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def catch_up(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    *,
    since: datetime | None = None,
    settings: Settings | None = None,
    client: BinanceClient | None = None,
    on_page: OnPage | None = None,
) -> list[IngestResult]:
    """Catch up every symbol (in turn) from ``settings.binance_url`` on the connection ``conn``.

    ``conn`` is held through the whole call (autocommit, not inside a transaction: every page is
    its own transaction, the audit rows too). The symbols are checked against the exchange's
    list first, once, so a typo fails before any work with the bad names in the message. The
    first failure stops the run and is raised (its symbol's audit row says 'failed'); symbols
    already done stay done.
    """
    settings = settings or get_settings()
    symbols = [s.upper() for s in dict.fromkeys(symbols)]
    own_client = client is None
    client = client or BinanceClient.from_settings(settings)
    try:
        client.check_symbols(symbols)
        now_ms = exchange_now_ms(client)
        return [
            catch_up_symbol(
                conn, client, symbol, since=since, settings=settings, now_ms=now_ms,
                on_page=on_page,
            )
            for symbol in symbols
        ]  # fmt: skip
    finally:
        if own_client:
            client.close()


def exchange_now_ms(client: BinanceClient) -> int:
    """The earlier of the exchange's clock and ours: a candle closing after it is still open."""
    return min(client.server_time_ms(), int(time.time() * 1000))


def catch_up_symbol(
    conn: psycopg.Connection,
    client: BinanceClient,
    symbol: str,
    *,
    since: datetime | None = None,
    settings: Settings | None = None,
    now_ms: int | None = None,
    on_page: OnPage | None = None,
) -> IngestResult:
    """Catch up one symbol; the unit a Lambda fans out. Audited in ``ingestion_runs``.

    The symbol is assumed valid (``catch_up`` checks the batch); an unknown one still fails
    with :class:`pricebot.errors.SymbolNotListedError` on its first page. While it runs it holds
    the symbol's ingestion lock on ``conn``: a run that finds the lock taken (another run is
    catching the symbol up) makes no request and returns at once, ``skipped`` saying so, so
    overlapping runs never double the request weight.
    """
    settings = settings or get_settings()
    _check_connection(conn)
    now_ms = exchange_now_ms(client) if now_ms is None else now_ms
    with symbol_lock(conn, symbol) as held:
        if not held:
            log.info("%s: another run is catching it up; skipped", symbol)
            return IngestResult(symbol=symbol, start=None, end=None, rows_written=0, pages=0,
                                retries=0, gaps=0, skipped=BUSY)  # fmt: skip
        close_interrupted_runs(conn, symbol, SOURCE)
        if client.market is None:  # known from any answer; a client that asked nothing yet
            client.server_time_ms()
        market = client.market
        stats = start_run(conn, symbol, SOURCE, market)
        retries_before, requests_before = client.retries, client.requests
        job = _SymbolJob(conn, client, symbol, settings, stats, now_ms, on_page)
        try:
            check_compatible(conn, symbol, market)
            job.run(since)
        except BaseException as exc:
            stats.retries = client.retries - retries_before
            stats.range_end = stats.range_end or job.newest_stored
            finish_run(conn, stats, exc)
            raise
        stats.retries = client.retries - retries_before
        finish_run(conn, stats)
    return IngestResult(
        symbol=symbol,
        start=job.first_written,
        end=job.newest_stored,
        rows_written=stats.rows_written,
        pages=stats.pages,
        retries=stats.retries,
        gaps=stats.gaps,
        requests=client.requests - requests_before,
        run_id=stats.run_id,
        market=market,
    )


@contextmanager
def symbol_lock(conn: psycopg.Connection, symbol: str) -> Iterator[bool]:
    """Try to take the symbol's ingestion lock (a session-level advisory lock) on ``conn``;
    yield whether it was taken, and release it afterwards.

    The lock lives as long as the connection: a run whose process dies frees it with its
    connection, so a crash never blocks the symbol.
    """
    key = f"pricebot.ingest:{symbol}"
    held = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[
        0
    ]
    try:
        yield held
    finally:
        if held and not conn.closed and not conn.broken:
            with suppress(psycopg.Error):  # a dead connection has let it go already
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


def _check_connection(conn: psycopg.Connection) -> None:
    if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise UsageError(
            "ingestion commits every page on its own: pass a connection opened with "
            "autocommit=True (pricebot.db.connect(url, autocommit=True)) and not inside a "
            "transaction"
        )


class _SymbolJob:
    """One symbol's run: plans the ranges, pages through them, writes and audits each page."""

    def __init__(
        self,
        conn: psycopg.Connection,
        client: BinanceClient,
        symbol: str,
        settings: Settings,
        stats: RunStats,
        now_ms: int,
        on_page: OnPage | None,
    ) -> None:
        self.conn, self.client, self.symbol, self.settings = conn, client, symbol, settings
        self.stats, self.now_ms, self.on_page = stats, now_ms, on_page
        # The newest candle that has closed: its close time (open + 59.999 s) is before now.
        self.last_closed_ms = floor_minute_ms(now_ms) - MINUTE_MS
        self.first_written: datetime | None = None
        self.newest_stored: datetime | None = None
        self.minutes_planned = 0
        self._last_written = 0

    def run(self, since: datetime | None) -> None:
        conn = self.conn
        first, last = conn.execute(
            "SELECT min(open_time), max(open_time) FROM klines WHERE symbol = %s",
            (self.symbol,),
        ).fetchone()
        self.newest_stored = last
        since_ms = None if since is None else floor_minute_ms(_ms(as_utc(since)))
        backfill_from: int | None = None
        if last is None:
            lookback_ms = self.settings.lookback_days * 86_400_000
            start_ms = floor_minute_ms(self.now_ms - lookback_ms)
            start_ms = since_ms if since_ms is not None else start_ms
        else:
            start_ms = _ms(last) + MINUTE_MS
            if since_ms is not None and since_ms < _ms(first):
                backfill_from = since_ms
        self.minutes_planned = max(0, (self.last_closed_ms - start_ms) // MINUTE_MS + 1)
        self.stats.range_start = to_datetime(start_ms)
        if backfill_from is not None:
            self.minutes_planned += (_ms(first) - backfill_from) // MINUTE_MS
            self.stats.range_start = to_datetime(backfill_from)
            self._backfill(conn, backfill_from, first)
        self._forward(conn, start_ms, last)
        self.stats.range_end = to_datetime(self.last_closed_ms)
        if self.stats.range_start > self.stats.range_end:
            self.stats.range_start = self.stats.range_end = None  # nothing was due

    def _forward(self, conn: psycopg.Connection, start_ms: int, previous: datetime | None) -> None:
        """Page forward from ``start_ms``; ``previous`` is the newest candle stored before it."""

        def following(request: _Request, raw: list[list]) -> _Request | None:
            if len(raw) < MAX_KLINES_PER_REQUEST:
                return None  # nothing more up to the last closed minute
            cursor = int(raw[-1][0]) + MINUTE_MS
            return (cursor, self.last_closed_ms) if cursor <= self.last_closed_ms else None

        if start_ms > self.last_closed_ms:
            return
        with closing(self._pages((start_ms, self.last_closed_ms), following)) as pages:
            for (lo, hi), raw in pages:
                rows = self._parse(raw, lo, hi)
                if not rows:
                    continue
                self._write(conn, rows, previous or rows[0][1], rows[-1][1])
                self._announce(rows, len(raw), (_ms(rows[-1][1]) - lo) // MINUTE_MS + 1)
                previous = rows[-1][1]

    def _backfill(self, conn: psycopg.Connection, since_ms: int, first: datetime) -> None:
        """Fetch [since, first) newest window first, so the stored block stays contiguous."""
        # One probe finds the exchange's earliest candle in range: before a symbol's listing
        # there is nothing to page through, and asking window by window would cost a request
        # per 1,000 empty minutes on every run.
        probe = self.client.klines(self.symbol, since_ms, _ms(first) - MINUTE_MS, limit=1)
        if not probe:
            return
        floor_ms = max(since_ms, _ms(self._parse(probe, since_ms, _ms(first))[0][1]))

        def window(hi: int) -> _Request | None:
            lo = max(floor_ms, hi - (MAX_KLINES_PER_REQUEST - 1) * MINUTE_MS)
            return (lo, hi) if hi >= floor_ms else None

        first_window = window(_ms(first) - MINUTE_MS)
        if first_window is None:
            return
        upper = first  # the oldest stored candle above the window being written
        following = lambda request, raw: window(request[0] - MINUTE_MS)  # noqa: E731
        with closing(self._pages(first_window, following)) as pages:
            for (lo, hi), raw in pages:
                rows = self._parse(raw, lo, hi)
                if rows:
                    self._write(conn, rows, rows[0][1], upper)
                    upper = rows[0][1]
                self._announce(rows, len(raw), (hi - lo) // MINUTE_MS + 1)

    def _pages(
        self, first: _Request, following: Callable[[_Request, list[list]], _Request | None]
    ) -> Iterator[tuple[_Request, list[list]]]:
        """Pages as received, the next one requested while the caller validates and writes this.

        Only the HTTP request and JSON decoding run in the worker thread, so the exchange
        prepares the next page while this one is written; the requests made are exactly those
        a sequential loop would make. Validation stays in the caller's thread, in page order:
        parsing there too would make every database round trip wait for the interpreter lock.
        """
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="klines-fetch")
        request: _Request | None = first
        future: Future | None = pool.submit(self._fetch, first)
        try:
            while future is not None and request is not None:
                raw = future.result()
                upcoming = _next_or_none(following, request, raw)
                future = pool.submit(self._fetch, upcoming) if upcoming else None
                yield request, raw
                request = upcoming
        finally:
            # On failure (or Ctrl-C) do not wait for a prefetch that may be sitting out a
            # Retry-After: its page would be thrown away anyway.
            pool.shutdown(wait=future is None, cancel_futures=True)

    def _fetch(self, request: _Request) -> list[list]:
        return self.client.klines(self.symbol, *request)

    def _parse(self, raw: list[list], start_ms: int, end_ms: int) -> list[tuple]:
        """Validate a whole page before any of it is written; keep only closed candles."""
        rows = []
        previous_ms = start_ms - MINUTE_MS
        for item in raw:
            try:
                row = parse_kline(item, self.symbol, SOURCE)
            except MalformedKlineError as exc:
                raise MalformedPayloadError(
                    f"Malformed kline for {self.symbol} at {_row_time(item)} in the page from "
                    f"{to_datetime(start_ms).isoformat()} ({self.client.base_url}): {exc}. "
                    "Nothing from this page was written (earlier pages are kept); run again to "
                    "retry, and if it persists check that PRICEBOT_BINANCE_URL is Binance."
                ) from exc
            open_ms = int(item[0])
            if open_ms <= previous_ms:
                raise MalformedPayloadError(
                    f"{self.symbol} {row[1].isoformat()}: open_time out of order or repeated "
                    f"in the page from {to_datetime(start_ms).isoformat()} (after "
                    f"{to_datetime(previous_ms).isoformat()}); nothing from this page was written."
                )
            previous_ms = open_ms
            if open_ms > end_ms or int(item[6]) >= self.now_ms:
                continue  # still open (or beyond what we asked for)
            rows.append(row)
        return rows

    def _write(
        self, conn: psycopg.Connection, rows: list[tuple], gap_from: datetime, gap_to: datetime
    ) -> None:
        """One page, one transaction: the candles and the gaps they reveal.

        Pages never overlap stored candles (the stored block only grows at its ends), so a page
        without a missing minute can hold no recorded gap either: the gap bookkeeping runs only
        for pages with a hole, which saves two round trips on almost every page.
        """
        if _has_hole(rows, gap_from, gap_to):
            with conn.transaction():
                written = insert_klines(conn, rows, market=self.stats.market)
                gaps = record_gaps(conn, self.symbol, gap_from, gap_to, self.stats.run_id)
        else:
            written, gaps = insert_klines(conn, rows, market=self.stats.market), []  # own tx
        self.stats.rows_written += written
        self.stats.pages += 1
        self.stats.gaps += len(gaps)
        first, last = rows[0][1], rows[-1][1]
        if written and (self.first_written is None or first < self.first_written):
            self.first_written = first
        if self.newest_stored is None or last > self.newest_stored:
            self.newest_stored = last
        self._last_written = written

    def _announce(self, rows: list[tuple], received: int, covered: int) -> None:
        if self.on_page is None:
            return
        first = rows[0][1] if rows else None
        last = rows[-1][1] if rows else None
        self.on_page(
            PageEvent(
                symbol=self.symbol,
                first_open=first,
                last_open=last,
                rows_received=received,
                rows_written=self._last_written if rows else 0,
                minutes_covered=covered,
                minutes_planned=self.minutes_planned,
                pages=self.stats.pages,
            )
        )


def _has_hole(rows: list[tuple], gap_from: datetime, gap_to: datetime) -> bool:
    """Whether minutes are missing in [gap_from, gap_to], given the page's sorted rows and that
    a stored candle sits at whichever end of the range the page does not reach."""
    minutes = (gap_to - gap_from) // MINUTE + 1
    present = len(rows) + int(rows[0][1] > gap_from) + int(rows[-1][1] < gap_to)
    return present < minutes


def _next_or_none(
    following: Callable[[_Request, list[list]], _Request | None], request: _Request, raw: list
) -> _Request | None:
    """The next request; None when the page is too broken to say (its parse will raise)."""
    try:
        return following(request, raw)
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def _row_time(item: object) -> str:
    """The open time of a (possibly broken) row, for messages."""
    try:
        return to_datetime(int(item[0])).isoformat()  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError, OverflowError, OSError):
        return "an unreadable open time"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
