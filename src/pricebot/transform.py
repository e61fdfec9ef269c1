"""The ``features`` table: incremental updates from the candles, and fast reads back.

An update reads back only the candles the new rows' windows need, computes with the one
definition in :mod:`pricebot.features`, and writes only rows newer than the last computed one:

- up to an hour of new minutes (the every-minute case): the thin history the feature set
  declares (:class:`pricebot.features.FeatureSet`): the last day of minutes plus the hourly
  samples of the new minutes' phases back over the warm-up, about 2,000 candles for one minute;
- more than that: every candle from :func:`pricebot.features.warmup_minutes` before the last
  computed row on.

Because every emitted feature depends only on that history, the result equals a full recompute
(tests/component/test_transform.py checks it to 1e-9, in steps of random sizes across a gap).

A cross-asset feature set (``v2x``) also reads its reference coins' candles over the span the
new rows can see (:func:`pricebot.cross_asset.reference_candles`), up to the coin's newest.

Candles that arrive *older* than the last computed row (a back-filled gap) are not picked up by
an incremental update: run ``pricebot transform --full`` after a back-fill.

Rows are written with binary COPY, one transaction per symbol, under a per-(symbol, feature set)
advisory lock so that two transforms running at once (the Lambda and a CLI) cannot interleave.
A full recompute writes only the rows that differ from those stored, and reads back only the
UTC days whose digest (table ``feature_digests``: a SHA-256 of the day's rows and an MD5 of the
stored rows' ``xmin``) no longer matches (:func:`replace_features`; docs/features.md).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

from pricebot import pgbinary
from pricebot.candles import (
    empty_frame,
    load_candles,
    load_candles_at,
    open_time_index,
    time_filter,
)
from pricebot.cross_asset import reference_candles
from pricebot.db import connect
from pricebot.features import (
    FeatureSet,
    compute_features,
    feature_names,
    feature_set_definition,
)
from pricebot.klines import last_open_time

MINUTE = timedelta(minutes=1)
#: A full recompute deleting more separate runs of changed rows than this rewrites them all.
_MAX_DELETE_RANGES = 1000
#: timestamptz counts microseconds from this UTC midnight; digests are kept per UTC day.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_DAY = _PG_EPOCH.date()
_DAY_US = 86_400_000_000
_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class FeatureRow:
    """One stored feature row: ``values`` in :func:`pricebot.features.feature_names` order."""

    symbol: str
    feature_set: str
    open_time: datetime
    close: float
    values: np.ndarray

    def as_frame(self) -> pd.DataFrame:
        """The row as the one-row DataFrame a model takes (columns = feature names)."""
        return pd.DataFrame(
            [self.values], columns=feature_names(self.feature_set), dtype=np.float64
        )


@dataclass(frozen=True)
class TransformResult:
    """What one symbol's update did."""

    symbol: str
    feature_set: str
    rows_written: int
    candles_read: int
    full: bool
    newest: datetime | None
    seconds: float
    rows_kept: int = 0  # a full recompute: stored rows found identical and left as they were
    rows_compared: int = 0  # a full recompute: stored rows read back and compared row by row


@dataclass(frozen=True)
class Replacement:
    """What :func:`replace_features` did to one symbol's stored rows.

    ``written`` rows were copied in; ``kept`` recomputed rows were found identical to the
    stored ones and left as they were (unread when their day's digest matched);
    ``compared`` stored rows were read back and compared row by row (days without a matching
    digest). ``kept + written`` is the number of recomputed rows.
    """

    written: int
    kept: int
    compared: int


def last_feature_time(conn: psycopg.Connection, symbol: str, feature_set: str) -> datetime | None:
    """The open time of the newest stored feature row (one backward index probe)."""
    row = conn.execute(
        "SELECT open_time FROM features WHERE symbol = %s AND feature_set = %s"
        " ORDER BY open_time DESC LIMIT 1",
        (symbol, feature_set),
    ).fetchone()
    return row[0] if row else None


