"""Honest walk-forward evaluation: purged folds, baselines on the same folds, fees, and a pool
value that cannot run to 10^125.

Folds (:func:`walk_forward_folds`): the rows (sorted by time) are cut into ``n_folds + 1``
blocks of equal row count (not wall time: real archives have months missing, and a block of
wall time could hold no rows); fold ``k`` tests on block ``k + 1`` and trains on everything
before it, except the last ``purge`` minutes (``purge >= H``) of wall time: a training label
looks ``H`` minutes ahead, so a row closer than ``H`` to the test block would carry test-period
prices into training.

Training rows are subsampled to every ``train_step``-th minute (aligned to the clock, default
``H // 24``, i.e. every hour for a 24 h target): labels one minute apart share ``H - 1`` of their
``H`` minutes of future, so neighbours add almost no information but cost fitting time. Test rows
are all kept; error metrics use them all, the pool value uses non-overlapping periods of them.

Pool value (:func:`pool_value`): the money is split into ``pools`` (24 for a 24 h target, as in
the original study) started ``H / pools`` minutes apart. Each pool makes non-overlapping
``H``-minute decisions: long if the model calls a rise, in cash otherwise; buying or selling costs
``fee`` per side (default 0.1%), a position is closed at the end and before any hole in the data.
The pool value is the mean final value of the pools (1.0 = broke even); buy-and-hold is the same
machinery always long, over the same periods and with the same fees, and cash is never long.

Classifiers call the event when their probability reaches a decision threshold. For models it is
chosen on the selection folds only (:func:`choose_threshold`: the threshold with the best mean net
pool value there) and then applied unchanged to every fold, the held-out one included; baselines
call at 0.5. Which folds select and which fold decides promotion is the business of
:mod:`pricebot.training_report` and :mod:`pricebot.gate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from pricebot.errors import InsufficientDataError
from pricebot.targets import TargetSpec

DEFAULT_FEE = 0.001
PRIMARY_METRIC = "pool_value_net"
METRICS = (
    "mae",
    "rmse",
    "directional_accuracy",
    "precision_up",
    "recall_up",
    "log_loss",
    "brier",
    "roc_auc",
    "event_rate",
    "pool_value_net",
    "pool_value_gross",
    "buy_hold_net",
    "trades",
    "n_test",
)
#: What a forecast is scored on; a position-only rival (cash) has none of these.
FORECAST_METRICS = METRICS[:9]
#: Defined for classifiers' probabilities only.
CLASSIFIER_METRICS = ("log_loss", "brier", "roc_auc", "event_rate")
BASELINES = ("no_change", "momentum", "recent_mean", "buy_and_hold")
CASH = "cash"
BASE_RATE = "base_rate"
RECENT_MEAN_HORIZONS = 7  # "mean of recent returns": the last 7 horizon returns (a week at 24 h)
DEFAULT_THRESHOLD = 0.5
_PROBABILITY_CLIP = 1e-7  # log loss of a probability of exactly 0 or 1 would be infinite
_MINUTE = pd.Timedelta(minutes=1)


@dataclass(frozen=True)
class Fold:
    """One walk-forward split: row positions into the dataset, and the test block's bounds."""

    number: int
    train: np.ndarray
    test: np.ndarray
    test_start: pd.Timestamp
    test_end: pd.Timestamp  # exclusive
    purge_minutes: int


