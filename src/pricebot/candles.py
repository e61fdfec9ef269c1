"""The read side of the ``klines`` table: candles as float pandas frames for computing.

``klines`` keeps prices as exact ``numeric``; computing wants float64. The cast happens in
PostgreSQL and the rows travel packed into one binary value decoded by numpy
(:func:`pricebot.pgbinary.read_packed`), so a year of minutes (about 526k rows) loads without a
Python object, or a libpq call, per row.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import psycopg

from pricebot import pgbinary

CANDLE_COLUMNS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
)


def _check_moment(name: str, moment: datetime | None) -> None:
    if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
        raise ValueError(
            f"{name} must be a timezone-aware datetime (UTC), got {moment!r}; "
            "e.g. datetime(2026, 1, 1, tzinfo=UTC)."
        )


def time_filter(start: datetime | None, end: datetime | None) -> tuple[str, list[datetime]]:
    """SQL conditions for ``start <= open_time <= end`` (either bound optional)."""
    _check_moment("start", start)
    _check_moment("end", end)
    sql, params = "", []
    if start is not None:
        sql += " AND open_time >= %s"
        params.append(start)
    if end is not None:
        sql += " AND open_time <= %s"
        params.append(end)
    return sql, params


def empty_frame(columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
    index = pd.DatetimeIndex([], tz="UTC", name="open_time")
    return pd.DataFrame({c: np.array([], dtype=float) for c in columns}, index=index)


def open_time_index(stamps_us: np.ndarray) -> pd.DatetimeIndex:
    """timestamptz microseconds (since 2000) as a UTC DatetimeIndex named open_time."""
    nanos = pgbinary.from_pg_timestamps(stamps_us)
    return pd.DatetimeIndex(nanos.view("datetime64[ns]"), name="open_time").tz_localize("UTC")


def load_candles(
    conn: psycopg.Connection,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    columns: list[str] | tuple[str, ...] = CANDLE_COLUMNS,
) -> pd.DataFrame:
    """Stored candles of ``symbol`` with ``start <= open_time <= end``, oldest first.

    Index ``open_time`` (UTC); float64 columns ``columns`` (default all of
    :data:`CANDLE_COLUMNS`; asking for fewer saves the numeric-to-float casts). Missing minutes
    are simply absent (no row is invented); an unknown symbol gives an empty frame.
    """
    where, params = time_filter(start, end)
    return _load(conn, symbol, where, params, columns)


def load_candles_at(
    conn: psycopg.Connection,
    symbol: str,
    since: datetime,
    moments: list[datetime],
    columns: list[str] | tuple[str, ...] = CANDLE_COLUMNS,
) -> pd.DataFrame:
    """Candles from ``since`` on, plus the candles at the given earlier open times.

    The incremental transform uses it to read the thin history one new minute needs (see
    :attr:`pricebot.features.FeatureSet.dense_minutes`) instead of every minute of the warm-up.
    """
    _check_moment("since", since)
    where = " AND (open_time >= %s OR open_time = ANY(%s))"
    return _load(conn, symbol, where, [since, moments], columns)


def _load(
    conn: psycopg.Connection,
    symbol: str,
    where: str,
    params: list,
    columns: list[str] | tuple[str, ...],
) -> pd.DataFrame:
    unknown = [c for c in columns if c not in CANDLE_COLUMNS]
    if unknown or not columns:
        raise ValueError(
            f"candle columns {unknown or columns} unknown; choose from {CANDLE_COLUMNS}"
        )
    columns = tuple(columns)
    packed = [("open_time", "open_time", "timestamptz")]
    packed += [(c, f"{c}::float8", "float8") for c in columns]
    rows = pgbinary.read_packed(
        conn, f"FROM klines WHERE symbol = %s{where}", [symbol, *params], packed
    )
    if len(rows) == 0:
        return empty_frame(columns)
    return pd.DataFrame(
        {c: rows[c].astype(np.float64) for c in columns},
        index=open_time_index(rows["open_time"]),
    )
