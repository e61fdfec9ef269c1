"""Cross-sectional evaluation: each period, hold the coin with the best prediction, after fees.

A pooled model predicts every coin of its pool at the same minutes. The cross-sectional pool
puts the money where the model expects the most: at every decision it holds the one coin whose
predicted return, net of the fees a move would cost, is the highest, or cash when none is
expected to pay (for a classifier: the called coin with the most confident call). Like the
single-coin pool (:func:`pricebot.evaluation.pool_value`) the money is split into ``pools``
started ``H / pools`` minutes apart, each deciding every ``H`` minutes (every day for a 24 h
target), so the figure does not hang on one start time.

The rule at a decision, for a ``ret`` target, with ``fee`` per side:

- staying in the coin held (its period just ended and the data is contiguous) costs nothing: its
  value is its predicted return;
- moving into another coin costs a buy now and a sell later: its value is ``pred - 2 * fee``;
- cash is worth 0. The largest value wins.

For classifiers the eligible coins are those the pool would hold on their own (the decision
threshold's call, :func:`pricebot.evaluation.long_position`), ranked by how sure the call is
(the probability; one minus it for ``down`` targets), the coin held kept on a tie.

Fees are charged as the single-coin pool charges them: a sell when a position is left (for
another coin, for cash or before a hole in the data), a buy when one is entered; a position is
marked as if sold at every period end. The rivals are the same coins' equal-weight
buy-and-hold over the same periods (the mean of each coin's buy-and-hold pools) and cash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pricebot.evaluation import DEFAULT_FEE, PoolResult, long_position
from pricebot.targets import TargetSpec

CROSS_SECTION = "cross_section"
EQUAL_WEIGHT_HOLD = "equal_weight_hold"


def _wide(series: Mapping[str, pd.Series], minutes: np.ndarray) -> np.ndarray:
    """``(minutes, symbols)``: each symbol's values on the union of minutes, NaN where none."""
    columns = [s.reindex(minutes).to_numpy(dtype="float64") for s in series.values()]
    return np.column_stack(columns) if columns else np.zeros((len(minutes), 0))


def _scores(
    pred: np.ndarray, spec: TargetSpec, threshold: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(eligible, score) per cell: whether the coin may be held, and how good it looks."""
    known = np.isfinite(pred)
    filled = np.where(known, pred, 0.0)
    if not spec.is_classification:
        return known, filled
    eligible = known & long_position(filled, spec, threshold).reshape(pred.shape)
    score = 1.0 - filled if spec.direction == "down" else filled
    return eligible, score


def _cross_path(
    minutes: np.ndarray,
    eligible: np.ndarray,
    score: np.ndarray,
    fwd: np.ndarray,
    start: int,
    horizon: int,
    fee: float,
    regression: bool,
) -> tuple[np.ndarray, np.ndarray, float, int, np.ndarray]:
    """One staggered pool: (period ends, values marked as if sold, gross, buys, holdings)."""
    rows = np.flatnonzero((minutes >= start) & ((minutes - start) % horizon == 0))
    value, gross, buys = 1.0, 1.0, 0
    held, previous_minute = -1, None
    ends, marks, holdings = [], [], []
    for row in rows:
        minute = int(minutes[row])
        contiguous = previous_minute is not None and minute == previous_minute + horizon
        if held >= 0 and not contiguous:  # a hole: close out, the gap's move is unknown
            value *= 1.0 - fee
            held = -1
        ok = eligible[row] & np.isfinite(fwd[row])
        choice, best = -1, 0.0  # cash is worth 0
        if ok.any():
            values = np.where(ok, score[row], -np.inf)
            if regression:
                cost = np.full(len(values), 2.0 * fee)
                if held >= 0:
                    cost[held] = 0.0
                values = values - cost
            candidate = int(np.argmax(values))
            if held >= 0 and ok[held] and values[held] >= values[candidate]:
                candidate = held  # a tie keeps the coin held
            if values[candidate] > best or not regression:
                choice, best = candidate, float(values[candidate])
        if choice != held:
            if held >= 0:
                value *= 1.0 - fee
            if choice >= 0:
                value *= 1.0 - fee
                buys += 1
        held = choice
        if held >= 0:
            growth = 1.0 + float(fwd[row, held])
            value *= growth
            gross *= growth
        ends.append(minute + horizon)
        marks.append(value * (1.0 - fee) if held >= 0 else value)
        holdings.append(held)
        previous_minute = minute
    return (np.asarray(ends, np.int64), np.asarray(marks), gross, buys,
            np.asarray(holdings, np.int64))  # fmt: skip


def cross_section_pool(
    times: Mapping[str, pd.DatetimeIndex],
    predictions: Mapping[str, np.ndarray],
    forward_returns: Mapping[str, np.ndarray],
    spec: TargetSpec,
    *,
    fee: float = DEFAULT_FEE,
    threshold: float | None = None,
    pools: int | None = None,
) -> tuple[PoolResult, dict[str, float]]:
    """The cross-sectional pool over one window (module docstring), and the share of periods
    each coin (and cash) was held."""
    symbols = list(times)
    minute_of = {s: (times[s].asi8 // 60_000_000_000).astype(np.int64) for s in symbols}
    if not symbols or not any(len(m) for m in minute_of.values()):
        return PoolResult(1.0, 1.0, 0), {}
    minutes = np.unique(np.concatenate([minute_of[s] for s in symbols]))
    pred = _wide({s: pd.Series(predictions[s], index=minute_of[s]) for s in symbols}, minutes)
    fwd = _wide({s: pd.Series(forward_returns[s], index=minute_of[s]) for s in symbols}, minutes)
    eligible, score = _scores(pred, spec, threshold)
    horizon = spec.horizon_minutes
    n_pools = min(24, horizon) if pools is None else max(1, pools)
    finals, grosses, buys, paths, held = [], [], 0, [], []
    for p in range(n_pools):
        start = int(minutes[0]) + p * horizon // n_pools
        ends, values, gross, pool_buys, holdings = _cross_path(
            minutes, eligible, score, fwd, start, horizon, fee, not spec.is_classification
        )
        finals.append(float(values[-1]) if len(values) else 1.0)
        grosses.append(gross)
        buys += pool_buys
        paths.append((ends, values))
        held.append(holdings)
    every = np.concatenate(held) if held else np.zeros(0, np.int64)
    shares = {s: float(np.mean(every == i)) for i, s in enumerate(symbols)} if every.size else {}
    if every.size:
        shares["cash"] = float(np.mean(every < 0))
    return PoolResult(float(np.mean(finals)), float(np.mean(grosses)), buys, paths), shares


def equal_weight_hold(holds: Sequence[PoolResult]) -> PoolResult:
    """The coins' buy-and-hold pools side by side: the money split equally over the coins."""
    if not holds:
        return PoolResult(1.0, 1.0, 0)
    return PoolResult(
        value=float(np.mean([h.value for h in holds])),
        gross=float(np.mean([h.gross for h in holds])),
        trades=int(sum(h.trades for h in holds)),
        paths=[path for h in holds for path in h.paths],
    )