def default_train_step(horizon_minutes: int) -> int:
    """Every ``H // 24``-th minute: 24 training rows per horizon (every hour at 24 h)."""
    return max(1, horizon_minutes // 24)


def walk_forward_folds(
    times: pd.DatetimeIndex,
    n_folds: int,
    horizon_minutes: int,
    *,
    purge_minutes: int | None = None,
    train_step: int | None = None,
    min_train_rows: int = 30,
) -> list[Fold]:
    """Expanding-window folds with a purge of at least the horizon (see the module docstring).

    ``times`` must be sorted. Raises :class:`InsufficientDataError` when a test block would be
    shorter than two horizons or a training set smaller than ``min_train_rows``.
    """
    if n_folds < 1:
        raise InsufficientDataError(f"--folds must be at least 1, got {n_folds}")
    purge = horizon_minutes if purge_minutes is None else purge_minutes
    if purge < horizon_minutes:
        raise ValueError(f"purge of {purge} min is shorter than the {horizon_minutes} min horizon")
    step = default_train_step(horizon_minutes) if train_step is None else max(1, train_step)
    if len(times) == 0:
        raise InsufficientDataError("The dataset has no labelled rows to evaluate on.")
    n = len(times)
    block_rows = n / (n_folds + 1)
    needed_days = (n_folds + 1) * 2 * horizon_minutes / 1440
    advice = (
        f"{n} labelled rows ({n / 1440:.1f} days of minutes); {n_folds} folds with a "
        f"{horizon_minutes}-minute horizon need at least {needed_days:.1f} days (each test block "
        "two horizons long). Use fewer --folds, a shorter target horizon, or a longer "
        "--start/--end range."
    )
    if block_rows < 2 * horizon_minutes:
        raise InsufficientDataError(f"Too little data for the folds: {advice}")
    values = times.asi8
    minutes = (values // 60_000_000_000).astype(np.int64)
    on_step = minutes % step == 0
    edges = [round(block_rows * i) for i in range(n_folds + 2)]
    folds = []
    for k in range(n_folds):
        start_i, end_i = edges[k + 1], edges[k + 2]
        test_start = times[start_i]
        test_end = times[end_i] if end_i < n else times[-1] + _MINUTE
        cutoff = test_start - pd.Timedelta(minutes=purge)
        train_end_i = int(np.searchsorted(values, cutoff.value, side="left"))
        train = np.flatnonzero(on_step[:train_end_i])
        test = np.arange(start_i, end_i)
        if len(train) < min_train_rows or len(test) == 0:
            raise InsufficientDataError(
                f"Too little data for fold {k + 1}: {len(train)} training rows after the purge "
                f"and subsampling (need {min_train_rows}), {len(test)} test rows. {advice}"
            )
        folds.append(Fold(k + 1, train, test, test_start, test_end, purge))
    return folds


# ---------------------------------------------------------------------------------------------
# Calls and metrics


def positive_call(pred: np.ndarray, spec: TargetSpec, threshold: float | None = None) -> np.ndarray:
    """The model's "yes": a rise for ``ret`` targets, the event for classifiers (a probability
    at or above ``threshold``, default 0.5)."""
    pred = np.asarray(pred, dtype="float64")
    if spec.is_classification:
        return pred >= (DEFAULT_THRESHOLD if threshold is None else threshold)
    return pred > 0


def positive_truth(y: np.ndarray, spec: TargetSpec) -> np.ndarray:
    y = np.asarray(y, dtype="float64")
    return y >= 0.5 if spec.is_classification else y > 0


def long_position(pred: np.ndarray, spec: TargetSpec, threshold: float | None = None) -> np.ndarray:
    """When a pool holds the coin: on a rise call; for ``down`` classifiers, unless a fall is
    called (stay invested, step aside before predicted falls)."""
    call = positive_call(pred, spec, threshold)
    return ~call if spec.direction == "down" else call


def never_long(n: int, spec: TargetSpec) -> np.ndarray:
    """Predictions that keep a pool in cash for the target: no rise, no event, or a fall."""
    return np.full(n, 1.0 if spec.direction == "down" else 0.0)


@dataclass
class PoolResult:
    value: float  # mean final value over pools, net of fees
    gross: float  # the same without fees
    trades: int  # buys over all pools
    # Per pool: the minute each of its periods ended and its value then (marked as if sold);
    # the curve is drawn from them, and :func:`pool_log_factors` turns them into per-period
    # growth for the gate's bootstrap.
    paths: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    @cached_property
    def curve(self) -> pd.Series:
        """The mean pool value after each period end (built on first use: the threshold search
        and the bootstrap need only the values)."""
        return mean_path_curve(self.paths)


def mean_path_curve(paths: Sequence[tuple[np.ndarray, np.ndarray]]) -> pd.Series:
    """The mean over pools of each pool's value at every minute any pool's period ended (its
    last value carried forward, 1.0 before its first period ended): the outer join, forward
    fill and row mean of the pools' series, done on arrays (aligning some sixty series on their
    union index in pandas took seconds per candidate when a training draws its charts)."""
    used = [(np.asarray(ends), np.asarray(values, dtype="float64"))
            for ends, values in paths if len(ends)]  # fmt: skip
    if not used:
        return pd.Series(dtype="float64")
    minutes = np.unique(np.concatenate([ends for ends, _ in used]))
    table = np.empty((len(minutes), len(used)), dtype="float64")
    for column, (ends, values) in enumerate(used):
        at = np.searchsorted(ends, minutes, side="right") - 1  # the period that ended last
        table[:, column] = np.where(at >= 0, values[np.maximum(at, 0)], 1.0)
    return pd.Series(table.mean(axis=1), index=pd.to_datetime(minutes, unit="m", utc=True))


def _pool_path(
    minutes: np.ndarray, long: np.ndarray, fwd: np.ndarray, start: int, horizon: int, fee: float
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """One pool: a decision at every row on its phase (``start`` plus whole horizons), so the
    pools stay staggered after a hole instead of all restarting at the same minute; it stops at
    the first unknown forward return. Returns (period ends, values marked as if sold, gross,
    buys)."""
    rows = np.flatnonzero((minutes >= start) & ((minutes - start) % horizon == 0))
    unknown = np.flatnonzero(np.isnan(fwd[rows]))
    if unknown.size:
        rows = rows[: unknown[0]]
    if rows.size == 0:
        return np.zeros(0, np.int64), np.zeros(0), 1.0, 0
    at, held, move = minutes[rows], long[rows], fwd[rows]
    before = np.r_[False, held[:-1]]
    # A hole in the data (the previous period did not end at this row): close out, the gap's
    # move is unknown; then buy or sell as the call says.
    contiguous = np.r_[False, at[1:] == at[:-1] + horizon]
    carried = before & contiguous
    fees = (before & ~contiguous).astype(int) + (held != carried).astype(int)
    growth = np.where(held, 1.0 + move, 1.0)
    value = np.cumprod((1.0 - fee) ** fees * growth)
    marked = value * np.where(held, 1.0 - fee, 1.0)
    return at + horizon, marked, float(np.prod(growth)), int(np.sum(held & ~carried))


def pool_value(
    times: pd.DatetimeIndex,
    long: np.ndarray,
    forward_return: np.ndarray,
    horizon_minutes: int,
    *,
    fee: float = DEFAULT_FEE,
    pools: int | None = None,
) -> PoolResult:
    """The value of 1.0 split into staggered pools trading non-overlapping ``H`` periods."""
    n_pools = min(24, horizon_minutes) if pools is None else max(1, pools)
    minutes = (times.asi8 // 60_000_000_000).astype(np.int64)
    long = np.asarray(long, dtype=bool)
    fwd = np.asarray(forward_return, dtype="float64")
    if len(minutes) == 0:
        return PoolResult(1.0, 1.0, 0)
    finals, grosses, buys = [], [], 0
    paths: list[tuple[np.ndarray, np.ndarray]] = []
    for p in range(n_pools):
        start = int(minutes[0]) + p * horizon_minutes // n_pools
        ends, values, gross, pool_buys = _pool_path(minutes, long, fwd, start, horizon_minutes, fee)
        finals.append(float(values[-1]) if len(values) else 1.0)
        grosses.append(gross)
        buys += pool_buys
        paths.append((ends, values))
    return PoolResult(float(np.mean(finals)), float(np.mean(grosses)), buys, paths)


def pool_log_factors(result: PoolResult, first_minute: int, horizon_minutes: int) -> np.ndarray:
    """Each pool's log growth per horizon-long slot of the window: ``(pools, slots)``.

    Slot ``k`` holds the periods that ended in ``[first + (k + 1) H, first + (k + 2) H)``; every
    pool has at most one period there, and two strategies scored on the same rows have their
    periods in the same slots, so their factors can be resampled together (the gate's block
    bootstrap). A slot a pool did not trade in (a hole) has factor 1. Summing a pool's row gives
    the log of its final value.
    """
    if not result.paths:
        return np.zeros((0, 0))
    last = max((int(ends[-1]) for ends, _ in result.paths if len(ends)), default=first_minute)
    slots = max(1, (last - first_minute) // horizon_minutes)
    factors = np.zeros((len(result.paths), slots))
    for p, (ends, values) in enumerate(result.paths):
        if len(ends) == 0:
            continue
        growth = np.log(values / np.r_[1.0, values[:-1]])
        slot = np.clip((ends - first_minute) // horizon_minutes - 1, 0, slots - 1)
        np.add.at(factors[p], slot, growth)
    return factors


def score_fold(
    times: pd.DatetimeIndex,
    y: np.ndarray,
    forward_return: np.ndarray,
    pred: np.ndarray,
    spec: TargetSpec,
    *,
    fee: float = DEFAULT_FEE,
    threshold: float | None = None,
    forecast: bool = True,
    probabilities: bool = False,
) -> tuple[dict[str, float], PoolResult, PoolResult]:
    """Metrics of one fold's predictions, plus the model's and buy-and-hold's pools.

    ``forecast`` False scores a position only (cash): its forecast metrics are NaN.
    ``probabilities`` True (a classifier's probabilities, not 0/1 calls) adds log loss, Brier
    score and ROC AUC.
    """
    y = np.asarray(y, dtype="float64")
    pred = np.asarray(pred, dtype="float64")
    if len(pred) != len(y):
        raise ValueError(f"{len(pred)} predictions for {len(y)} rows")
    model_pool = pool_value(times, long_position(pred, spec, threshold), forward_return,
                            spec.horizon_minutes, fee=fee)  # fmt: skip
    hold_pool = pool_value(times, np.ones(len(y), bool), forward_return, spec.horizon_minutes,
                           fee=fee)  # fmt: skip
    metrics = dict.fromkeys(FORECAST_METRICS, math.nan)
    if forecast:
        metrics.update(_forecast_metrics(y, pred, spec, threshold))
    if spec.is_classification and len(y):
        metrics["event_rate"] = float(np.mean(y >= 0.5))
    if forecast and probabilities and spec.is_classification:
        metrics.update(classifier_metrics(y, pred))
    metrics.update(
        {
            "pool_value_net": model_pool.value,
            "pool_value_gross": model_pool.gross,
            "buy_hold_net": hold_pool.value,
            "trades": float(model_pool.trades),
            "n_test": float(len(y)),
        }
    )
    return metrics, model_pool, hold_pool


def _forecast_metrics(
    y: np.ndarray, pred: np.ndarray, spec: TargetSpec, threshold: float | None
) -> dict[str, float]:
    error = pred - y
    call, truth = positive_call(pred, spec, threshold), positive_truth(y, spec)
    true_pos = int(np.sum(call & truth))
    return {
        "mae": float(np.mean(np.abs(error))) if len(y) else math.nan,
        "rmse": float(np.sqrt(np.mean(error**2))) if len(y) else math.nan,
        "directional_accuracy": float(np.mean(call == truth)) if len(y) else math.nan,
        "precision_up": true_pos / int(call.sum()) if call.any() else math.nan,
        "recall_up": true_pos / int(truth.sum()) if truth.any() else math.nan,
    }


def classifier_metrics(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Log loss, Brier score and ROC AUC of event probabilities (AUC is undefined, NaN, when
    the rows hold one class only)."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    truth = (np.asarray(y) >= 0.5).astype(int)
    p = np.clip(np.asarray(probability, dtype="float64"), _PROBABILITY_CLIP, 1 - _PROBABILITY_CLIP)
    both = 0 < truth.sum() < len(truth)
    return {
        "log_loss": float(log_loss(truth, p, labels=[0, 1])),
        "brier": float(brier_score_loss(truth, p, pos_label=1)),
        "roc_auc": float(roc_auc_score(truth, p)) if both else math.nan,
    }


# ---------------------------------------------------------------------------------------------
# Candidates and baselines over folds


@dataclass
class CandidateResult:
    """A candidate's out-of-sample record over the folds it was scored on."""

    name: str
    kind: str  # "model", "baseline" or "champion"
    folds: pd.DataFrame  # one row per fold number, columns METRICS
    params: dict[str, object] = field(default_factory=dict)
    # Per fold number: the predictions on its test rows (what the gate tests, row by row).
    predictions: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    threshold: float | None = None  # a classifier's decision threshold (None: regression)
    # Per fold, in order: the candidate's pool and buy-and-hold's on the same rows.
    pools: list[tuple[PoolResult, PoolResult]] = field(default_factory=list, repr=False)

    @cached_property
    def curve(self) -> pd.Series:
        """Its pool value chained over the test blocks (drawn on first use)."""
        return _chain([pool.curve for pool, _ in self.pools])

    @cached_property
    def buy_hold_curve(self) -> pd.Series:
        return _chain([hold.curve for _, hold in self.pools])

    def mean_over(self, metric: str, folds: Sequence[int] | None = None) -> float:
        frame = self.folds if folds is None else self.folds.loc[list(folds)]
        return float(frame[metric].mean())

    def over(self, folds: Sequence[int]) -> dict[str, float]:
        """The figures over some folds: means per fold, except counts (trades, rows) summed."""
        frame = self.folds.loc[list(folds)]
        figures = frame.mean(numeric_only=True).to_dict()
        for count in ("trades", "n_test"):
            if count in frame:
                figures[count] = float(frame[count].sum())
        return {k: float(v) for k, v in figures.items()}

    def long(self, fold: int, spec: TargetSpec) -> np.ndarray:
        """When this candidate held the coin on ``fold``'s test rows."""
        return long_position(self.predictions[fold], spec, self.threshold)

    def calls(self, fold: int, spec: TargetSpec) -> np.ndarray:
        return positive_call(self.predictions[fold], spec, self.threshold)


def _chain(curves: list[pd.Series]) -> pd.Series:
    chained, level = [], 1.0
    for curve in curves:
        if curve.empty:
            continue
        chained.append(curve * level)
        level *= float(curve.iloc[-1])
    return pd.concat(chained) if chained else pd.Series(dtype="float64")


def choose_threshold(
    predictions: dict[int, np.ndarray],
    folds: Sequence[Fold],
    times: pd.DatetimeIndex,
    forward_return: np.ndarray,
    spec: TargetSpec,
    *,
    fee: float = DEFAULT_FEE,
) -> float:
    """A classifier's decision threshold: the one with the best mean net pool value over
    ``folds`` (the selection folds; never the held-out one), among 0.5 and the 5%..95%
    quantiles of its probabilities there. A tie goes to the threshold nearest 0.5."""
    pooled = np.concatenate([predictions[f.number] for f in folds])
    if pooled.size == 0:
        return DEFAULT_THRESHOLD
    grid = np.unique(np.r_[DEFAULT_THRESHOLD, np.quantile(pooled, np.linspace(0.05, 0.95, 19))])
    best, best_key = DEFAULT_THRESHOLD, (-math.inf, -math.inf)
    for threshold in grid:
        values = [
            pool_value(times[f.test], long_position(predictions[f.number], spec, threshold),
                       forward_return[f.test], spec.horizon_minutes, fee=fee).value
            for f in folds
        ]  # fmt: skip
        key = (round(float(np.mean(values)), 12), -abs(float(threshold) - DEFAULT_THRESHOLD))
        if key > best_key:
            best, best_key = float(threshold), key
    return best


def evaluate_candidate(
    name: str,
    folds: Sequence[Fold],
    times: pd.DatetimeIndex,
    y: np.ndarray,
    forward_return: np.ndarray,
    spec: TargetSpec,
    predict: Callable[[Fold], np.ndarray],
    *,
    kind: str = "model",
    fee: float = DEFAULT_FEE,
    params: dict[str, object] | None = None,
    selection: Sequence[int] | None = None,
    threshold: float | None = None,
    forecast: bool = True,
    probabilities: bool | None = None,
) -> CandidateResult:
    """Run ``predict(fold)`` (fit on ``fold.train``, predict ``fold.test``) on every fold.

    A classifier model given its ``selection`` folds gets its decision threshold chosen there
    (:func:`choose_threshold`); otherwise it calls at ``threshold`` (default 0.5).
    ``probabilities`` (default: for classifier models and champions) adds the probability
    metrics; ``forecast`` False scores a position only (see :func:`score_fold`).
    """
    predictions = {fold.number: np.asarray(predict(fold), dtype="float64") for fold in folds}
    if spec.is_classification:
        if threshold is None and selection and kind == "model":
            chosen = [f for f in folds if f.number in set(selection)]
            threshold = choose_threshold(predictions, chosen, times, forward_return, spec, fee=fee)
        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    else:
        threshold = None
    if probabilities is None:
        probabilities = kind in ("model", "champion")
    probabilities = probabilities and spec.is_classification
    rows, pools = [], []
    for fold in folds:
        metrics, pool, hold = score_fold(
            times[fold.test], y[fold.test], forward_return[fold.test], predictions[fold.number],
            spec, fee=fee, threshold=threshold, forecast=forecast, probabilities=probabilities,
        )  # fmt: skip
        rows.append({"fold": fold.number, **metrics})
        pools.append((pool, hold))
    frame = pd.DataFrame(rows).set_index("fold")
    return CandidateResult(name, kind, frame, params or {}, predictions, threshold, pools)


def baseline_predictions(
    past_return: np.ndarray, recent_mean: np.ndarray, spec: TargetSpec
) -> dict[str, np.ndarray]:
    """What the rule baselines predict at each row, from causal inputs only.

    ``past_return``: the return over the last ``H`` (momentum); ``recent_mean``: the mean of the
    last :data:`RECENT_MEAN_HORIZONS` such returns. For classifiers a baseline "calls" the event
    when its return estimate reaches the threshold (a rise, for ``dir``). ``no_change`` (a
    return of zero) is a regression baseline: for an event it would be "never", which is cash
    for ``up`` targets and buy-and-hold for ``down`` ones, both rivals already.
    """
    past = np.nan_to_num(np.asarray(past_return, dtype="float64"))
    mean = np.nan_to_num(np.asarray(recent_mean, dtype="float64"))
    n = len(past)
    if not spec.is_classification:
        return {
            "no_change": np.zeros(n),
            "momentum": past,
            "recent_mean": mean,
            "buy_and_hold": np.full(n, 1e-12),  # always a (tiny) rise: always long
        }
    assert spec.threshold is not None

    def event(r: np.ndarray) -> np.ndarray:
        if spec.direction == "up":
            hit = r >= spec.threshold if spec.threshold > 0 else r > 0
        else:
            hit = r <= -spec.threshold
        return hit.astype("float64")

    return {
        "momentum": event(past),
        "recent_mean": event(mean),
        "buy_and_hold": np.full(n, 1.0 if spec.direction == "up" else 0.0),
    }


def evaluate_baselines(
    folds: Sequence[Fold],
    times: pd.DatetimeIndex,
    y: np.ndarray,
    forward_return: np.ndarray,
    past_return: np.ndarray,
    recent_mean: np.ndarray,
    spec: TargetSpec,
    *,
    fee: float = DEFAULT_FEE,
) -> list[CandidateResult]:
    """Every baseline on the same folds: the rules of :func:`baseline_predictions`; for
    classifiers ``base_rate`` (the training fold's event frequency as the probability, which
    calls its majority class: the reference for log loss and Brier score); and ``cash``, never
    invested (pool value 1.0), a rival for every target."""
    results = [
        evaluate_candidate(name, folds, times, y, forward_return, spec,
                           lambda fold, p=preds: p[fold.test], kind="baseline", fee=fee)
        for name, preds in baseline_predictions(past_return, recent_mean, spec).items()
    ]  # fmt: skip
    if spec.is_classification:

        def base_rate(fold: Fold) -> np.ndarray:
            return np.full(len(fold.test), float(np.mean(y[fold.train] >= 0.5)))

        results.append(evaluate_candidate(BASE_RATE, folds, times, y, forward_return, spec,
                                          base_rate, kind="baseline", fee=fee,
                                          probabilities=True))  # fmt: skip
    results.append(
        evaluate_candidate(CASH, folds, times, y, forward_return, spec,
                           lambda fold: never_long(len(fold.test), spec), kind="baseline",
                           fee=fee, forecast=False)
    )  # fmt: skip
    return results


# ---------------------------------------------------------------------------------------------
# Presentation

TABLE_METRICS = (
    "mae",
    "rmse",
    "directional_accuracy",
    "precision_up",
    "recall_up",
    "log_loss",
    "brier",
    "roc_auc",
    "pool_value_net",
    "buy_hold_net",
    "trades",
)


def evaluation_table(
    results: Sequence[CandidateResult], selection: Sequence[int], held_out: Sequence[int]
) -> pd.DataFrame:
    """One row per candidate: ``selection_<metric>`` (means over the selection folds) and
    ``heldout_<metric>`` (the held-out fold) apart, never mixed; columns no candidate has (the
    classifier metrics of a regression) are left out."""
    rows = []
    for result in results:
        row: dict[str, object] = {"candidate": result.name, "kind": result.kind,
                                  "threshold": result.threshold}  # fmt: skip
        for part, folds in (("selection", selection), ("heldout", held_out)):
            figures = result.over(folds)
            row.update({f"{part}_{m}": figures.get(m, math.nan) for m in TABLE_METRICS})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("candidate")
    return table.dropna(axis=1, how="all")


def _broken_at_holes(curve: pd.Series) -> pd.Series:
    """The curve with a NaN wherever the data has a hole, so no line is drawn across it."""
    if len(curve) < 3:
        return curve
    steps = curve.index.to_series().diff()
    holes = steps > 3 * steps.median()
    if not holes.any():
        return curve
    blanks = pd.Series(np.nan, index=curve.index[holes.to_numpy()] - pd.Timedelta(seconds=1))
    return pd.concat([curve, blanks]).sort_index()


def plot_evaluation(
    results: Sequence[CandidateResult],
    path: Path,
    title: str = "",
    *,
    held_out: Fold | None = None,
) -> Path:
    """Pool value over the test blocks (models solid, baselines dotted, buy-and-hold dashed),
    and per-fold bars of the net return and of directional accuracy. One colour per candidate
    throughout; the ``held_out`` fold (the one that decides promotion) is shaded and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {r.name: plt.get_cmap("tab10")(i % 10) for i, r in enumerate(results)}
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(12, 11))
    for result in results:
        if result.curve.empty:
            continue
        curve = _broken_at_holes(
            result.buy_hold_curve if result.name == "buy_and_hold" else result.curve
        )
        style = {"model": "-", "baseline": ":"}.get(result.kind, "-")
        if result.name == "buy_and_hold":
            style = "--"
        top.plot(curve.index, curve.to_numpy(), style, color=colours[result.name],
                 label=result.name, linewidth=1.4)  # fmt: skip
    top.axhline(1.0, color="grey", linewidth=0.5)
    if held_out is not None:
        top.axvspan(held_out.test_start, held_out.test_end, color="gold", alpha=0.15,
                    label=f"held out (fold {held_out.number})")  # fmt: skip
    top.set_ylabel("pool value (net of fees)")
    top.set_title(title or "Out-of-sample pool value, chained over the walk-forward test blocks")
    folds = list(results[0].folds.index) if results else []
    width = 0.8 / max(1, len(results))
    panels = ((middle, "pool_value_net", "net return per fold (%)", 0.0),
              (bottom, "directional_accuracy", "directional accuracy", 0.5))  # fmt: skip
    for axis, metric, label, reference in panels:
        for i, result in enumerate(results):
            values = result.folds[metric].to_numpy()
            if metric == "pool_value_net":
                values = (values - 1.0) * 100.0
            positions = np.arange(len(folds)) + i * width
            axis.bar(positions, values, width, color=colours[result.name], label=result.name)
        axis.set_xticks(np.arange(len(folds)) + width * (len(results) - 1) / 2)
        axis.set_xticklabels(
            [f"fold {f}" + (" (held out)" if held_out and f == held_out.number else "")
             for f in folds]
        )  # fmt: skip
        axis.axhline(reference, color="grey", linewidth=0.5)
        axis.set_ylabel(label)
    bottom.set_ylim(0.0, 1.0)
    handles, labels = top.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_calibration(
    results: Sequence[CandidateResult],
    y: np.ndarray,
    folds: Sequence[Fold],
    selection: Sequence[int],
    path: Path,
    title: str = "",
    bins: int = 10,
) -> Path:
    """Reliability diagram of the classifier models: the observed event rate against the mean
    predicted probability in ``bins`` quantile bins, on the selection folds and the held-out
    fold apart (a well calibrated model lies on the diagonal), with each fold set's base rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    models = [r for r in results if r.kind == "model" and r.predictions]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), sharey=True)
    parts = (("selection folds", [f for f in folds if f.number in set(selection)]),
             ("held-out fold", [f for f in folds if f.number not in set(selection)]))  # fmt: skip
    for axis, (label, chosen) in zip(axes, parts, strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
        if not chosen:
            continue
        truth = (np.concatenate([y[f.test] for f in chosen]) >= 0.5).astype(int)
        axis.axhline(truth.mean(), color="grey", linewidth=0.5, linestyle=":",
                     label=f"base rate {truth.mean():.2f}")  # fmt: skip
        for i, result in enumerate(models):
            p = np.concatenate([result.predictions[f.number] for f in chosen])
            if len(np.unique(truth)) < 2:
                continue
            observed, predicted = calibration_curve(truth, p, n_bins=bins, strategy="quantile")
            axis.plot(predicted, observed, "o-", color=plt.get_cmap("tab10")(i % 10),
                      label=result.name, linewidth=1.2)  # fmt: skip
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("mean predicted probability")
        axis.set_title(f"{label} ({len(truth):,} rows)")
        axis.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("observed event rate")
    fig.suptitle(title or "Calibration of the event probabilities, out of sample")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
