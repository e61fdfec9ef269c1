"""Bulk import of Binance Vision kline archives (``SYMBOL-1m-YYYY-MM[-DD].zip|.csv``).

A file is loaded in one transaction: its CSV is streamed with COPY into a typed staging table
(PostgreSQL parses the numbers, so a non-number fails with the line and column), checked in one
SQL pass with the rules of :func:`pricebot.klines.parse_kline` plus the file's own label (interval
and date), and moved into ``klines`` by one ``INSERT ... SELECT`` that converts the timestamps
(``ON CONFLICT DO NOTHING`` where the range already holds candles, e.g. from REST). Python
touches bytes in megabyte chunks, never rows: that is what keeps the import near the speed of a
bare COPY. Re-importing a file writes nothing; a bad file writes nothing.

Binance's layouts differ: spot files have no header row, USDT-M futures files have one; spot
timestamps are microseconds from 2025-01-01 on, milliseconds before (and in futures files). Both
are detected per file. A sibling ``<file>.CHECKSUM`` (``<sha256>  <file name>``) is verified
before anything is read into the database.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal

import psycopg

from pricebot.db import connect
from pricebot.errors import (
    ArchiveError,
    ArchiveNameError,
    ChecksumMismatchError,
    DatabaseUnavailableError,
    MalformedArchiveError,
    MislabelledArchiveError,
    TruncatedArchiveError,
)
from pricebot.gaps import record_gaps
from pricebot.klines import _MICROSECOND_THRESHOLD, MINUTE
from pricebot.provenance import BINANCE_VISION, check_compatible, check_market, record_market
from pricebot.runs import RunStats, finish_run, start_run

SOURCE = "archive"
_ATTEMPTS = 3
CHUNK_BYTES = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".csv")
_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]+)-(?P<interval>\d+[smhdwM])-(?P<year>\d{4})-(?P<month>\d{2})"
    r"(?:-(?P<day>\d{2}))?\.(?P<ext>zip|csv)$"
)
_COPY_LINE = re.compile(r"line (\d+)")
_COPY_COLUMN = re.compile(r"column (\w+)")
_US_PER_MINUTE = 60_000_000
_PERIOD_WORD = {"monthly": "month", "daily": "day"}
_STAGING_COLUMNS = (
    ("open_time", "bigint"),
    ("open", "numeric"),
    ("high", "numeric"),
    ("low", "numeric"),
    ("close", "numeric"),
    ("volume", "numeric"),
    ("close_time", "bigint"),
    ("quote_volume", "numeric"),
    ("trades", "bigint"),
    ("taker_buy_base_volume", "numeric"),
    ("taker_buy_quote_volume", "numeric"),
    ("ignore", "text"),
)
_NUMERIC_COLUMNS = [name for name, kind in _STAGING_COLUMNS if kind == "numeric"]


@dataclass(frozen=True)
class ArchiveName:
    """What a Binance Vision file name says: symbol, interval and the period it covers."""

    symbol: str
    interval: str
    period: Literal["monthly", "daily"]
    first_day: date
    extension: str

    @property
    def start(self) -> datetime:
        """The first open time the file may hold."""
        return datetime(self.first_day.year, self.first_day.month, self.first_day.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first open time after the period (exclusive bound)."""
        if self.period == "daily":
            return self.start + timedelta(days=1)
        days = calendar.monthrange(self.first_day.year, self.first_day.month)[1]
        return self.start + timedelta(days=days)

    @property
    def stem(self) -> str:
        suffix = self.first_day.strftime("%Y-%m" if self.period == "monthly" else "%Y-%m-%d")
        return f"{self.symbol}-{self.interval}-{suffix}"


@dataclass
class ImportResult:
    """What importing one file did (also what the CLI's summary table shows)."""

    path: Path
    symbol: str
    rows: int = 0
    rows_new: int = 0
    checksum: Literal["ok", "absent"] = "absent"
    start: datetime | None = None
    end: datetime | None = None
    gaps: int = 0
    gap_minutes: int = 0
    timestamps: Literal["ms", "us"] = "ms"
    header: bool = False
    run_id: int | None = None
    seconds: float = 0.0
    error: ArchiveError | None = field(default=None, repr=False)

    @property
    def rows_skipped(self) -> int:
        """Rows already stored (from an earlier import or from REST) and left as they were."""
        return self.rows - self.rows_new


ProgressCallback = Callable[[int], None]


