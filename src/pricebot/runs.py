"""The audit of ingestion runs: one row per symbol per run, REST or archive.

A run row is written in its own transaction before the work starts, so a run that dies still
leaves a trace (outcome 'running' or 'failed') next to the candles it did commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from pricebot.db import connect


@dataclass
class RunStats:
    """What one run did; filled in as it goes and written by :func:`finish_run`."""

    symbol: str
    source: str
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


def start_run(url: str, symbol: str, source: str) -> RunStats:
    """Record that a run started and return its stats holder."""
    stats = RunStats(symbol=symbol, source=source)
    with connect(url, autocommit=True) as conn:
        stats.run_id = conn.execute(
            "INSERT INTO ingestion_runs (symbol, source) VALUES (%s, %s) RETURNING id",
            (symbol, source),
        ).fetchone()[0]
    return stats


def finish_run(url: str, stats: RunStats, error: BaseException | None = None) -> None:
    """Write the outcome; never raises over the original error if the database is gone."""
    try:
        with connect(url, autocommit=True) as conn:
            conn.execute(
                """UPDATE ingestion_runs SET finished_at = now(), range_start = %s, range_end = %s,
                       rows_written = %s, pages = %s, retries = %s, duration_s = %s,
                       outcome = %s, error = %s
                   WHERE id = %s""",
                (stats.range_start, stats.range_end, stats.rows_written, stats.pages,
                 stats.retries, stats.duration_s, "failed" if error else "success",
                 None if error is None else f"{type(error).__name__}: {error}"[:2000],
                 stats.run_id),
            )  # fmt: skip
    except (psycopg.Error, RuntimeError):
        if error is None:
            raise


def recent_runs(conn: psycopg.Connection, limit: int = 20) -> list[tuple]:
    return conn.execute(
        """SELECT id, symbol, source, started_at, range_start, range_end, rows_written, pages,
                  retries, duration_s, outcome, error
           FROM ingestion_runs ORDER BY started_at DESC LIMIT %s""",
        (limit,),
    ).fetchall()
