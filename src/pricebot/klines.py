"""The raw candle table: the twelve Binance kline fields, validated and stored as sent.

Both the REST ingestion and the archive import go through :func:`parse_kline` so that a row is
checked the same way whichever door it came in by. Nothing here imports numpy or pandas: the
ingest Lambda uses this module and must start fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import psycopg

from pricebot.errors import MalformedKlineError
from pricebot.provenance import record_market

MINUTE = timedelta(minutes=1)
MINUTE_MS = 60_000
KLINE_COLUMNS = (
    "symbol",
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
    "source",
)
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_DECIMAL = re.compile(rf"^{_NUMBER}$")
_DECIMALS = re.compile(rf"{_NUMBER}(?:\t{_NUMBER}){{7}}")
_DECIMAL_FIELDS = ((1, "open"), (2, "high"), (3, "low"), (4, "close"), (5, "volume"),
                   (7, "quote_volume"), (9, "taker_buy_base_volume"),
                   (10, "taker_buy_quote_volume"))  # fmt: skip
# Binance's archives switched spot timestamps to microseconds on 2025-01-01; anything above this
# (year 2286 in milliseconds) must be microseconds.
_MICROSECOND_THRESHOLD = 10**13


def to_datetime(stamp: int) -> datetime:
    """A Binance timestamp (milliseconds, or microseconds in newer spot archives) in UTC."""
    if stamp >= _MICROSECOND_THRESHOLD:
        return datetime.fromtimestamp(stamp / 1_000_000, UTC)
    return datetime.fromtimestamp(stamp / 1000, UTC)  # tz positional: measurably faster


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_kline(row: Sequence[object], symbol: str, source: str) -> tuple:
    """Validate one 12-field kline and return it as a row of :data:`KLINE_COLUMNS`.

    Prices and volumes stay strings so that ``numeric`` stores exactly the digits sent.
    Raises :class:`MalformedKlineError` naming the field at fault.
    """
    if not isinstance(row, list | tuple) or len(row) < 11:
        raise MalformedKlineError(f"{symbol}: a kline has 12 fields, got {row!r:.200}")
    try:
        open_ms, close_ms, trades = int(row[0]), int(row[6]), int(row[8])
    except (TypeError, ValueError) as exc:
        raise MalformedKlineError(
            f"{symbol}: open time, close time or trades not integers in {row!r:.200}"
        ) from exc
    open_time, close_time = to_datetime(open_ms), to_datetime(close_ms)
    if open_time.second or open_time.microsecond:
        raise MalformedKlineError(f"{symbol}: open time {open_time.isoformat()} is not on a minute")
    if not open_time < close_time < open_time + MINUTE:
        raise MalformedKlineError(
            f"{symbol}: close time {close_time.isoformat()} does not end the 1m candle opened at "
            f"{open_time.isoformat()} (is this a 1m kline?)"
        )
    # One match for all eight (a tab cannot occur inside a number, so each must match alone):
    # this runs for every candle ingested. Strings as Binance sends them take the fast path;
    # anything else (padding, numbers as JSON numbers, garbage) is normalised and checked field
    # by field, which also names the field at fault.
    decimals: Sequence[str] = (row[1], row[2], row[3], row[4], row[5], row[7], row[9], row[10])
    try:
        clean = _DECIMALS.fullmatch("\t".join(decimals)) is not None  # type: ignore[arg-type]
    except TypeError:
        clean = False
    if not clean:
        decimals = [str(row[index]).strip() for index, _ in _DECIMAL_FIELDS]
        for (index, name), text in zip(_DECIMAL_FIELDS, decimals, strict=True):
            if not _DECIMAL.match(text):
                raise MalformedKlineError(
                    f"{symbol} {open_time.isoformat()}: {name}={row[index]!r} is not a number"
                )
    open_, high, low, close, volume, quote, taker_base, taker_quote = decimals
    try:
        lo, hi = Decimal(low), Decimal(high)
        if lo > hi or not lo <= Decimal(open_) <= hi or not lo <= Decimal(close) <= hi:
            raise MalformedKlineError(
                f"{symbol} {open_time.isoformat()}: prices out of order "
                f"(open {open_}, high {high}, low {low}, close {close})"
            )
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise MalformedKlineError(f"{symbol}: bad price in {row!r:.200}") from exc
    if trades < 0:
        raise MalformedKlineError(
            f"{symbol} {open_time.isoformat()}: negative trade count {trades}"
        )
    ignore = str(row[11]) if len(row) > 11 else "0"
    return (symbol, open_time, open_, high, low, close, volume, close_time, quote, trades,
            taker_base, taker_quote, ignore, source)  # fmt: skip


_STAGE = "klines_incoming"
_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE klines INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)


def insert_klines(conn: psycopg.Connection, rows: Iterable[tuple], *, market: str) -> int:
    """Insert parsed rows from ``market``, skipping candles already stored; returns how many
    were new.

    The caller owns the transaction (a page is written whole or not at all); on an autocommit
    connection outside a transaction the call makes its own. The market is recorded with the
    rows (:func:`pricebot.provenance.record_market`), in the same transaction: rows of a
    symbol stored from another class of market raise :class:`pricebot.errors.MixedMarketsError`
    and are not written.

    Rows go in with COPY, which is several times faster than a multi-row VALUES statement
    (whose 14 parameters per row the server must parse) and takes any number of rows. New
    candles, the usual case, are copied straight into ``klines`` (under a savepoint when the
    caller's transaction is open); only if that meets a candle already stored are they copied
    into a session-local staging table and moved with ``INSERT ... SELECT ... ON CONFLICT DO
    NOTHING``, which costs the server about twice as much, so it is not the first try.
    """
    rows = list(rows)
    if not rows:
        return 0
    symbols = list(dict.fromkeys(row[0] for row in rows))
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if idle and conn.autocommit:
        # Our own transaction: no savepoint needed, a conflict just rolls the try back.
        try:
            with conn.transaction():
                _copy(conn, "klines", rows)
                _record(conn, symbols, market)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            with conn.transaction():
                written = _insert_new(conn, rows)
                _record(conn, symbols, market)
                return written
    if idle:
        # Open the caller's implicit transaction, or the savepoint below would commit.
        conn.execute(_CREATE_STAGE)
    with conn.transaction():  # a savepoint: a refused market takes the rows back with it
        try:
            with conn.transaction():  # and one the conflicting COPY rolls back to
                _copy(conn, "klines", rows)
            written = len(rows)
        except psycopg.errors.UniqueViolation:
            written = _insert_new(conn, rows)  # rolled back to the savepoint: some are stored
        _record(conn, symbols, market)
    return written


def _record(conn: psycopg.Connection, symbols: list[str], market: str) -> None:
    for symbol in symbols:
        record_market(conn, symbol, market)


def _insert_new(conn: psycopg.Connection, rows: list[tuple]) -> int:
    """The slower path that skips stored candles: stage, then INSERT ... ON CONFLICT."""
    with conn.cursor() as cur:
        cur.execute(_CREATE_STAGE)
        _copy(conn, _STAGE, rows)
        # One round trip moves the rows and empties the stage (a caller may write several
        # pages in one transaction); the first statement's count is the number of new rows.
        columns = ", ".join(KLINE_COLUMNS)
        cur.execute(
            f"INSERT INTO klines ({columns}) SELECT {columns} FROM {_STAGE} "
            f"ON CONFLICT DO NOTHING; DELETE FROM {_STAGE}"
        )
        return cur.rowcount


def _copy(conn: psycopg.Connection, table: str, rows: list[tuple]) -> None:
    columns = ", ".join(KLINE_COLUMNS)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def last_open_time(conn: psycopg.Connection, symbol: str) -> datetime | None:
    """The open time of the newest stored candle for ``symbol``."""
    row = conn.execute("SELECT max(open_time) FROM klines WHERE symbol = %s", (symbol,)).fetchone()
    return row[0] if row else None


def count_klines(conn: psycopg.Connection, symbol: str | None = None) -> int:
    if symbol is None:
        return conn.execute("SELECT count(*) FROM klines").fetchone()[0]
    return conn.execute("SELECT count(*) FROM klines WHERE symbol = %s", (symbol,)).fetchone()[0]
