"""Gaps: minutes the exchange has no candle for. Recorded, never invented.

Gaps are derived from what is stored: within a range, every run of missing open times between
two stored candles is a gap. Recomputing a range replaces the gaps recorded inside it, so a gap
that a later import fills disappears and nothing is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class Gap:
    symbol: str
    start: datetime  # first missing open time
    end: datetime  # last missing open time
    minutes: int


def record_gaps(
    conn: psycopg.Connection,
    symbol: str,
    start: datetime,
    end: datetime,
    run_id: int | None = None,
) -> list[Gap]:
    """Find the gaps between stored candles with open times in [start, end] and record them.

    Runs in the caller's transaction. Returns the gaps found in the range.
    """
    rows = conn.execute(
        """
        WITH ordered AS (
            SELECT open_time, lag(open_time) OVER (ORDER BY open_time) AS previous
            FROM klines WHERE symbol = %(symbol)s AND open_time BETWEEN %(start)s AND %(end)s
        )
        SELECT previous + interval '1 minute', open_time - interval '1 minute',
               (extract(epoch FROM open_time - previous) / 60)::int - 1
        FROM ordered WHERE open_time - previous > interval '1 minute' ORDER BY open_time
        """,
        {"symbol": symbol, "start": start, "end": end},
    ).fetchall()
    conn.execute(
        "DELETE FROM gaps WHERE symbol = %s AND gap_start >= %s AND gap_end <= %s",
        (symbol, start, end),
    )
    gaps = [Gap(symbol, gap_start, gap_end, minutes) for gap_start, gap_end, minutes in rows]
    if gaps:
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO gaps (symbol, gap_start, gap_end, minutes, run_id)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (symbol, gap_start) DO UPDATE
                   SET gap_end = excluded.gap_end, minutes = excluded.minutes,
                       run_id = excluded.run_id, detected_at = now()""",
                [(g.symbol, g.start, g.end, g.minutes, run_id) for g in gaps],
            )
    return gaps


def list_gaps(
    conn: psycopg.Connection,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Gap]:
    rows = conn.execute(
        """SELECT symbol, gap_start, gap_end, minutes FROM gaps
           WHERE symbol = %s AND (%s::timestamptz IS NULL OR gap_end >= %s)
             AND (%s::timestamptz IS NULL OR gap_start <= %s)
           ORDER BY gap_start""",
        (symbol, start, start, end, end),
    ).fetchall()
    return [Gap(*row) for row in rows]
