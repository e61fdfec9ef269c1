"""What is in the database, per symbol (the demo's summary and the stack's status show it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pricebot.db import connect


@dataclass(frozen=True)
class SymbolSummary:
    symbol: str
    candles: int
    first: datetime
    last: datetime
    gaps: int
    gap_minutes: int
    feature_rows: int


def data_summary(url: str, feature_set: str = "v1") -> list[SymbolSummary]:
    """One row per symbol with candles: counts, time range, gaps and feature rows."""
    with connect(url) as conn:
        rows = conn.execute(
            """
            SELECT k.symbol, k.n, k.first, k.last,
                   coalesce(g.n, 0), coalesce(g.minutes, 0), coalesce(f.n, 0)
            FROM (SELECT symbol, count(*) AS n, min(open_time) AS first, max(open_time) AS last
                  FROM klines GROUP BY symbol) k
            LEFT JOIN (SELECT symbol, count(*) AS n, sum(minutes) AS minutes
                       FROM gaps GROUP BY symbol) g USING (symbol)
            LEFT JOIN (SELECT symbol, count(*) AS n FROM features
                       WHERE feature_set = %s GROUP BY symbol) f USING (symbol)
            ORDER BY k.symbol
            """,
            (feature_set,),
        ).fetchall()
    return [SymbolSummary(*row) for row in rows]