def parse_archive_name(path: Path | str) -> ArchiveName:
    """Read symbol, interval and period from a Binance Vision kline file name.

    Only 1-minute klines are accepted: the ``klines`` table holds 1m candles and nothing else.
    """
    path = Path(path)
    match = _NAME.match(path.name)
    if not match:
        raise ArchiveNameError(
            path,
            "not a Binance Vision kline file name; expected SYMBOL-1m-YYYY-MM.zip (monthly) or "
            "SYMBOL-1m-YYYY-MM-DD.zip (daily), or the same with .csv, e.g. BTCUSDT-1m-2024-01.zip",
        )
    if match["interval"] != "1m":
        raise ArchiveNameError(
            path,
            f"interval {match['interval']} is not supported: pricebot stores 1-minute candles "
            f"only; download the {match['symbol']}-1m-... file instead",
        )
    try:
        first_day = date(int(match["year"]), int(match["month"]), int(match["day"] or 1))
    except ValueError:
        raise ArchiveNameError(path, "the date in the file name is not a calendar date") from None
    return ArchiveName(
        symbol=match["symbol"],
        interval=match["interval"],
        period="daily" if match["day"] else "monthly",
        first_day=first_day,
        extension=match["ext"],
    )


def find_archives(paths: Iterable[Path | str]) -> list[Path]:
    """Expand directories to the .zip and .csv files under them, in name order.

    Every file is checked for a valid name here, before anything is imported, so that a typo
    in a long list fails at once rather than after an hour of loading.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ARCHIVE_SUFFIXES
            )
        elif path.is_file():
            found.append(path)
        else:
            raise ArchiveError(path, "no such file or directory")
    for path in found:
        parse_archive_name(path)
    return list(dict.fromkeys(found))


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".CHECKSUM")


def verify_checksum(path: Path) -> Literal["ok", "absent"]:
    """Check ``path`` against its sibling ``.CHECKSUM``; raise on a mismatch."""
    sibling = checksum_path(path)
    if not sibling.exists():
        return "absent"
    parts = sibling.read_text(encoding="utf-8", errors="replace").split()
    if not parts or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
        raise ChecksumMismatchError(
            path, f"{sibling.name} is not '<sha256>  <file name>' as Binance publishes it"
        )
    if len(parts) > 1 and Path(parts[1]).name != path.name:
        raise ChecksumMismatchError(path, f"{sibling.name} is for {parts[1]}, not this file")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    if digest.hexdigest() != parts[0].lower():
        raise ChecksumMismatchError(
            path,
            f"SHA-256 {digest.hexdigest()} does not match {sibling.name} ({parts[0].lower()}); "
            "the file is corrupt or incomplete: download it again. Nothing was imported from it.",
        )
    return "ok"


def csv_size(path: Path) -> int:
    """Uncompressed bytes of the CSV (the unit of the progress bar); 0 if unreadable."""
    if path.suffix.lower() == ".csv":
        return path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return 0


@contextmanager
def _open_csv(path: Path, name: ArchiveName) -> Iterator[BinaryIO]:
    """The CSV as a byte stream: the file itself, or the single member of the zip, unpacked
    as it is read."""
    if name.extension == "csv":
        with path.open("rb") as handle:
            yield handle
        return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise TruncatedArchiveError(
            path, f"not a readable zip archive ({exc}); the download was probably cut off: "
            "download it again",
        ) from None  # fmt: skip
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) != 1 or not members[0].filename.lower().endswith(".csv"):
            raise MalformedArchiveError(
                path,
                f"a Binance Vision zip holds exactly one CSV, this one holds "
                f"{[m.filename for m in members]}",
            )
        member = members[0]
        if Path(member.filename).stem != name.stem:
            raise MislabelledArchiveError(
                path, f"the zip is named {name.stem} but holds {member.filename}"
            )
        try:
            stream = archive.open(member)
        except (zipfile.BadZipFile, zlib.error, OSError) as exc:
            raise TruncatedArchiveError(
                path, f"the zip's entry is damaged ({exc}); download it again"
            ) from None
        with stream:
            yield stream


@dataclass
class _Sniffed:
    header: bool
    microseconds: bool
    ends_with_newline: bool = True


def _stream_chunks(
    stream: BinaryIO, path: Path, sniffed: _Sniffed, on_bytes: ProgressCallback | None
) -> Iterator[bytes]:
    """Yield the CSV in large chunks, sniffing the header and timestamp unit from the first one.

    Decompression errors surface here (a corrupt zip member) and become a clear error.
    """
    first = True
    last = b""
    while True:
        try:
            chunk = stream.read(CHUNK_BYTES)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise TruncatedArchiveError(
                path, f"the zip's data is damaged ({exc}); download it again"
            ) from None
        if not chunk:
            break
        if on_bytes is not None:
            on_bytes(len(chunk))
        last = chunk
        if first:
            first = False
            chunk = _sniff(chunk, sniffed)
        yield chunk
    sniffed.ends_with_newline = last.endswith(b"\n")


def _sniff(chunk: bytes, sniffed: _Sniffed) -> bytes:
    """Note the header row and timestamp unit; return the chunk without the header row."""
    chunk = chunk.removeprefix(b"\xef\xbb\xbf")
    sniffed.header = not chunk[:1].isdigit()
    if sniffed.header:
        chunk = chunk.partition(b"\n")[2]
    first_field = chunk[:40].split(b",", 1)[0].strip()
    if first_field.isdigit():
        sniffed.microseconds = int(first_field) >= _MICROSECOND_THRESHOLD
    return chunk


def import_archives(
    url: str,
    paths: Sequence[Path],
    *,
    market: str = BINANCE_VISION,
    jobs: int = 1,
    on_bytes: ProgressCallback | None = None,
    on_result: Callable[[ImportResult], None] | None = None,
    stop_on_error: bool = False,
) -> list[ImportResult]:
    """Import each file in its own transaction; a bad file is reported and skipped.

    ``market`` is where the files' candles came from (:mod:`pricebot.provenance`): Binance
    Vision unless they were downloaded from a simulated exchange. A symbol stored from another
    class of market is refused before any file is read
    (:class:`pricebot.errors.MixedMarketsError`).

    Results come back in the order of ``paths``. Failed files carry their
    :class:`ArchiveError` in ``ImportResult.error`` (or the first one is raised with
    ``stop_on_error``). A database that cannot be reached raises at once. With ``jobs > 1``
    files load concurrently on that many connections: the server parses and indexes one file
    per core. Each worker holds one connection for all its files (their loads and audit rows);
    only when that connection breaks is another opened, to record the failure. Callbacks are
    serialised, so they need no locking of their own.
    """
    paths = [Path(path) for path in paths]
    check_market(market)
    symbols = list(dict.fromkeys(parse_archive_name(path).symbol for path in paths))
    lock = threading.Lock()

    def report(result: ImportResult) -> ImportResult:
        if on_result is not None:
            with lock:
                on_result(result)
        return result

    def count_bytes(size: int) -> None:
        if on_bytes is not None:
            with lock:
                on_bytes(size)

    def record_elsewhere(stats: RunStats, error: BaseException) -> None:
        """The session broke mid-file: say so on a new connection, if the database is back."""
        with suppress(DatabaseUnavailableError, psycopg.Error), connect(url) as conn:
            finish_run(conn, stats, error)

    def attempt(conn: psycopg.Connection, path: Path) -> ImportResult:
        return report(_attempt(conn, path, market, count_bytes, stop_on_error, record_elsewhere))

    first = _session(url)
    try:
        for symbol in symbols:  # a usage error: refuse the whole list before loading any
            check_compatible(first, symbol, market)
        if jobs <= 1 or len(paths) <= 1:
            return [attempt(first, path) for path in paths]
        local = threading.local()
        sessions: list[psycopg.Connection] = []

        def work(path: Path) -> ImportResult:
            if not hasattr(local, "conn"):
                with lock:  # the first worker reuses the connection that checked the market
                    local.conn = _session(url) if sessions else first
                    sessions.append(local.conn)
            return attempt(local.conn, path)

        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="archive-import")
        try:
            return list(pool.map(work, paths))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for conn in sessions:
                if conn is not first:
                    conn.close()
    finally:
        first.close()


def _session(url: str) -> psycopg.Connection:
    """One worker's connection: autocommit, so that each file's transaction and each audit row
    commit on their own."""
    conn = connect(url, autocommit=True)
    # Staging rows stay in memory: a month is ~10 MB of temp table.
    conn.execute("SET temp_buffers = '256MB'")
    return conn


def _attempt(
    conn: psycopg.Connection,
    path: Path,
    market: str,
    on_bytes: ProgressCallback,
    stop_on_error: bool,
    record_elsewhere: Callable[[RunStats, BaseException], None],
) -> ImportResult:
    """Import one file; an archive's own fault becomes the result's error (or is raised)."""
    try:
        try:
            return _import_file(conn, path, market, on_bytes, record_elsewhere)
        except OSError as exc:
            raise ArchiveError(path, f"cannot read the file: {exc}") from exc
    except ArchiveError as exc:
        if stop_on_error:
            raise
        return ImportResult(path, parse_archive_name(path).symbol, error=exc)


def import_archive(url: str, path: Path | str, *, market: str = BINANCE_VISION) -> ImportResult:
    """Import one file; raises :class:`ArchiveError` if it cannot be imported."""
    return import_archives(url, [Path(path)], market=market, stop_on_error=True)[0]


def _import_file(
    conn: psycopg.Connection,
    path: Path,
    market: str,
    on_bytes: ProgressCallback | None,
    record_elsewhere: Callable[[RunStats, BaseException], None],
) -> ImportResult:
    name = parse_archive_name(path)
    result = ImportResult(path=path, symbol=name.symbol)
    # Every attempt is audited, failed ones too.
    stats = start_run(conn, name.symbol, SOURCE, market)
    result.run_id = stats.run_id
    try:
        result.checksum = verify_checksum(path)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with conn.transaction():
                    _load(conn, path, name, result, on_bytes)
                    # From the minute before the period to the first minute after it: a
                    # stored neighbour there shows minutes missing at the file's edges too.
                    gaps = record_gaps(conn, name.symbol, name.start - MINUTE, name.end,
                                       run_id=stats.run_id)  # fmt: skip
                    record_market(conn, name.symbol, market)
                break
            except psycopg.errors.DeadlockDetected:
                # Two files with the same minutes, loaded at once and not both in time
                # order: PostgreSQL aborted one of them; loading it again resolves it.
                if attempt == _ATTEMPTS:
                    raise
        result.gaps = len(gaps)
        result.gap_minutes = sum(g.minutes for g in gaps)
    except BaseException as exc:
        if conn.broken:
            record_elsewhere(stats, exc)
        else:
            finish_run(conn, stats, error=exc)
        raise
    stats.range_start, stats.range_end = result.start, result.end
    stats.rows_written, stats.pages, stats.gaps = result.rows_new, 1, result.gaps
    result.seconds = stats.duration_s
    finish_run(conn, stats)
    return result


def _load(
    conn: psycopg.Connection,
    path: Path,
    name: ArchiveName,
    result: ImportResult,
    on_bytes: ProgressCallback | None,
) -> None:
    columns = ", ".join(f"{column} {kind} NOT NULL" for column, kind in _STAGING_COLUMNS)
    conn.execute(f"CREATE TEMP TABLE archive_staging ({columns}) ON COMMIT DROP")
    sniffed = _Sniffed(header=False, microseconds=False)
    with _open_csv(path, name) as stream, conn.cursor() as cur:
        chunks = _stream_chunks(stream, path, sniffed, on_bytes)
        try:
            first = next(chunks, b"")
            # Text format: ~20% quicker to parse than csv, and Binance never quotes a field.
            with cur.copy("COPY archive_staging FROM STDIN (FORMAT text, DELIMITER ',')") as copy:
                if first:
                    copy.write(first)
                for chunk in chunks:
                    copy.write(chunk)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise _copy_error(path, exc, sniffed) from None
        result.rows = cur.rowcount
    result.header = sniffed.header
    result.timestamps = "us" if sniffed.microseconds else "ms"
    if result.rows <= 0:
        raise MalformedArchiveError(path, "the file holds no kline rows")
    # Everything is compared in microseconds; a per-file factor normalises millisecond files.
    scale = 1 if sniffed.microseconds else 1000
    params = {
        "scale": scale,
        "period_start": _epoch_us(name.start),
        "period_end": _epoch_us(name.end),
        "minute": _US_PER_MINUTE,
    }
    low, high, bad = conn.execute(
        f"SELECT min(open_time) * %(scale)s, max(open_time) * %(scale)s,"
        f" count(*) FILTER (WHERE NOT ({_VALID})) FROM archive_staging",
        params,
    ).fetchone()
    if bad:
        raise _first_bad_row(conn, path, name, params, sniffed)
    result.start, result.end = _from_epoch_us(low), _from_epoch_us(high)
    result.rows_new = _insert(conn, path, name.symbol, result, sniffed.microseconds)


def _insert(
    conn: psycopg.Connection, path: Path, symbol: str, result: ImportResult, microseconds: bool
) -> int:
    """Move the staged rows into ``klines``; returns how many were new.

    A range stored in full (a re-import) writes nothing and skips the work. When nothing is
    stored yet in the file's range (the usual first import) a plain INSERT is used: it costs
    about two thirds of ``ON CONFLICT`` and turns a minute repeated inside the file into an
    error instead of silently keeping one of the two. If a row turns up meanwhile (a
    concurrent REST run), the savepoint is rolled back and the conflict-safe form runs.
    """
    unit = "microsecond" if microseconds else "millisecond"
    numeric = ", ".join(_NUMERIC_COLUMNS)
    insert = f"""
        INSERT INTO klines (symbol, open_time, close_time, trades, ignore, source, {numeric})
            SELECT %(symbol)s,
                   timestamptz 'epoch' + open_time * interval '1 {unit}',
                   timestamptz 'epoch' + close_time * interval '1 {unit}',
                   trades, ignore, %(source)s, {numeric}
            FROM archive_staging"""
    params = {"symbol": symbol, "source": SOURCE}
    stored = conn.execute(
        "SELECT count(*) FROM klines WHERE symbol = %s AND open_time BETWEEN %s AND %s",
        (symbol, result.start, result.end),
    ).fetchone()[0]
    if stored == (result.end - result.start) // MINUTE + 1:
        # Every minute of the file's range is stored already (a re-import): the rows were
        # checked to be on the minute and inside that range, so none of them can be new.
        return 0
    overlap = stored > 0
    if not overlap:
        try:
            with conn.transaction():
                return conn.execute(insert, params).rowcount
        except psycopg.errors.UniqueViolation:
            repeated = conn.execute(
                "SELECT open_time FROM archive_staging GROUP BY open_time HAVING count(*) > 1 "
                "ORDER BY open_time LIMIT 1"
            ).fetchone()
            if repeated is not None:
                moment = _from_epoch_us(repeated[0] * (1 if microseconds else 1000))
                raise MalformedArchiveError(
                    path,
                    f"open time {moment.isoformat()} ({repeated[0]}) appears more than once; "
                    "an archive holds each minute once: download it again",
                ) from None
    return conn.execute(f"{insert} ON CONFLICT (symbol, open_time) DO NOTHING", params).rowcount


# The rules of pricebot.klines.parse_kline, in microseconds, plus the file's label: each open
# time must fall in the period its name gives. NaN and infinities parse as numeric but are not
# prices (NaN compares greater than every number, so it fails the ordering checks too).
# Prices in order with a finite high and low are finite; the volumes are checked one by one.
_FINITE = " AND ".join(
    ["high < 'Infinity'", "low > '-Infinity'"]
    + [f"{c} < 'Infinity' AND {c} > '-Infinity'" for c in _NUMERIC_COLUMNS[4:]]
)
_ALL_FINITE = " AND ".join(f"{c} < 'Infinity' AND {c} > '-Infinity'" for c in _NUMERIC_COLUMNS)
_VALID = f"""
    open_time * %(scale)s %% %(minute)s = 0
    AND close_time * %(scale)s > open_time * %(scale)s
    AND close_time * %(scale)s < open_time * %(scale)s + %(minute)s
    AND low <= high AND low <= open AND open <= high AND low <= close AND close <= high
    AND trades >= 0
    AND open_time * %(scale)s >= %(period_start)s AND open_time * %(scale)s < %(period_end)s
    AND {_FINITE}