def _row_dtype(symbol: str, feature_set: str, width: int) -> np.dtype:
    return pgbinary.row_dtype(
        [
            pgbinary.text_field("symbol", len(symbol.encode())),
            pgbinary.text_field("feature_set", len(feature_set.encode())),
            pgbinary.int8_field("open_time"),
            pgbinary.float8_field("close"),
            pgbinary.float8_array_field("values", width),
        ]
    )


def feature_rows(symbol: str, feature_set: str, frame: pd.DataFrame) -> np.ndarray:
    """Binary COPY rows for ``features(symbol, feature_set, open_time, close, values)``.

    ``frame`` is what :func:`pricebot.features.compute_features` returns (close, then the
    features in order).
    """
    names = feature_names(feature_set)
    if list(frame.columns) != ["close", *names]:
        raise ValueError(
            f"expected columns close + feature_names({feature_set!r}), got {list(frame.columns)}"
        )
    rows = pgbinary.new_rows(
        len(frame),
        _row_dtype(symbol, feature_set, len(names)),
        symbol=symbol.encode(),
        feature_set=feature_set.encode(),
    )
    matrix = frame.to_numpy(dtype=np.float64)  # no copy for compute_features' single block
    rows["open_time"] = pgbinary.to_pg_timestamps(frame.index.as_unit("ns").asi8)
    rows["close"] = matrix[:, 0]
    rows["values"]["value"] = matrix[:, 1:]
    return rows


def write_features(
    conn: psycopg.Connection, symbol: str, feature_set: str, frame: pd.DataFrame
) -> int:
    """Append ``frame`` (close + feature columns) with one binary COPY; the caller commits.

    The digests of the days appended to are deleted (one indexed statement, usually deleting
    nothing: a day's digest goes with its first appended minute), so the next full recompute
    compares those days row by row. Keeping them up to date instead would mean hashing the
    day's stored rows on every minute. (The digests' xmin check would catch the appended rows
    anyway; deleting says so outright, and keeps the table from describing rows it does not.)
    """
    if len(frame) == 0:
        return 0
    rows = feature_rows(symbol, feature_set, frame)
    conn.execute(
        "DELETE FROM feature_digests WHERE symbol = %s AND feature_set = %s AND day >= %s",
        (symbol, feature_set, frame.index[0].tz_convert("UTC").date()),
    )
    pgbinary.copy_in(conn, "features (symbol, feature_set, open_time, close, values)", rows)
    return len(frame)


def thin_history(
    definition: FeatureSet, last: datetime, newest: datetime
) -> tuple[datetime, list[datetime]] | None:
    """What to read when only the minutes in ``(last, newest]`` are new, if less than the warm-up.

    Returns ``(since, moments)``: every candle from ``since`` on (the dense windows of the new
    rows) plus the candles at ``moments`` (their sampled windows), or None when the new minutes
    cover every sampling phase and a plain range read is as small.
    """
    new = round((newest - last) / MINUTE)
    step = definition.sample_step
    if new <= 0 or new >= step:
        return None
    # +1 for the minute return at the oldest end of a dense window, +1 to spare.
    since = last + MINUTE - (definition.dense_minutes + 2) * MINUTE
    samples = definition.warmup_minutes // step + 2
    moments = {
        last + (i - k * step) * MINUTE for i in range(1, new + 1) for k in range(1, samples + 1)
    }
    return since, sorted(m for m in moments if m < since)


def _candles_for_update(
    conn: psycopg.Connection, symbol: str, definition: FeatureSet, last: datetime | None
) -> pd.DataFrame:
    columns = definition.inputs
    if last is None:
        return load_candles(conn, symbol, columns=columns)
    newest = last_open_time(conn, symbol)
    if newest is None or newest <= last:
        return empty_frame(columns)
    thin = thin_history(definition, last, newest)
    if thin is not None:
        return load_candles_at(conn, symbol, thin[0], thin[1], columns=columns)
    # One minute more than the windows need: cheap insurance against an off-by-one.
    start = last - (definition.warmup_minutes + 1) * MINUTE
    return load_candles(conn, symbol, start=start, columns=columns)


