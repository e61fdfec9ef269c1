"""Training datasets: stored features joined with labels from the candles, and their lineage.

A row is kept only when it has every feature, a label (its horizon has passed and ends on a
stored candle) and a label window that does not cross a gap longer than
``settings.max_gap_minutes`` (a return across an exchange outage is not a return the model could
have traded). The lineage says exactly which rows went in: symbol, range, row counts, feature
set and target, the market the candles came from (provenance: ``binance``/``binance-vision``
are "real", the simulated exchange "simulated:<mode>"), and a SHA-256 of the index, features
and labels, so two runs on the same data can be recognised and a run can be traced back to the
data it saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

from pricebot.errors import NoFeaturesError, UnknownSymbolError
from pricebot.evaluation import RECENT_MEAN_HORIZONS
from pricebot.labels import label_candles
from pricebot.targets import TargetSpec


@dataclass
class Dataset:
    """Rows ready for walk-forward evaluation, sorted by open time.

    ``past_return`` and ``recent_mean`` are causal inputs for the baselines (the return over the
    last horizon, and the mean of the last few such returns); ``forward_return`` is what holding
    the coin from ``t`` to ``t + H`` returned, used by the pool value whatever the target.
    """

    symbol: str
    spec: TargetSpec
    feature_set: str
    features: pd.DataFrame
    label: pd.Series
    forward_return: pd.Series
    past_return: pd.Series
    recent_mean: pd.Series
    lineage: dict[str, object] = field(default_factory=dict)

    @property
    def times(self) -> pd.DatetimeIndex:
        return self.features.index  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.features)


def data_hash(features: pd.DataFrame, label: pd.Series) -> str:
    """SHA-256 over the index (ns), the feature matrix and the labels, in row order."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(features.index.asi8).tobytes())
    digest.update(",".join(features.columns).encode())
    digest.update(np.ascontiguousarray(features.to_numpy(dtype="float64")).tobytes())
    digest.update(np.ascontiguousarray(label.to_numpy(dtype="float64")).tobytes())
    return digest.hexdigest()


UNRECORDED_MARKET = "unrecorded"


def candle_market(conn: psycopg.Connection, symbol: str) -> str:
    """The market class of ``symbol``'s stored candles ("real", "simulated:<mode>"), as
    :mod:`pricebot.provenance` records it; "unrecorded" for candles stored with no provenance."""
    from pricebot import provenance

    return provenance.market_class(provenance.symbol_markets(conn, symbol))


def dataset_from_frames(
    symbol: str,
    candles: pd.DataFrame,
    features: pd.DataFrame,
    spec: TargetSpec,
    *,
    feature_set: str,
    feature_columns: list[str],
    max_gap_minutes: int,
    start: datetime | None = None,
    end: datetime | None = None,
    market: str | None = None,
) -> Dataset:
    """Join ``features`` (index open_time) with labels computed from ``candles``.

    ``candles`` should reach ``H`` minutes past ``end`` (for the labels) and a few horizons
    before ``start`` (for the baselines' past returns and the trend targets' moving average).
    ``market`` is where the candles came from (see :func:`candle_market`).
    """
    horizon = spec.horizon_minutes
    context = label_candles(candles, spec, max_gap_minutes)
    frame = features.sort_index()
    if start is not None:
        frame = frame[frame.index >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame.index <= pd.Timestamp(end)]
    x = frame.reindex(columns=feature_columns).astype("float64")
    joined = context.reindex(x.index)
    has_features = np.isfinite(x.to_numpy()).all(axis=1)
    crossing = joined["crosses_gap"].fillna(False).astype(bool).to_numpy()
    unlabelled = joined["label"].isna().to_numpy() & ~crossing
    keep = has_features & ~unlabelled & ~crossing
    x = x[keep]
    joined = joined[keep]
    label = joined["label"].astype("float64").rename("label")
    lineage: dict[str, object] = {
        "symbol": symbol,
        "target": spec.name,
        "horizon_minutes": horizon,
        "feature_set": feature_set,
        "feature_names": list(feature_columns),
        "requested_start": start.isoformat() if start else None,
        "requested_end": end.isoformat() if end else None,
        "start": x.index[0].isoformat() if len(x) else None,
        "end": x.index[-1].isoformat() if len(x) else None,
        "rows": len(x),
        "rows_considered": len(frame),
        "rows_without_features": int((~has_features).sum()),
        "rows_unlabelled": int(unlabelled.sum()),
        "rows_crossing_gaps": int((crossing & has_features).sum()),
        "max_gap_minutes": max_gap_minutes,
        "market": market or UNRECORDED_MARKET,
        "sha256": data_hash(x, label),
    }
    return Dataset(
        symbol=symbol,
        spec=spec,
        feature_set=feature_set,
        features=x,
        label=label,
        forward_return=joined["forward_return"].astype("float64"),
        past_return=joined["past_return"].astype("float64"),
        recent_mean=joined["recent_mean"].astype("float64"),
        lineage=lineage,
    )


def known_symbols(conn: psycopg.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT DISTINCT symbol FROM klines ORDER BY 1")]


def build_dataset(
    conn: psycopg.Connection,
    symbol: str,
    spec: TargetSpec,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    feature_set: str | None = None,
    max_gap_minutes: int | None = None,
) -> Dataset:
    """The dataset for ``symbol`` from the database (features via ``pricebot.transform``).

    Raises :class:`UnknownSymbolError` when no candles are stored for the symbol and
    :class:`NoFeaturesError` when features are missing for the range.
    """
    from pricebot.candles import load_candles
    from pricebot.features import feature_names
    from pricebot.settings import get_settings
    from pricebot.transform import load_features

    settings = get_settings()
    feature_set = feature_set or settings.feature_set
    max_gap = settings.max_gap_minutes if max_gap_minutes is None else max_gap_minutes
    symbol = symbol.upper()
    exists = conn.execute("SELECT 1 FROM klines WHERE symbol = %s LIMIT 1", (symbol,)).fetchone()
    if exists is None:
        known = known_symbols(conn)
        listing = ", ".join(known) if known else "none yet (run `pricebot import` or `ingest`)"
        raise UnknownSymbolError(
            f"No candles stored for {symbol}. Symbols with candles: {listing}."
        )
    horizon = timedelta(minutes=spec.horizon_minutes)
    # Before ``start``: the baselines' past returns, and a trend target's moving average.
    window = timedelta(minutes=spec.window_minutes or 0)
    before = max(horizon * (RECENT_MEAN_HORIZONS + 1), window + horizon)
    candles_start = start - before if start else None
    candles_end = end + horizon + timedelta(minutes=1) if end else None
    candles = load_candles(conn, symbol, candles_start, candles_end)
    features = load_features(conn, symbol, start, end, feature_set=feature_set)
    if features.empty:
        raise NoFeaturesError(
            f"No {feature_set} features stored for {symbol} in the range. Run "
            f"`pricebot transform` first (features need "
            "a warm-up of history before the first row)."
        )
    return dataset_from_frames(
        symbol,
        candles,
        features,
        spec,
        feature_set=feature_set,
        feature_columns=feature_names(feature_set),
        max_gap_minutes=max_gap,
        start=start,
        end=end,
        market=candle_market(conn, symbol),
    )
