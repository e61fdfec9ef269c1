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
machinery always long, over the same periods and with the same fees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    "pool_value_net",
    "pool_value_gross",
    "buy_hold_net",
    "trades",
    "n_test",
)
BASELINES = ("no_change", "momentum", "recent_mean", "buy_and_hold")
RECENT_MEAN_HORIZONS = 7  # "mean of recent returns": the last 7 horizon returns (a week at 24 h)
SKILL_Z = 1.645  # one-sided 5%: directional accuracy must be this many standard errors above 50%
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


def positive_call(pred: np.ndarray, spec: TargetSpec) -> np.ndarray:
    """The model's "yes": a rise for ``ret`` targets, the event for classifiers."""
    pred = np.asarray(pred, dtype="float64")
    return pred >= 0.5 if spec.is_classification else pred > 0


def positive_truth(y: np.ndarray, spec: TargetSpec) -> np.ndarray:
    y = np.asarray(y, dtype="float64")
    return y >= 0.5 if spec.is_classification else y > 0


def long_position(pred: np.ndarray, spec: TargetSpec) -> np.ndarray:
    """When a pool holds the coin: on a rise call; for ``down`` classifiers, unless a fall is
    called (stay invested, step aside before predicted falls)."""
    call = positive_call(pred, spec)
    return ~call if spec.direction == "down" else call


@dataclass
class PoolResult:
    value: float  # mean final value over pools, net of fees
    gross: float  # the same without fees
    trades: int  # buys over all pools
    curve: pd.Series  # mean pool value after each period end


def _pool_path(
    minutes: np.ndarray, long: np.ndarray, fwd: np.ndarray, start: int, horizon: int, fee: float
) -> tuple[list[int], list[float], float, int]:
    """One pool: decision rows from ``start`` on, one per horizon; returns (ends, values,
    gross, buys)."""
    n = len(minutes)

    def on_phase(target: int) -> int:
        """The first row at or after ``target``; after a hole, the first on this pool's phase
        (so the pools stay staggered instead of all restarting at the same minute)."""
        i = int(np.searchsorted(minutes, target, side="left"))
        if i < n and minutes[i] != target:
            resume = int(minutes[i]) + (start - int(minutes[i])) % horizon
            i = int(np.searchsorted(minutes, resume, side="left"))
        return i

    i = on_phase(start)
    value, gross, holding, buys = 1.0, 1.0, False, 0
    ends: list[int] = []
    values: list[float] = []
    previous_end: int | None = None
    while i < n and not math.isnan(fwd[i]):
        if holding and previous_end is not None and minutes[i] != previous_end:
            value *= 1.0 - fee  # a hole in the data: close out, the gap's move is unknown
            holding = False
        if long[i] and not holding:
            value *= 1.0 - fee
            holding, buys = True, buys + 1
        elif not long[i] and holding:
            value *= 1.0 - fee
            holding = False
        if holding:
            value *= 1.0 + fwd[i]
            gross *= 1.0 + fwd[i]
        previous_end = int(minutes[i]) + horizon
        ends.append(previous_end)
        values.append(value * ((1.0 - fee) if holding else 1.0))  # marked as if sold
        i = on_phase(previous_end)
    if holding:
        value *= 1.0 - fee
    return ends, values, gross, buys


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
        return PoolResult(1.0, 1.0, 0, pd.Series(dtype="float64"))
    finals, grosses, curves, buys = [], [], [], 0
    for p in range(n_pools):
        start = int(minutes[0]) + p * horizon_minutes // n_pools
        ends, values, gross, pool_buys = _pool_path(minutes, long, fwd, start, horizon_minutes, fee)
        finals.append(values[-1] if values else 1.0)
        grosses.append(gross)
        buys += pool_buys
        curves.append(
            pd.Series(values, index=pd.to_datetime(ends, unit="m", utc=True), dtype="float64")
        )
    combined = pd.concat(curves, axis=1).sort_index().ffill().fillna(1.0).mean(axis=1)
    return PoolResult(float(np.mean(finals)), float(np.mean(grosses)), buys, combined)


