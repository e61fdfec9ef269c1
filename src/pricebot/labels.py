"""Labels: what happened after each candle, computed from the candles alone.

A candle is identified by its open time ``t``; its close is the price at the end of minute ``t``,
which is also the last price the features at ``t`` may see. The label at ``t`` looks at the
closes of the candles opened in ``(t, t + H]``:

- ``ret<H>``: ``close[t + H] / close[t] - 1`` (0.01 = +1%).
- ``dir<H>``: 1.0 if ``close[t + H] > close[t]``, else 0.0 (a tie is not a rise).
- ``up<X>pct<H>``: 1.0 if some close in ``(t, t + H]`` is at least ``close[t] * (1 + X)``, else 0.0.
- ``down<X>pct<H>``: 1.0 if some close in ``(t, t + H]`` is at most ``close[t] * (1 - X)``.
- ``trendup<X>pct<H>``: 1.0 if ``ma[t + H] >= ma[t] * (1 + X)``, where ``ma[t]`` is the mean
  close over the ``W`` minutes ``(t - W, t]`` (``W`` = the spec's window, the horizon);
  ``trenddown<X>pct<H>``: ``ma[t + H] <= ma[t] * (1 - X)``. A moving average is defined when
  at least :data:`MA_MIN_COVERAGE` of its window's minutes are stored.

A label exists only where the candle at ``t + H`` exists, so the last ``H`` minutes of history
(and minutes whose horizon ends inside a gap) have none; they are never used for training.
Work is done on a complete minute grid (missing minutes as NaN) so that "``H`` minutes later"
means ``H`` minutes of wall time, never ``H`` rows.

:func:`label_candles` is the one place that turns candles into outcomes: training datasets,
live scoring of served predictions and the monitoring page all call it, so a prediction is
judged by the same rule its model was trained on (including the long-gap rule).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pricebot.evaluation import RECENT_MEAN_HORIZONS
from pricebot.targets import TargetSpec

MINUTE = pd.Timedelta(minutes=1)
#: Share of a moving average's window that must be stored for the average to count: a day's
#: outage in a 10-day window moves the mean little, a window half empty is another statistic.
MA_MIN_COVERAGE = 0.9


def minute_grid(series: pd.Series) -> pd.Series:
    """``series`` on every minute from its first to its last index, NaN where none was stored."""
    if series.empty:
        return series.astype("float64")
    grid = pd.date_range(series.index[0], series.index[-1], freq="1min")
    return series.reindex(grid)


def forward_returns(close: pd.Series, horizon_minutes: int) -> pd.Series:
    """``close[t + H] / close[t] - 1`` for each candle of ``close`` (NaN when unknown)."""
    grid = minute_grid(close.astype("float64"))
    result = grid.shift(-horizon_minutes) / grid - 1.0
    return result.reindex(close.index)


def past_returns(close: pd.Series, horizon_minutes: int, lag_minutes: int = 0) -> pd.Series:
    """``close[t - lag] / close[t - lag - H] - 1``: a return that ended ``lag`` minutes ago."""
    grid = minute_grid(close.astype("float64"))
    result = grid.shift(lag_minutes) / grid.shift(lag_minutes + horizon_minutes) - 1.0
    return result.reindex(close.index)


def recent_mean_returns(close: pd.Series, horizon_minutes: int) -> pd.Series:
    """Mean of the last :data:`RECENT_MEAN_HORIZONS` horizon returns ending at or before ``t``
    (each as :func:`past_returns` with lags ``0, H, 2H, ...``; the unknown ones skipped)."""
    grid = minute_grid(close.astype("float64"))
    values = grid.to_numpy(dtype="float64")
    total = np.zeros(len(values))
    known = np.zeros(len(values))
    for k in range(RECENT_MEAN_HORIZONS):
        lag = k * horizon_minutes
        with np.errstate(invalid="ignore", divide="ignore"):
            ret = _shifted(values, lag) / _shifted(values, lag + horizon_minutes) - 1.0
        finite = np.isfinite(ret)
        total[finite] += ret[finite]
        known += finite
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(known > 0, total / np.maximum(known, 1), np.nan)
    return pd.Series(mean, index=grid.index).reindex(close.index)


def _shifted(values: np.ndarray, minutes: int) -> np.ndarray:
    """``values`` moved ``minutes`` later on the grid (pandas' ``shift``), NaN where unknown."""
    if minutes <= 0:
        return values
    out = np.full(len(values), np.nan)
    out[minutes:] = values[: len(values) - minutes] if minutes < len(values) else []
    return out


def compute_labels(candles: pd.DataFrame, spec: TargetSpec) -> pd.DataFrame:
    """Labels for every candle: columns ``label`` (the target) and ``forward_return``.

    ``forward_return`` is returned for classification targets too: the pool value (the money a
    model's calls would have made) is always measured in returns.
    """
    close = candles["close"].astype("float64")
    horizon = spec.horizon_minutes
    grid = minute_grid(close)
    future = grid.shift(-horizon)
    forward = future / grid - 1.0
    known = future.notna() & grid.notna()
    if spec.kind == "regression":
        label = forward
    elif spec.rule == "close":
        label = (future > grid).astype("float64").where(known)
    elif spec.rule == "trend":
        assert spec.threshold is not None
        assert spec.window_minutes is not None
        window = spec.window_minutes
        average = grid.rolling(window, min_periods=math.ceil(MA_MIN_COVERAGE * window)).mean()
        later = average.shift(-horizon)
        if spec.direction == "up":
            hit = later >= average * (1.0 + spec.threshold)
        else:
            hit = later <= average * (1.0 - spec.threshold)
        label = hit.astype("float64").where(known & average.notna() & later.notna())
    else:
        assert spec.threshold is not None
        if spec.direction == "up":
            extreme = grid[::-1].rolling(horizon, min_periods=1).max()[::-1].shift(-1)
            hit = extreme >= grid * (1.0 + spec.threshold)
        else:
            extreme = grid[::-1].rolling(horizon, min_periods=1).min()[::-1].shift(-1)
            hit = extreme <= grid * (1.0 - spec.threshold)
        label = hit.astype("float64").where(known)
    frame = pd.DataFrame({"label": label, "forward_return": forward})
    return frame.reindex(close.index)


def crosses_long_gap(
    index: pd.DatetimeIndex, horizon_minutes: int, max_gap_minutes: int
) -> np.ndarray:
    """For each time in ``index`` (the stored candles): does ``(t, t + H]`` cross a gap longer
    than ``max_gap_minutes``? A label over a long outage mixes two markets and is dropped.
    """
    if len(index) == 0:
        return np.zeros(0, dtype=bool)
    present = pd.Series(True, index=index)
    grid = minute_grid(present).notna().to_numpy()
    missing = ~grid
    # Length of the missing run each minute belongs to.
    run_id = np.cumsum(np.r_[True, missing[1:] != missing[:-1]])
    run_length = np.bincount(run_id)[run_id]
    long_missing = missing & (run_length > max_gap_minutes)
    counts = np.r_[0, np.cumsum(long_missing)]  # counts[i] = long-missing minutes before i
    n = len(grid)
    positions = ((index - index[0]) // MINUTE).to_numpy().astype(np.int64)
    ends = np.minimum(positions + horizon_minutes, n - 1)
    return (counts[ends + 1] - counts[positions + 1]) > 0


def label_candles(candles: pd.DataFrame, spec: TargetSpec, max_gap_minutes: int) -> pd.DataFrame:
    """Outcomes of every candle, and the baselines' inputs, by the rules training uses.

    Columns, indexed like ``candles``:

    - ``label``, ``forward_return``: as :func:`compute_labels`, but NaN where the horizon
      ``(t, t + H]`` crosses a gap longer than ``max_gap_minutes`` (a return across an outage
      is not one a model could have traded, so it neither trains nor scores a model);
    - ``crosses_gap``: True where an outcome existed and was withdrawn for that reason;
    - ``past_return``, ``recent_mean``: the return over the last horizon and the mean of the
      last :data:`RECENT_MEAN_HORIZONS` of them, from closes at or before ``t`` only.

    ``candles`` needs a ``close`` column; it should reach ``H`` minutes past the last time whose
    outcome is wanted, and ``RECENT_MEAN_HORIZONS`` horizons before the first.
    """
    horizon = spec.horizon_minutes
    candles = candles.sort_index()
    close = candles["close"].astype("float64")
    labels = compute_labels(candles, spec)
    has_outcome = labels["label"].notna().to_numpy()
    crossing = crosses_long_gap(candles.index, horizon, max_gap_minutes) & has_outcome
    keep = ~crossing
    return pd.DataFrame(
        {
            "label": labels["label"].where(keep),
            "forward_return": labels["forward_return"].where(keep),
            "crosses_gap": crossing,
            "past_return": past_returns(close, horizon),
            "recent_mean": recent_mean_returns(close, horizon),
        },
        index=candles.index,
    )
