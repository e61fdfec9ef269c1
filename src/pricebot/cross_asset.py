"""The reference coins' candles a cross-asset feature update reads (see ``v2x`` in features).

The transform reads a coin's own candles (all of them, the warm-up, or the thin history) and
then, through :func:`reference_candles`, each reference's candles over just the span the rows it
will write can see: from :attr:`pricebot.features.FeatureSet.reference_minutes` before the first
new row to the coin's newest candle, never later (a reference's newer candles are the coin's
future). A coin that is one of its own references reuses its own candles.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import psycopg

from pricebot.candles import empty_frame, load_candles
from pricebot.errors import MissingReferenceError
from pricebot.features import FeatureSet

MINUTE = timedelta(minutes=1)


def reference_candles(
    conn: psycopg.Connection,
    symbol: str,
    definition: FeatureSet,
    candles: pd.DataFrame,
    last: datetime | None,
) -> dict[str, pd.DataFrame]:
    """Each reference's candles for the rows of ``symbol`` after ``last`` (all rows if None).

    ``candles`` are the coin's candles the update read. Raises :class:`MissingReferenceError`
    when a reference has no candles stored at all (rather than writing no rows, silently).
    """
    if not definition.references:
        return {}
    columns = definition.reference_inputs
    if len(candles) == 0:
        return {reference: empty_frame(columns) for reference in definition.references}
    first, newest = candles.index[0].to_pydatetime(), candles.index[-1].to_pydatetime()
    # No row comes before the warm-up, and none at or before last; one minute to spare.
    oldest_row = first + definition.warmup_minutes * MINUTE
    if last is not None:
        oldest_row = max(oldest_row, last + MINUTE)
    start = oldest_row - (definition.reference_minutes + 1) * MINUTE
    found: dict[str, pd.DataFrame] = {}
    for reference in definition.references:
        if reference == symbol:
            found[reference] = candles.loc[:, list(columns)]
            continue
        found[reference] = load_candles(conn, reference, start, newest, columns=columns)
        if len(found[reference]) == 0 and not _has_candles(conn, reference):
            raise MissingReferenceError(
                f"{symbol}'s features read the candles of the reference coin {reference}, and "
                f"none are stored: ingest it (add {reference} to PRICEBOT_SYMBOLS and run "
                "`pricebot ingest`), or choose other references with PRICEBOT_REFERENCE_SYMBOLS."
            )
    return found


def _has_candles(conn: psycopg.Connection, symbol: str) -> bool:
    row = conn.execute("SELECT 1 FROM klines WHERE symbol = %s LIMIT 1", (symbol,)).fetchone()
    return row is not None
