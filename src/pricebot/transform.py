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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    """Append ``frame`` (close + feature columns) with one binary COPY; the caller commits."""
    if len(frame) == 0:
        return 0
    rows = feature_rows(symbol, feature_set, frame)
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
        if last is not None:
            frame = frame[frame.index > last]
        if full:
            conn.execute(
                "DELETE FROM features WHERE symbol = %s AND feature_set = %s",
                (symbol, feature_set),
            )
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
    )


def update_features(
    url: str,
    symbols: Iterable[str],
    feature_set: str = "v1",
    full: bool = False,
    on_result: Callable[[TransformResult], None] | None = None,
) -> dict[str, int]:
    """Update the ``features`` table for ``symbols``; returns rows written per symbol.

    Incremental unless ``full`` (then each symbol's rows are deleted and recomputed in the same
    transaction, so readers never see a half-built set). ``on_result`` is called after each
    symbol commits (progress reporting).
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
    names = feature_names(feature_set)
    row = conn.execute(
        "SELECT open_time, close, values FROM features WHERE symbol = %s AND feature_set = %s"
        " ORDER BY open_time DESC LIMIT 1",
        (symbol, feature_set),
    ).fetchone()
    if row is None:
        return None
    values = np.asarray(row[2], dtype=np.float64)
    if values.shape != (len(names),):
        raise pgbinary.CopyLayoutError(
            f"{symbol} feature set {feature_set!r} row holds {values.size} values but this "
            f"pricebot defines {len(names)}; recompute with `pricebot transform --full`."
        )
    return FeatureRow(symbol, feature_set, row[0], float(row[1]), values)