"""


def _first_bad_row(
    conn: psycopg.Connection,
    path: Path,
    name: ArchiveName,
    params: dict[str, int],
    sniffed: _Sniffed,
) -> ArchiveError:
    """Explain the first row that failed the checks (only runs on the error path)."""
    row = conn.execute(
        f"""SELECT ctid, open_time, close_time, open::text, high::text, low::text, close::text,
                   trades, ({_ALL_FINITE}) AS finite
            FROM archive_staging WHERE NOT ({_VALID}) LIMIT 1""",
        params,
    ).fetchone()
    ctid, open_raw, close_raw, open_, high, low, close, trades, finite = row
    line = conn.execute(
        "SELECT count(*) FROM archive_staging WHERE ctid <= %s::tid", (ctid,)
    ).fetchone()[0] + int(sniffed.header)  # fmt: skip
    scale = params["scale"]
    open_us, close_us = open_raw * scale, close_raw * scale
    opened = _from_epoch_us(open_us)
    where = f"line {line} (open time {opened.isoformat()})"
    if not name.start <= opened < name.end:
        named = name.stem.split("-1m-", 1)[1]
        return MislabelledArchiveError(
            path,
            f"{where} lies outside {named}, the {_PERIOD_WORD[name.period]} the file "
            f"name gives ({name.start:%Y-%m-%d %H:%M} to {name.end - MINUTE:%Y-%m-%d %H:%M}); "
            "the file is mislabelled: rename it after its contents or download the right one",
        )
    span_us = close_us - open_us + scale  # close times end 1 ms (or µs) before the next open
    label = _interval_label(span_us)
    if label is not None and label != "1m":
        return MislabelledArchiveError(
            path,
            f"{where}: close time {_from_epoch_us(close_us).isoformat()} ends a {label} candle, "
            f"so these are {label} klines, but the file name says 1m: the file is mislabelled; "
            "import only 1m kline files",
        )
    if open_us % _US_PER_MINUTE:
        return MalformedArchiveError(
            path, f"{where}: the open time is not on a minute (raw value {open_raw})"
        )
    if not open_us < close_us < open_us + _US_PER_MINUTE:
        return MalformedArchiveError(
            path,
            f"{where}: close time {close_raw} does not end the 1m candle opened at {open_raw} "
            "(it must come after the open and before the next minute)",
        )
    if not finite:
        return MalformedArchiveError(path, f"{where}: a price or volume is NaN or infinite")
    if trades < 0:
        return MalformedArchiveError(path, f"{where}: negative trade count {trades}")
    return MalformedArchiveError(
        path,
        f"{where}: prices out of order (open {open_}, high {high}, low {low}, close {close}); "
        "high must be >= open, close >= low",
    )


def _interval_label(span_us: int) -> str | None:
    """Binance's name for a candle of this length ("1s", "15m", "1h", ...), None if none."""
    return _BINANCE_INTERVALS.get(span_us)