def score_fold(
    times: pd.DatetimeIndex,
    y: np.ndarray,
    forward_return: np.ndarray,
    pred: np.ndarray,
    spec: TargetSpec,
    *,
    fee: float = DEFAULT_FEE,
) -> tuple[dict[str, float], PoolResult, PoolResult]:
    """Metrics of one fold's predictions, plus the model's and buy-and-hold's pools."""
    y = np.asarray(y, dtype="float64")
    pred = np.asarray(pred, dtype="float64")
    if len(pred) != len(y):
        raise ValueError(f"{len(pred)} predictions for {len(y)} rows")
    error = pred - y
    call, truth = positive_call(pred, spec), positive_truth(y, spec)
    true_pos = int(np.sum(call & truth))
    model_pool = pool_value(times, long_position(pred, spec), forward_return, spec.horizon_minutes,
                            fee=fee)  # fmt: skip
    hold_pool = pool_value(times, np.ones(len(y), bool), forward_return, spec.horizon_minutes,
                           fee=fee)  # fmt: skip
    metrics = {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "directional_accuracy": float(np.mean(call == truth)),
        "precision_up": true_pos / int(call.sum()) if call.any() else float("nan"),
        "recall_up": true_pos / int(truth.sum()) if truth.any() else float("nan"),
        "pool_value_net": model_pool.value,
        "pool_value_gross": model_pool.gross,
        "buy_hold_net": hold_pool.value,
        "trades": float(model_pool.trades),
        "n_test": float(len(y)),
    }
    return metrics, model_pool, hold_pool


# ---------------------------------------------------------------------------------------------
# Candidates and baselines over folds


@dataclass
class CandidateResult:
    """A candidate's out-of-sample record over all folds."""

    name: str
    kind: str  # "model" or "baseline"
    folds: pd.DataFrame  # one row per fold number, columns METRICS
    curve: pd.Series  # pool value chained over the test blocks
    buy_hold_curve: pd.Series
    params: dict[str, object] = field(default_factory=dict)

    def aggregate(self) -> dict[str, float]:
        """Means over folds, plus ``newest_*`` figures from the newest fold."""
        means = self.folds.mean(numeric_only=True).to_dict()
        means["trades"] = float(self.folds["trades"].sum())
        means["n_test"] = float(self.folds["n_test"].sum())
        newest = self.folds.iloc[-1]
        for name in ("pool_value_net", "buy_hold_net", "directional_accuracy", "mae"):
            means[f"newest_{name}"] = float(newest[name])
        return {k: float(v) for k, v in means.items()}

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


def _chain(curves: list[pd.Series]) -> pd.Series:
    chained, level = [], 1.0
    for curve in curves:
        if curve.empty:
            continue
        chained.append(curve * level)
        level *= float(curve.iloc[-1])
    return pd.concat(chained) if chained else pd.Series(dtype="float64")


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
) -> CandidateResult:
    """Run ``predict(fold)`` (fit on ``fold.train``, predict ``fold.test``) on every fold."""
    rows, curves, hold_curves = [], [], []
    for fold in folds:
        pred = predict(fold)
        metrics, pool, hold = score_fold(
            times[fold.test], y[fold.test], forward_return[fold.test], pred, spec, fee=fee
        )
        rows.append({"fold": fold.number, **metrics})
        curves.append(pool.curve)
        hold_curves.append(hold.curve)
    frame = pd.DataFrame(rows).set_index("fold")
    return CandidateResult(name, kind, frame, _chain(curves), _chain(hold_curves), params or {})