def update_symbol(
    conn: psycopg.Connection, symbol: str, feature_set: str = "v1", full: bool = False
) -> TransformResult:
    """Bring one symbol's feature rows up to its newest candle, in one transaction.

    ``conn`` must not be inside a transaction (use ``autocommit=True`` or commit first): the
    update commits on its own, and inside an open transaction it would only be a savepoint
    holding its locks until the caller commits.
    """
    started = time.perf_counter()
    definition = feature_set_definition(feature_set)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(
            "update_symbol commits per symbol; pass a connection that is not inside a "
            "transaction (psycopg.connect(url, autocommit=True), or commit first)."
        )
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"features:{symbol}:{feature_set}",),
        )
        last = None if full else last_feature_time(conn, symbol, feature_set)
        candles = _candles_for_update(conn, symbol, definition, last)
        references = reference_candles(conn, symbol, definition, candles, last)
        since = None if last is None else last + MINUTE
        frame = compute_features(candles, feature_set, references, since=since)
        replacement = Replacement(0, 0, 0)
        if last is not None:
            frame = frame[frame.index > last]
        if full or last is None:
            # Into an empty table too (the first run): the rows are written with their digests,
            # so the next full recompute finds the unchanged days without reading them.
            replacement = replace_features(conn, symbol, feature_set, frame)
            written = replacement.written
        else:
            written = write_features(conn, symbol, feature_set, frame)
    newest = frame.index[-1].to_pydatetime() if len(frame) else last
    return TransformResult(
        symbol=symbol,
        feature_set=feature_set,
        rows_written=written,
        candles_read=len(candles),
        full=full or last is None,
        newest=newest,
        seconds=time.perf_counter() - started,
        rows_kept=replacement.kept,
        rows_compared=replacement.compared,
    )


