"""The promotion gate: a challenger becomes champion only if data that neither tuning nor winner
selection saw shows skill that its rivals do not have.

**The window that decides** is the held-out fold: the newest walk-forward test block, which
Optuna, the winner rule and the classifiers' decision thresholds never see (they use the
selection folds). A run needs at least two folds (:func:`check_fold_count`), and the window
at least :attr:`GateSettings.min_holds` non-overlapping ``H``-minute holds.

**Two tests, both must pass** (each one-sided at :attr:`GateSettings.confidence`):

1. *Money.* The challenger's net pool value on the window beats every rival's, each by a margin
   the data supports. The rivals: every baseline, **cash** (never invested, pool value 1.0,
   for every target, ``down`` targets included) and the current champion. The margin is the
   lower confidence bound of ``challenger / rival - 1`` from a circular block bootstrap over
   the window's non-overlapping holds (:func:`pricebot.evaluation.pool_log_factors`): each
   resample draws blocks of consecutive holds (block length about the cube root of their
   number, for the dependence that volatility clustering leaves between neighbours), the same
   draws for the challenger and the rival (a paired comparison), and rebuilds both pool values.
   A tie, or a lead smaller than the noise (1.1498 against 1.1495), promotes nothing.
2. *Skill.* Its directional accuracy beats the right null **on the same rows**, paired: the best
   accuracy among the baselines' calls and, for classifiers, the majority-class rate (always
   calling the more frequent outcome, which an always-long classifier in a rising market
   matches without any skill). The per-row difference of hits is averaged over consecutive
   ``H``-minute blocks (rows within one share their future), and the block means are tested with
   a t-test whose variance adds the lag-1 covariance (neighbouring blocks' label windows overlap).

A champion that cannot be scored on the window blocks automatic promotion (a person decides with
``pricebot promote``). Choosing the strongest rival on the very rows being tested can only make
the bar higher: the gate errs towards keeping the champion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BeforeValidator

from pricebot.errors import UsageError
from pricebot.evaluation import (
    CASH,
    DEFAULT_FEE,
    PRIMARY_METRIC,
    CandidateResult,
    Fold,
    pool_log_factors,
    pool_value,
    positive_truth,
)
from pricebot.targets import TargetSpec

MIN_FOLDS = 2


def _none_to_nan(value: Any) -> Any:
    return math.nan if value is None else value


#: A float that may be undefined: NaN in memory, null in JSON.
Number = Annotated[float, BeforeValidator(_none_to_nan)]


@dataclass(frozen=True)
class GateSettings:
    confidence: float = 0.95  # one-sided, for both tests
    resamples: int = 2000  # bootstrap resamples
    seed: int = 0  # the bootstrap's draws: the same data always gets the same decision
    min_holds: int = 20  # non-overlapping holds in the window, below which nothing is decided


@dataclass(frozen=True)
class HeldOut:
    """The rows that decide: the held-out fold's test rows and what happened after each."""

    fold: int
    times: pd.DatetimeIndex
    label: np.ndarray
    forward_return: np.ndarray

    @classmethod
    def of(
        cls, fold: Fold, times: pd.DatetimeIndex, label: np.ndarray, forward_return: np.ndarray
    ) -> HeldOut:
        return cls(fold.number, times[fold.test], np.asarray(label)[fold.test],
                   np.asarray(forward_return)[fold.test])  # fmt: skip

    @property
    def first_minute(self) -> int:
        return int(self.times.asi8[0] // 60_000_000_000) if len(self.times) else 0


@dataclass(frozen=True)
class RivalMargin:
    """The challenger's lead over one rival on the window, and how sure the data is of it."""

    rival: str
    value: Number  # the rival's net pool value
    margin: Number  # challenger / rival - 1
    lower_bound: Number  # one-sided lower confidence bound of the margin (block bootstrap)
    beaten: bool


@dataclass(frozen=True)
class AccuracyTest:
    """Directional accuracy against the null on the same rows (paired)."""

    accuracy: Number
    null: str  # a baseline's name, or "majority class (...)"
    null_accuracy: Number
    difference: Number
    t: Number
    critical: Number
    blocks: int
    passed: bool


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    primary_metric: str
    challenger_value: Number  # the challenger's net pool value on the window
    bar: Number  # the strongest rival's
    bar_name: str
    held_out_fold: int | None = None
    holds: int = 0  # non-overlapping H-minute holds in the window
    margins: list[RivalMargin] = field(default_factory=list)
    accuracy: AccuracyTest | None = None
    failed: list[str] = field(default_factory=list)  # one line per failed check
    method: str = ""


def check_fold_count(n_folds: int) -> None:
    """Refuse a run that would tune, select and decide on the same data."""
    if n_folds < MIN_FOLDS:
        raise UsageError(
            f"--folds {n_folds} leaves no held-out data: the selection folds tune XGBoost, choose "
            "the winner and the decision threshold, and only the newest fold, which none of "
            "that saw, may decide promotion. Use --folds 2 or more (the default is 5)."
        )


# ---------------------------------------------------------------------------------------------
# The two tests


def bootstrap_counts(slots: int, settings: GateSettings) -> np.ndarray:
    """How often each hold appears in each resample, ``(resamples, slots)``: circular blocks of
    about ``slots ** (1/3)`` consecutive holds, drawn with replacement."""
    rng = np.random.default_rng(settings.seed)
    length = max(1, round(slots ** (1 / 3)))
    blocks = math.ceil(slots / length)
    starts = rng.integers(0, slots, size=(settings.resamples, blocks))
    picked = ((starts[:, :, None] + np.arange(length)) % slots).reshape(settings.resamples, -1)
    picked = picked[:, :slots] + (np.arange(settings.resamples) * slots)[:, None]
    counts = np.bincount(picked.ravel(), minlength=settings.resamples * slots)
    return counts.reshape(settings.resamples, slots).astype("float64")


def _resampled_values(factors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The pool value (mean over pools) in each resample."""
    return np.exp(counts @ factors.T).mean(axis=1)


def pool_margins(
    challenger: CandidateResult,
    rivals: Sequence[CandidateResult],
    spec: TargetSpec,
    window: HeldOut,
    *,
    fee: float = DEFAULT_FEE,
    settings: GateSettings = GateSettings(),
) -> tuple[list[RivalMargin], int]:
    """The challenger's margin over each rival on the window, and the number of holds."""
    horizon = spec.horizon_minutes

    def factors(result: CandidateResult) -> tuple[float, np.ndarray]:
        pool = pool_value(window.times, result.long(window.fold, spec), window.forward_return,
                          horizon, fee=fee)  # fmt: skip
        return pool.value, pool_log_factors(pool, window.first_minute, horizon)

    value, mine = factors(challenger)
    slots = mine.shape[1]
    counts = bootstrap_counts(slots, settings) if slots else np.zeros((0, 0))
    resampled = _resampled_values(mine, counts) if slots else np.zeros(0)
    margins = []
    for rival in rivals:
        rival_value, theirs = factors(rival)
        margin = value / rival_value - 1.0
        if slots and theirs.shape == mine.shape:
            ratios = resampled / _resampled_values(theirs, counts) - 1.0
            lower = float(np.quantile(ratios, 1.0 - settings.confidence))
        else:
            lower = math.nan
        beaten = bool(margin > 0 and lower > 0)
        margins.append(RivalMargin(rival.name, rival_value, margin, lower, beaten))
    return margins, slots


def accuracy_test(
    challenger: CandidateResult,
    baselines: Sequence[CandidateResult],
    spec: TargetSpec,
    window: HeldOut,
    *,
    settings: GateSettings = GateSettings(),
) -> AccuracyTest:
    """Paired test of the challenger's hits against the best null's on the window's rows."""
    truth = positive_truth(window.label, spec)
    hits = challenger.calls(window.fold, spec) == truth
    nulls: dict[str, np.ndarray] = {}
    if spec.is_classification and len(truth):  # first: it names a tie with a constant baseline
        majority = bool(truth.mean() >= 0.5)
        outcome = "the event" if majority else "no event"
        nulls[f"majority class (always {outcome})"] = truth == majority
    for baseline in baselines:
        if math.isfinite(baseline.folds.loc[window.fold, "directional_accuracy"]):
            nulls[baseline.name] = baseline.calls(window.fold, spec) == truth
    null = max(nulls, key=lambda k: float(nulls[k].mean())) if nulls else "none"
    null_hits = nulls.get(null, np.zeros(len(truth), bool))
    difference = hits.astype("float64") - null_hits.astype("float64")
    minutes = window.times.asi8 // 60_000_000_000 - window.first_minute
    block = pd.Series(difference).groupby(minutes // spec.horizon_minutes).mean().to_numpy()
    blocks = len(block)
    mean = float(block.mean()) if blocks else 0.0
    t, critical = 0.0, math.inf
    if blocks >= 3:
        from scipy.stats import t as student

        centred = block - mean
        gamma0 = float(np.mean(centred**2))
        gamma1 = float(np.mean(centred[1:] * centred[:-1]))
        variance = (gamma0 + 2.0 * max(gamma1, 0.0)) / blocks
        if variance > 0:
            t = mean / math.sqrt(variance)
        elif mean > 0:
            t = math.inf
        critical = float(student.ppf(settings.confidence, blocks - 1))
    return AccuracyTest(
        accuracy=float(hits.mean()) if len(hits) else math.nan,
        null=null,
        null_accuracy=float(null_hits.mean()) if len(null_hits) else math.nan,
        difference=float(difference.mean()) if len(difference) else math.nan,
        t=t,
        critical=critical,
        blocks=blocks,
        passed=bool(blocks >= 3 and mean > 0 and t >= critical),
    )


# ---------------------------------------------------------------------------------------------
# The decision


def decide_promotion(
    challenger: CandidateResult,
    baselines: Sequence[CandidateResult],
    spec: TargetSpec,
    window: HeldOut,
    *,
    champion: CandidateResult | None = None,
    champion_scored: bool = True,
    fee: float = DEFAULT_FEE,
    settings: GateSettings = GateSettings(),
) -> PromotionDecision:
    """Promote ``challenger`` only if it passes both tests on ``window`` (module docstring).

    ``baselines`` must include cash (:func:`pricebot.evaluation.evaluate_baselines` does);
    ``champion`` is the current champion scored on the window (None when there is none).
    """
    if CASH not in {b.name for b in baselines}:
        raise ValueError("the baselines must include cash: it is a rival for every target")
    rivals = [*baselines, *([champion] if champion is not None else [])]
    margins, holds = pool_margins(challenger, rivals, spec, window, fee=fee, settings=settings)
    accuracy = accuracy_test(challenger, baselines, spec, window, settings=settings)
    value = float(challenger.folds.loc[window.fold, PRIMARY_METRIC])
    strongest = max(margins, key=lambda m: m.value)
    where = (
        f"held-out fold {window.fold} ({len(window.times):,} rows, {holds} non-overlapping "
        f"{spec.horizon_minutes}-minute holds)"
    )
    length = max(1, round(holds ** (1 / 3))) if holds else 0
    level = f"{settings.confidence:.0%}"
    method = (
        f"pool value: circular block bootstrap, {settings.resamples} resamples of the {holds} "
        f"holds in blocks of {length}, paired with each rival, one-sided {level} lower bound of "
        f"the margin; accuracy: paired t-test of per-row hits against the null, averaged over "
        f"{spec.horizon_minutes}-minute blocks with a lag-1 covariance term, one-sided {level}"
    )

    failed = []
    if not champion_scored:
        failed.append("the current champion could not be scored on the held-out window; "
                      "promote by hand")  # fmt: skip
    if holds < settings.min_holds:
        failed.append(
            f"the window holds {holds} non-overlapping {spec.horizon_minutes}-minute holds, "
            f"fewer than the {settings.min_holds} the gate needs to tell skill from luck (use a "
            "longer date range, fewer --folds for a longer held-out block, or a shorter horizon)"
        )
    for m in margins:
        if not m.beaten:
            failed.append(
                f"{PRIMARY_METRIC} {value:.4f} does not beat {m.rival} ({m.value:.4f}) by a "
                f"margin the data supports ({m.margin:+.2%}, {level} lower bound "
                f"{m.lower_bound:+.2%})"
            )
    if not accuracy.passed:
        failed.append(
            f"directional accuracy {accuracy.accuracy:.3f} is not significantly above "
            f"{accuracy.null} ({accuracy.null_accuracy:.3f}) on the same rows (paired "
            f"t = {accuracy.t:.2f} < {accuracy.critical:.2f} over {accuracy.blocks} blocks)"
        )
    if failed:
        reason = f"{where}: " + "; ".join(failed)
    else:
        closest = min(margins, key=lambda m: m.lower_bound)
        reason = (
            f"{where}: {PRIMARY_METRIC} {value:.4f} beats every rival by a margin the data "
            f"supports (closest: {closest.rival} {closest.value:.4f}, {closest.margin:+.2%}, "
            f"{level} lower bound {closest.lower_bound:+.2%}); directional accuracy "
            f"{accuracy.accuracy:.3f} beats {accuracy.null} ({accuracy.null_accuracy:.3f}) on "
            f"the same rows (paired t = {accuracy.t:.2f} >= {accuracy.critical:.2f} over "
            f"{accuracy.blocks} blocks)"
        )
    return PromotionDecision(
        promote=not failed,
        reason=reason,
        primary_metric=PRIMARY_METRIC,
        challenger_value=value,
        bar=strongest.value,
        bar_name=strongest.rival,
        held_out_fold=window.fold,
        holds=holds,
        margins=margins,
        accuracy=accuracy,
        failed=failed,
        method=method,
    )
