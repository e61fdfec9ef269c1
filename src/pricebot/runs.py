"""The audit of ingestion runs: one row per symbol per run, REST or archive.

A run row is committed before the work starts, so a run that dies still leaves a trace next to
the candles it did commit: 'failed' with the error when it could say so, or 'running' when its
process or its database connection went first. The next REST run of the symbol (which holds
the symbol's lock, so no other run of it is alive) marks such rows 'failed' as interrupted.

Every function takes the run's own connection: it must not be inside a transaction, because
each write here is committed on its own, whatever happens to the run's candles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

INTERRUPTED = (
    "interrupted: the run's process or database connection ended before it could record how "
    "it finished (pages committed before that are kept)"
)


@dataclass
class RunStats:
    """What one run did; filled in as it goes and written by :func:`finish_run`."""

    symbol: str
    source: str
    market: str | None = None
    run_id: int | None = None
    range_start: datetime | None = None
    range_end: datetime | None = None
    rows_written: int = 0
    pages: int = 0
    retries: int = 0
    gaps: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started


def start_run(
    conn: psycopg.Connection, symbol: str, source: str, market: str | None = None
) -> RunStats:
    """Record (and commit) that a run started; return its stats holder."""
    stats = RunStats(symbol=symbol, source=source, market=market)
    with conn.transaction():
        stats.run_id = conn.execute(
            "INSERT INTO ingestion_runs (symbol, source, market) VALUES (%s, %s, %s) RETURNING id",
            (symbol, source, market),
        ).fetchone()[0]
    return stats


def finish_run(
    conn: psycopg.Connection, stats: RunStats, error: BaseException | None = None
) -> None:
    """Write the outcome; never raises over the original error if the database is gone."""
    try:
        with conn.transaction():
            conn.execute(
                """UPDATE ingestion_runs SET finished_at = now(), range_start = %s, range_end = %s,
                       rows_written = %s, pages = %s, retries = %s, duration_s = %s,
                       outcome = %s, error = %s, market = coalesce(%s, market)
                   WHERE id = %s""",
                (stats.range_start, stats.range_end, stats.rows_written, stats.pages,
                 stats.retries, stats.duration_s, "failed" if error else "success",
                 None if error is None else f"{type(error).__name__}: {error}"[:2000],
                 stats.market, stats.run_id),
            )  # fmt: skip
    except psycopg.Error:
        if error is None:
            raise


def close_interrupted_runs(conn: psycopg.Connection, symbol: str, source: str) -> int:
    """Mark the symbol's runs still 'running' as failed (interrupted); returns how many.

    Only correct while the caller holds the symbol's ingestion lock: then no other run of it is
    alive, and a 'running' row belongs to a run that died without a word.
    """
    with conn.transaction():
        return conn.execute(
            """UPDATE ingestion_runs SET outcome = 'failed', error = %s, finished_at = now()
               WHERE symbol = %s AND source = %s AND outcome = 'running'""",
            (INTERRUPTED, symbol, source),
        ).rowcount


def recent_runs(conn: psycopg.Connection, limit: int = 20) -> list[tuple]:
    return conn.execute(
        # market last: callers index the earlier columns by position.
        """SELECT id, symbol, source, started_at, range_start, range_end, rows_written, pages,
                  retries, duration_s, outcome, error, market
           FROM ingestion_runs ORDER BY started_at DESC LIMIT %s""",
        (limit,),
    ).fetchall()