def replace_features(
    conn: psycopg.Connection, symbol: str, feature_set: str, frame: pd.DataFrame
) -> Replacement:
    """Make the stored rows of ``symbol`` exactly ``frame``, writing only what differs.

    Stored rows identical to the recomputed ones (bit for bit: the computation is deterministic)
    stay where they are; the others are deleted, and the changed and new rows copied in.
    Deleting rows and inserting the same keys again in one transaction makes every insert check
    the unique index against the row it replaces, which costs about twice a copy into an empty
    table, so keeping rows is what makes a recompute cheap. Finding them without reading the
    year back is what the digests are for (table ``feature_digests``, migration 0008): per UTC
    day, a SHA-256 of the day's binary rows and an MD5 of the stored row versions' ``xmin``.
    A day whose recomputed rows hash to its digest, and whose stored rows are still the versions
    the digest was taken of, is left alone unread; only the other days' rows are read back
    (:func:`_compare_days`). So a recompute after a back-fill reads the days whose windows reach
    the filled minutes, and an unchanged year reads the ``(open_time, xmin)`` pairs only
    (12 bytes a row, about a sixth of the CPU of reading the rows). The digests of
    the days written are rewritten; days gone from ``frame`` are deleted with their digests.

    All in the caller's transaction: all or nothing, rows and digests together.
    """
    rows = feature_rows(symbol, feature_set, frame)
    new = _day_spans(rows["open_time"])
    contents = _content_digests(rows, new)
    stored = pgbinary.read_packed(
        conn,
        "FROM features WHERE symbol = %s AND feature_set = %s",
        [symbol, feature_set],
        [("open_time", "open_time", "timestamptz"), ("xmin", "xmin", "xid")],
    )
    old = _day_spans(stored["open_time"])
    stored_xmins = np.ascontiguousarray(stored["xmin"])
    marks = {int(day): _xmins_md5(stored_xmins[a:b]) for day, a, b in zip(*old, strict=True)}
    digests = _stored_digests(conn, symbol, feature_set)
    trusted = {
        int(day)
        for day, a, b in zip(*new, strict=True)
        if (found := digests.get(int(day))) is not None
        and found == (int(b - a), contents[int(day)], marks.get(int(day)))
    }
    new_days, old_days = set(new[0].tolist()), set(old[0].tolist())
    dirty = sorted((new_days & old_days) - trusted)
    gone = sorted(old_days - new_days)

    counts = new[2] - new[1]
    days = new[0].tolist()
    write = np.repeat(np.array([d not in trusted for d in days], dtype=bool), counts)  # to copy
    xmins = np.zeros(len(rows), dtype=">u4")  # the final row versions' xmin, where rewritten
    deletes = _day_ranges(gone)
    compared = 0
    if dirty:
        wanted = set(dirty)
        in_dirty = np.flatnonzero(np.repeat(np.array([d in wanted for d in days], bool), counts))
        comparison = _compare_days(conn, symbol, feature_set, _take(rows, in_dirty), dirty)
        compared = comparison.compared
        write[in_dirty[comparison.kept]] = False
        xmins[in_dirty[comparison.kept]] = comparison.kept_xmins
        deletes += comparison.deletes
    if deletes:
        with conn.cursor() as cur:
            cur.executemany(
                "DELETE FROM features WHERE symbol = %s AND feature_set = %s"
                " AND open_time >= %s AND open_time < %s",
                [(symbol, feature_set, lo, hi) for lo, hi in deletes],
            )
    written = _copy(conn, _take(rows, np.flatnonzero(write)))
    if written:
        first = int(np.argmax(write))
        xmins[write] = _own_xmin(conn, symbol, feature_set, rows["open_time"][first])
    _rewrite_digests(conn, symbol, feature_set, new, contents, xmins, trusted, digests)
    return Replacement(written=written, kept=len(rows) - written, compared=compared)