_BINANCE_INTERVALS = {
    seconds * 1_000_000: label
    for label, seconds in {
        "1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
        "2h": 7200, "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400,
        "3d": 259200, "1w": 604800,
    }.items()
}  # fmt: skip


def _copy_error(path: Path, exc: psycopg.Error, sniffed: _Sniffed) -> ArchiveError:
    """Turn a COPY parse error into one naming the line and column, and what it means."""
    context = exc.diag.context or ""
    line_match, column_match = _COPY_LINE.search(context), _COPY_COLUMN.search(context)
    # The header row never reaches COPY, so COPY's line numbers start one late in futures files.
    line = f"line {int(line_match[1]) + sniffed.header}" if line_match else "a line"
    column = f" (column {column_match[1]})" if column_match else ""
    problem = exc.diag.message_primary or str(exc)
    if isinstance(exc, psycopg.errors.NotNullViolation):
        problem = f"{exc.diag.column_name} is \\N (no value)"
    if (
        isinstance(exc, psycopg.errors.BadCopyFileFormat)
        and "missing data" in problem
        and not sniffed.ends_with_newline
    ):
        return TruncatedArchiveError(
            path,
            f"{line} stops mid-row ({problem}) at the end of the file: the file was cut off; "
            "download it again. Nothing was imported from it.",
        )
    return MalformedArchiveError(
        path,
        f"{line}{column}: {problem}; a Binance kline row has 12 comma-separated fields "
        "(open time, open, high, low, close, volume, close time, quote volume, trades, taker buy "
        "base, taker buy quote, ignore). Nothing was imported from this file.",
    )


def _epoch_us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))


def _from_epoch_us(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))


def write_archive(
    directory: Path,
    symbol: str,
    first_day: date,
    rows: Iterable[Sequence[object]],
    *,
    period: Literal["monthly", "daily"] = "monthly",
    header: bool = False,
    compress: bool = True,
    checksum: bool = True,
) -> Path:
    """Write rows (the 12 Binance kline fields) as a Binance Vision archive, with its .CHECKSUM.

    The inverse of the import: used to package candles from other sources (the simulated
    exchange, generated data for tests and benchmarks) in the layout the exchange publishes.
    """
    stem = f"{symbol}-1m-{first_day:%Y-%m}" + (f"-{first_day:%d}" if period == "daily" else "")
    lines = [",".join(str(value) for value in row) for row in rows]
    if header:
        lines.insert(0, _FUTURES_HEADER)
    text = ("\n".join(lines) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    if compress:
        path = directory / f"{stem}.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{stem}.csv", text)
    else:
        path = directory / f"{stem}.csv"
        path.write_bytes(text)
    if checksum:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        checksum_path(path).write_text(f"{digest}  {path.name}\n")
    return path


_FUTURES_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore"
)