def baseline_predictions(
    past_return: np.ndarray, recent_mean: np.ndarray, spec: TargetSpec
) -> dict[str, np.ndarray]:
    """What the baselines predict at each row, from causal inputs only.

    ``past_return``: the return over the last ``H`` (momentum); ``recent_mean``: the mean of the
    last :data:`RECENT_MEAN_HORIZONS` such returns. For classifiers a baseline "calls" the event
    when its return estimate reaches the threshold.
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
        hit = r >= spec.threshold if spec.direction == "up" else r <= -spec.threshold
        return hit.astype("float64")

    return {
        "no_change": np.zeros(n),
        "momentum": event(past),
        "recent_mean": event(mean),
        "buy_and_hold": np.full(n, 1.0 if spec.direction == "up" else 0.0),
    }


# ---------------------------------------------------------------------------------------------
# Promotion rule


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    primary_metric: str
    challenger_value: float
    bar: float  # the best value it had to beat
    bar_name: str


def skill_z(directional_accuracy: float, test_minutes: float, horizon_minutes: int) -> float:
    """How many standard errors the accuracy is above 50%, counting one independent outcome per
    horizon of test time (neighbouring minutes share their future and are not independent)."""
    effective = max(1.0, test_minutes / horizon_minutes)
    return (directional_accuracy - 0.5) / (0.5 / math.sqrt(effective))


def decide_promotion(
    challenger: CandidateResult,
    baselines: Sequence[CandidateResult],
    spec: TargetSpec,
    *,
    champion_value: float | None = None,
    champion_scored: bool = True,
    test_minutes: float | None = None,
) -> PromotionDecision:
    """The rule: promote the challenger to champion only if, on the newest fold,

    1. its net pool value (after fees) beats every baseline's (no change = cash, momentum,
       recent mean, buy-and-hold) and the current champion's on the same window, and
    2. its out-of-sample directional accuracy over all folds is above 50% by at least
       :data:`SKILL_Z` standard errors (one independent outcome per horizon of test time).

    Ties do not promote. A champion that could not be scored on the window blocks automatic
    promotion (a person decides with ``pricebot promote``).
    """
    metric = PRIMARY_METRIC
    value = float(challenger.folds[metric].iloc[-1])
    rivals = {b.name: float(b.folds[metric].iloc[-1]) for b in baselines}
    if champion_value is not None:
        rivals["champion"] = float(champion_value)
    bar_name = max(rivals, key=lambda k: rivals[k]) if rivals else "none"
    bar = rivals.get(bar_name, float("-inf"))
    accuracy = challenger.mean_over("directional_accuracy")
    minutes = test_minutes if test_minutes is not None else float(challenger.folds["n_test"].sum())
    z = skill_z(accuracy, minutes, spec.horizon_minutes)
    if not champion_scored:
        return PromotionDecision(
            False,
            "the current champion could not be scored on the newest window; promote by hand",
            metric, value, bar, bar_name,
        )  # fmt: skip
    if not value > bar:
        return PromotionDecision(
            False,
            f"newest-fold {metric} {value:.4f} does not beat {bar_name} ({bar:.4f})",
            metric, value, bar, bar_name,
        )  # fmt: skip
    if z < SKILL_Z:
        return PromotionDecision(
            False,
            f"directional accuracy {accuracy:.3f} is not significantly above 50% "
            f"(z = {z:.2f} < {SKILL_Z})",
            metric, value, bar, bar_name,
        )  # fmt: skip
    return PromotionDecision(
        True,
        f"newest-fold {metric} {value:.4f} beats {bar_name} ({bar:.4f}) and every other rival; "
        f"directional accuracy {accuracy:.3f} (z = {z:.2f})",
        metric, value, bar, bar_name,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Presentation

TABLE_COLUMNS = (
    "mae",
    "rmse",
    "directional_accuracy",
    "precision_up",
    "recall_up",
    "pool_value_net",
    "buy_hold_net",
    "newest_pool_value_net",
    "newest_buy_hold_net",
    "trades",
)


def evaluation_table(results: Sequence[CandidateResult]) -> pd.DataFrame:
    """One row per candidate: means over folds and the newest fold's pool values."""
    rows = []
    for result in results:
        aggregate = result.aggregate()
        rows.append({"candidate": result.name, "kind": result.kind,
                     **{c: aggregate.get(c, float("nan")) for c in TABLE_COLUMNS}})  # fmt: skip
    return pd.DataFrame(rows).set_index("candidate")


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


def plot_evaluation(results: Sequence[CandidateResult], path: Path, title: str = "") -> Path:
    """Pool value over the test blocks (models solid, baselines dotted, buy-and-hold dashed),
    and per-fold bars of the net return and of directional accuracy. One colour per candidate
    throughout."""
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
        axis.set_xticklabels([f"fold {f}" for f in folds])
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