def _take(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``rows[index]`` for ascending ``index``, as a view when it is one run (indexing copies
    the wide rows one by one: half a second for a year of them)."""
    if len(index) and index[-1] - index[0] + 1 == len(index):
        return rows[index[0] : index[-1] + 1]
    return rows[index]


@dataclass(frozen=True)
class _Comparison:
    """The row-level compare of some days: what stays, what goes, how much was read back."""

    kept: np.ndarray  # indices into the recomputed rows of those days: identical, left stored
    kept_xmins: np.ndarray  # the xmin of each kept row's stored version
    deletes: list[tuple[datetime, datetime]]  # [start, stop) open-time ranges to delete
    compared: int  # stored rows read back and compared


def _compare_days(
    conn: psycopg.Connection, symbol: str, feature_set: str, rows: np.ndarray, days: list[int]
) -> _Comparison:
    """Read the stored rows of ``days`` back and compare them with their recomputed ``rows`` bit
    for bit, in the big-endian layout both share."""
    ranges = _day_ranges(days)
    columns = [("open_time", "open_time", "timestamptz"), ("close", "close", "float8"),
               ("values", "values", "float8[]"), ("xmin", "xmin", "xid")]  # fmt: skip
    try:
        # One ordered index range scan per run (a single query over a join of the ranges is
        # planned as a scan of the whole symbol, or sorted afterwards).
        parts = [
            pgbinary.read_packed(
                conn,
                "FROM features WHERE symbol = %s AND feature_set = %s"
                " AND open_time >= %s AND open_time < %s",
                [symbol, feature_set, lo, hi],
                columns,
                array_length=rows.dtype["values"].shape[0],
            )
            for lo, hi in ranges
        ]
    except pgbinary.CopyLayoutError:  # rows of another width or with NULLs: none can be kept
        return _Comparison(np.zeros(0, np.intp), np.zeros(0, ">u4"), ranges, 0)
    stored = parts[0] if len(parts) == 1 else np.concatenate(parts)
    old_times = stored["open_time"].astype(np.int64)  # ascending, as read_packed returns
    new_times = rows["open_time"].astype(np.int64)
    if len(stored) == len(rows) and np.array_equal(old_times, new_times):
        at, found = np.arange(len(rows)), np.arange(len(rows))  # the usual case: same minutes
        same = _identical(stored, rows)
    else:
        at = np.minimum(np.searchsorted(old_times, new_times), max(len(old_times) - 1, 0))
        found = np.flatnonzero(old_times[at] == new_times) if len(old_times) else at[:0]
        same = _identical(stored[at[found]], rows[found])
    kept = found[same]
    keep_old = np.zeros(len(stored), dtype=bool)
    keep_old[at[kept]] = True
    runs = _runs(~keep_old)
    if len(runs) > _MAX_DELETE_RANGES or (~keep_old).sum() > len(stored) // 2:
        # Mostly different (say a definition changed in place): keeping a few rows would cost
        # more statements than it saves; the days are rewritten whole.
        return _Comparison(np.zeros(0, np.intp), np.zeros(0, ">u4"), ranges, len(stored))
    edges = [index for a, b in runs for index in (a, b - 1)]
    stamps = open_time_index(stored["open_time"][edges]).to_pydatetime()
    deletes = [(stamps[2 * i], stamps[2 * i + 1] + _ONE_US) for i in range(len(runs))]
    return _Comparison(kept, stored["xmin"][at[kept]], deletes, len(stored))


def _day_spans(stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of ascending timestamptz microseconds: each UTC day present, where its rows start and
    stop (PostgreSQL's epoch, 2000-01-01, is a UTC midnight, so days are whole divisions)."""
    days = stamps.astype(np.int64) // _DAY_US
    cuts = np.flatnonzero(days[1:] != days[:-1]) + 1
    starts = np.concatenate([[0], cuts]).astype(np.intp) if len(days) else cuts
    stops = np.concatenate([cuts, [len(days)]]).astype(np.intp) if len(days) else cuts
    return days[starts], starts, stops


def _day_ranges(days: list[int]) -> list[tuple[datetime, datetime]]:
    """Sorted day numbers as [start, stop) time ranges, one per run of consecutive days."""
    if not days:
        return []
    numbers = np.asarray(days, dtype=np.int64)
    cuts = np.flatnonzero(np.diff(numbers) != 1) + 1
    firsts = numbers[np.concatenate([[0], cuts])].tolist()
    lasts = numbers[np.concatenate([cuts - 1, [len(numbers) - 1]])].tolist()
    return [(_day_start(a), _day_start(b + 1)) for a, b in zip(firsts, lasts, strict=True)]


def _day_start(day: int) -> datetime:
    return _PG_EPOCH + timedelta(days=day)


def _content_digests(rows: np.ndarray, spans: tuple[np.ndarray, ...]) -> dict[int, bytes]:
    """SHA-256 of each day's binary COPY rows (about 0.07 s for a year of v1 rows)."""
    body = memoryview(np.ascontiguousarray(rows).view(np.uint8))
    size = rows.dtype.itemsize
    return {
        int(day): hashlib.sha256(body[a * size : b * size]).digest()
        for day, a, b in zip(*spans, strict=True)
    }


def _xmins_md5(xmins: np.ndarray) -> bytes:
    """MD5 of one day's row versions: their xmin, 4 bytes big-endian each, in open-time order."""
    data = np.ascontiguousarray(xmins, dtype=">u4").tobytes()
    return hashlib.md5(data, usedforsecurity=False).digest()  # a change detector, not a seal


def _stored_digests(
    conn: psycopg.Connection, symbol: str, feature_set: str
) -> dict[int, tuple[int, bytes, bytes]]:
    """The stored digests of ``symbol``: day number -> (rows, sha256, xmins_md5)."""
    found = conn.execute(
        "SELECT day, rows, sha256, xmins_md5 FROM feature_digests"
        " WHERE symbol = %s AND feature_set = %s",
        (symbol, feature_set),
    ).fetchall()
    return {(day - _PG_EPOCH_DAY).days: (n, bytes(sha), bytes(md5)) for day, n, sha, md5 in found}


def _own_xmin(conn: psycopg.Connection, symbol: str, feature_set: str, stamp: int) -> int:
    """The xmin PostgreSQL gave the rows just copied (the current transaction's, or its
    savepoint's, id): read off one of them rather than assumed."""
    [(xmin,)] = conn.execute(
        "SELECT xmin::text::bigint FROM features"
        " WHERE symbol = %s AND feature_set = %s AND open_time = %s",
        (symbol, feature_set, open_time_index(np.asarray([stamp]))[0].to_pydatetime()),
    ).fetchall()
    return int(xmin)


def _rewrite_digests(
    conn: psycopg.Connection,
    symbol: str,
    feature_set: str,
    spans: tuple[np.ndarray, np.ndarray, np.ndarray],
    contents: dict[int, bytes],
    xmins: np.ndarray,
    trusted: set[int],
    digests: dict[int, tuple[int, bytes, bytes]],
) -> None:
    """Delete every digest but the trusted ones and store one for every other recomputed day."""
    stale = sorted(set(digests) - trusted)
    if stale:
        conn.execute(
            "DELETE FROM feature_digests WHERE symbol = %s AND feature_set = %s"
            " AND day = ANY(%s::date[])",
            (symbol, feature_set, [_day_start(day).date() for day in stale]),
        )
    fresh = [(int(day), a, b) for day, a, b in zip(*spans, strict=True) if int(day) not in trusted]
    if fresh:
        conn.execute(
            "INSERT INTO feature_digests (symbol, feature_set, day, rows, sha256, xmins_md5)"
            " SELECT %s, %s, * FROM unnest(%s::date[], %s::int4[], %s::bytea[], %s::bytea[])",
            (
                symbol,
                feature_set,
                [_day_start(day).date() for day, _, _ in fresh],
                [int(b - a) for _, a, b in fresh],
                [contents[day] for day, _, _ in fresh],
                [_xmins_md5(xmins[a:b]) for _, a, b in fresh],
            ),
        )


def _identical(stored: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per row: the same close and values, bit for bit, in the big-endian layout both share."""
    close = stored["close"].view(">i8") == rows["close"].view(">i8")
    values = stored["values"]["value"].view(">i8") == rows["values"]["value"].view(">i8")
    return close & values.all(axis=1)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The [start, stop) index ranges where ``mask`` is true."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))  # fmt: skip


def _copy(conn: psycopg.Connection, rows: np.ndarray) -> int:
    if len(rows):
        pgbinary.copy_in(conn, "features (symbol, feature_set, open_time, close, values)", rows)
    return len(rows)


def update_features(
    url: str,
    symbols: Iterable[str],
    feature_set: str = "v1",
    full: bool = False,
    on_result: Callable[[TransformResult], None] | None = None,
) -> dict[str, int]:
    """Update the ``features`` table for ``symbols``; returns rows written per symbol.

    Incremental unless ``full`` (then each symbol's rows are recomputed and replaced by
    :func:`replace_features` in one transaction, so readers never see a half-built set).
    ``on_result`` is called after each symbol commits (progress reporting).
    """
    feature_names(feature_set)  # an unknown feature set fails before any work
    written: dict[str, int] = {}
    with connect(url, autocommit=True) as conn:
        for symbol in symbols:
            result = update_symbol(conn, symbol, feature_set, full=full)
            written[symbol] = result.rows_written
            if on_result is not None:
                on_result(result)
    return written


def load_features(
    conn: psycopg.Connection,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    feature_set: str = "v1",
    every_minutes: int = 1,
) -> pd.DataFrame:
    """Stored feature rows with ``start <= open_time <= end``, oldest first; with
    ``every_minutes`` > 1 only the rows on that grid of whole minutes (filtered by the server:
    a year's replay at one point per 288 minutes reads 1,826 rows, not 525,600).

    Index ``open_time`` (UTC); columns ``close`` then :func:`pricebot.features.feature_names`,
    float64. The rows come packed in one binary value per million rows and are decoded by
    numpy (:func:`pricebot.pgbinary.read_packed`): a year loads in about a second.
    """
    names = feature_names(feature_set)
    where, params = time_filter(start, end)
    if every_minutes > 1:
        where += f" AND (extract(epoch FROM open_time)::bigint / 60) %% {int(every_minutes)} = 0"
    source = f"FROM features WHERE symbol = %s AND feature_set = %s{where}"
    params = [symbol, feature_set, *params]
    columns = [
        ("open_time", "open_time", "timestamptz"),
        ("close", "close", "float8"),
        ("values", "values", "float8[]"),
    ]
    try:
        rows = pgbinary.read_packed(conn, source, params, columns, array_length=len(names))
    except pgbinary.CopyLayoutError as exc:
        stored = conn.execute(
            f"SELECT DISTINCT cardinality(values) {source} LIMIT 3", params
        ).fetchall()
        widths = sorted(row[0] for row in stored)
        problem = (
            f"rows hold {', '.join(map(str, widths))} values but this pricebot defines {len(names)}"
            if widths != [len(names)]
            else f"rows are unreadable ({exc})"
        )
        raise pgbinary.CopyLayoutError(
            f"{symbol} feature set {feature_set!r} {problem}; recompute with "
            "`pricebot transform --full`."
        ) from None
    if len(rows) == 0:
        return empty_frame(["close", *names])
    block = np.empty((len(names) + 1, len(rows)))
    block[0] = rows["close"]
    block[1:] = rows["values"]["value"].T
    return pd.DataFrame(
        block.T, index=open_time_index(rows["open_time"]), columns=["close", *names], copy=False
    )


def latest_features(
    conn: psycopg.Connection, symbol: str, feature_set: str = "v1"
) -> FeatureRow | None:
    """The newest stored row of ``symbol`` (one indexed query), or None if there is none."""
    row = conn.execute(
        "SELECT open_time, close, values FROM features WHERE symbol = %s AND feature_set = %s"
        " ORDER BY open_time DESC LIMIT 1",
        (symbol, feature_set),
    ).fetchone()
    if row is None:
        return None
    return _feature_row(symbol, feature_set, row[0], row[1], row[2])


def latest_features_many(
    conn: psycopg.Connection, symbols: Iterable[str], feature_set: str = "v1"
) -> dict[str, FeatureRow]:
    """The newest stored row of each symbol that has one, in one round trip (an index probe per
    symbol, as :func:`latest_features` does for one): what a batch of predictions reads."""
    rows = conn.execute(
        """SELECT s.symbol, f.open_time, f.close, f.values
           FROM unnest(%s::text[]) AS s(symbol)
           CROSS JOIN LATERAL (
               SELECT open_time, close, values FROM features
               WHERE symbol = s.symbol AND feature_set = %s
               ORDER BY open_time DESC LIMIT 1
           ) f""",
        (list(symbols), feature_set),
    ).fetchall()
    return {row[0]: _feature_row(row[0], feature_set, *row[1:]) for row in rows}


def _feature_row(
    symbol: str, feature_set: str, open_time: datetime, close: object, raw: object
) -> FeatureRow:
    names = feature_names(feature_set)
    values = np.asarray(raw, dtype=np.float64)
    if values.shape != (len(names),):
        raise pgbinary.CopyLayoutError(
            f"{symbol} feature set {feature_set!r} row holds {values.size} values but this "
            f"pricebot defines {len(names)}; recompute with `pricebot transform --full`."
        )
    return FeatureRow(symbol, feature_set, open_time, float(close), values)  # type: ignore[arg-type]
