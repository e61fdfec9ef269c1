"""The promotion gate: the right null, held-out data only, cash as a rival, a margin the data
supports, enough holds, the champion. Each scenario is built from minute returns and explicit
predictions, so what the gate sees is exactly what the test says."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from pricebot.errors import UsageError
from pricebot.evaluation import (
    CandidateResult,
    Fold,
    evaluate_baselines,
    evaluate_candidate,
    walk_forward_folds,
)
from pricebot.gate import (
    GateSettings,
    HeldOut,
    bootstrap_counts,
    check_fold_count,
    decide_promotion,
)
from pricebot.labels import compute_labels, past_returns
from pricebot.targets import TargetSpec, parse_target

H = 10  # a 10-minute horizon keeps the markets small: 6,000 minutes, 100 holds held out


@dataclass
class Market:
    spec: TargetSpec
    times: pd.DatetimeIndex
    label: np.ndarray
    forward: np.ndarray
    folds: list[Fold]
    baselines: list[CandidateResult]

    @property
    def held_out(self) -> Fold:
        return self.folds[-1]

    def window(self) -> HeldOut:
        return HeldOut.of(self.held_out, self.times, self.label, self.forward)

    def model(self, predictions: np.ndarray, threshold: float | None = None) -> CandidateResult:
        """A model that predicts ``predictions``; a classifier's threshold is chosen on the
        selection folds unless given."""
        return evaluate_candidate("model", self.folds, self.times, self.label, self.forward,
                                  self.spec, lambda f: predictions[f.test], threshold=threshold,
                                  selection=[f.number for f in self.folds[:-1]])  # fmt: skip

    def decide(self, challenger: CandidateResult, **kwargs):
        return decide_promotion(challenger, self.baselines, self.spec, self.window(), **kwargs)


def market(target: str, returns: np.ndarray, folds: int = 5) -> Market:
    """Candles from minute log returns, labelled for ``target``, with every baseline."""
    spec = parse_target(target)
    n = len(returns)
    index = pd.date_range("2026-01-01", periods=n, freq="1min", tz="UTC")
    close = pd.Series(100 * np.exp(np.cumsum(returns)), index=index)
    labels = compute_labels(close.to_frame("close"), spec)
    keep = labels["label"].notna().to_numpy() & (np.arange(n) >= 8 * H)  # baselines' history
    times = index[keep]
    label = labels["label"].to_numpy()[keep]
    forward = labels["forward_return"].to_numpy()[keep]
    past = past_returns(close, H).to_numpy()[keep]
    recent = np.nanmean([past_returns(close, H, k * H).to_numpy()[keep] for k in range(7)], axis=0)
    chosen = walk_forward_folds(times, folds, H, min_train_rows=1)
    baselines = evaluate_baselines(chosen, times, label, forward, past, recent, spec)
    return Market(spec, times, label, forward, chosen, baselines)


def iid(n: int, drift: float, sd: float = 0.002, seed: int = 0) -> np.ndarray:
    """Minute returns in shuffled order: no structure a model could learn."""
    return np.random.default_rng(seed).normal(drift, sd, n)


def lucky(base: np.ndarray, m: Market, rows: int, value: float) -> np.ndarray:
    """``base`` predictions, changed to ``value`` on ``rows`` held-out decision rows where
    stepping aside happened to pay: luck written in by hand, not skill."""
    predictions = base.copy()
    held = m.held_out.test
    falls = held[(m.forward[held] < -0.004) & ((m.times[held].minute % H) == 0)]
    predictions[falls[:rows]] = value
    return predictions


# The right null ---------------------------------------------------------------------------------


def test_an_always_long_classifier_in_a_rising_market_without_signal_is_not_promoted() -> None:
    # Given shuffled returns of a rising market: the event (a 0.2% rise within 10 minutes)
    # happens most of the time, and a classifier that is long almost always, luckily out of
    # the market before two falls of the held-out window
    m = market("up0p2pct10m", iid(6000, drift=0.0004))
    challenger = m.model(lucky(np.full(len(m.times), 0.9), m, rows=2, value=0.1))
    held = m.held_out.number
    assert challenger.folds.loc[held, "directional_accuracy"] > 0.6  # the base rate, not skill
    assert challenger.folds.loc[held, "pool_value_net"] > max(
        b.folds.loc[held, "pool_value_net"] for b in m.baselines
    )  # ahead of every baseline: the old rule promoted this

    # When the gate decides
    decision = m.decide(challenger)

    # Then its accuracy is the majority-class rate, and nothing is promoted
    assert not decision.promote
    assert decision.accuracy is not None
    assert decision.accuracy.null == "majority class (always the event)"
    assert decision.accuracy.difference == pytest.approx(0.0, abs=0.01)
    assert any("not significantly above majority class" in f for f in decision.failed)


def test_a_return_model_must_beat_the_best_baseline_on_the_same_rows_not_fifty_percent() -> None:
    # Given a market whose 10-minute returns continue (momentum is right well above half the
    # time), and
    # a model that is momentum, with one lucky step aside on the held-out window
    rng = np.random.default_rng(1)
    shocks = rng.normal(0, 0.002, 6000)
    returns = shocks + 0.9 * pd.Series(shocks).rolling(H, min_periods=1).mean().shift(1).fillna(0)
    m = market("ret10m", returns.to_numpy())
    momentum = next(b for b in m.baselines if b.name == "momentum")
    copy = np.concatenate([momentum.predictions[f.number] for f in m.folds])
    predictions = np.zeros(len(m.times))
    predictions[np.concatenate([f.test for f in m.folds])] = copy
    challenger = m.model(lucky(predictions, m, rows=1, value=-1.0))
    assert challenger.folds.loc[m.held_out.number, "directional_accuracy"] > 0.55

    decision = m.decide(challenger)

    # Then the null is momentum's accuracy on those rows, which it does not beat
    assert not decision.promote
    assert decision.accuracy is not None
    assert decision.accuracy.null == "momentum"
    assert not decision.accuracy.passed


# Held-out data only ----------------------------------------------------------------------------


def test_skill_on_the_selection_folds_does_not_count_only_the_held_out_fold_decides() -> None:
    # Given a model with perfect foresight on the selection folds and none on the held-out one
    m = market("ret10m", iid(6000, drift=0.0002, seed=2))
    predictions = m.forward.copy()
    predictions[m.held_out.test] = 1.0  # always long there
    challenger = m.model(lucky(predictions, m, rows=2, value=-1.0))
    assert challenger.mean_over("directional_accuracy") > 0.8  # the old all-folds figure

    decision = m.decide(challenger)

    assert not decision.promote
    assert decision.held_out_fold == m.held_out.number
    assert decision.accuracy is not None
    assert decision.accuracy.accuracy == pytest.approx(
        challenger.folds.loc[m.held_out.number, "directional_accuracy"]
    )


def test_one_fold_is_refused_with_what_to_do() -> None:
    with pytest.raises(UsageError, match=r"--folds 1 leaves no held-out data.*--folds 2 or more"):
        check_fold_count(1)


def test_too_few_holds_in_the_held_out_window_decide_nothing() -> None:
    # Given a model with perfect foresight, but a held-out window of 15 holds
    m = market("ret10m", iid(1000, drift=0.0, seed=3))
    assert len(m.held_out.test) < 20 * H

    decision = m.decide(m.model(m.forward.copy()))

    assert not decision.promote
    assert any("fewer than the 20 the gate needs" in f for f in decision.failed)


# Every rival, cash included ---------------------------------------------------------------------


def test_a_down_classifier_that_loses_money_is_not_promoted_though_it_beats_holding() -> None:
    # Given a falling market and a down-classifier that foresees half of the falls (real skill)
    # and holds the coin otherwise: it loses less than buy-and-hold, but it loses
    m = market("down0p2pct10m", iid(6000, drift=-0.0003, seed=4))
    predictions = np.where((m.label == 1.0) & (np.arange(len(m.times)) % 2 == 0), 0.9, 0.1)
    challenger = m.model(predictions, threshold=0.5)
    held = m.held_out.number
    value = challenger.folds.loc[held, "pool_value_net"]
    hold = next(b for b in m.baselines if b.name == "buy_and_hold")
    assert value < 1.0
    assert value > hold.folds.loc[held, "pool_value_net"]

    decision = m.decide(challenger)

    # Then cash, a rival for every target, keeps it out
    assert not decision.promote
    assert "cash" in {r.rival for r in decision.margins}
    assert any("does not beat cash (1.0000)" in f for f in decision.failed)


def test_the_baselines_must_include_cash() -> None:
    m = market("ret10m", iid(6000, drift=0.0, seed=5))
    without_cash = [b for b in m.baselines if b.name != "cash"]

    with pytest.raises(ValueError, match="must include cash"):
        decide_promotion(m.model(m.forward.copy()), without_cash, m.spec, m.window())


# A margin the data supports --------------------------------------------------------------------


def test_a_near_tie_on_pool_value_is_not_promoted() -> None:
    # Given a model that is buy-and-hold but for one lucky step aside: a hair ahead
    m = market("ret10m", iid(6000, drift=0.0003, seed=6))
    challenger = m.model(lucky(np.ones(len(m.times)), m, rows=1, value=-1.0))

    decision = m.decide(challenger)

    # Then a lead smaller than the noise does not count, and the reason says so
    hold = next(r for r in decision.margins if r.rival == "buy_and_hold")
    assert 0 < hold.margin < 0.01
    assert hold.lower_bound <= 0
    assert not decision.promote
    assert any("does not beat buy_and_hold" in f and "lower bound" in f for f in decision.failed)
    assert "block bootstrap" in decision.method


def test_real_skill_is_promoted_with_the_margins_in_the_reason() -> None:
    # Given a model that knows the sign of the next 10 minutes
    m = market("ret10m", iid(6000, drift=0.0, seed=7))

    decision = m.decide(m.model(m.forward.copy()))

    assert decision.promote, decision.reason
    assert all(r.beaten and r.lower_bound > 0 for r in decision.margins)
    assert "beats every rival by a margin the data supports" in decision.reason
    assert decision.accuracy is not None
    assert decision.accuracy.passed


def test_a_classifier_with_skill_is_promoted_over_the_majority_class() -> None:
    m = market("up0p2pct10m", iid(6000, drift=0.0, seed=8))

    decision = m.decide(m.model(np.where(m.label == 1.0, 0.8, 0.2)))

    assert decision.promote, decision.reason


# The champion ----------------------------------------------------------------------------------


def test_a_tie_with_the_champion_is_not_promoted() -> None:
    m = market("ret10m", iid(6000, drift=0.0, seed=9))
    challenger = m.model(m.forward.copy())
    champion = evaluate_candidate("champion", [m.held_out], m.times, m.label, m.forward, m.spec,
                                  lambda f: m.forward[f.test], kind="champion")  # fmt: skip

    decision = m.decide(challenger, champion=champion)

    assert not decision.promote
    assert any("does not beat champion" in f for f in decision.failed)


def test_a_champion_that_cannot_be_scored_blocks_automatic_promotion() -> None:
    m = market("ret10m", iid(6000, drift=0.0, seed=10))

    decision = m.decide(m.model(m.forward.copy()), champion_scored=False)

    assert not decision.promote
    assert "promote by hand" in decision.reason


# The bootstrap ---------------------------------------------------------------------------------


def test_each_resample_draws_as_many_holds_as_there_are_in_blocks_of_consecutive_ones() -> None:
    counts = bootstrap_counts(64, GateSettings(resamples=50, seed=1))

    assert counts.shape == (50, 64)
    assert (counts.sum(axis=1) == 64).all()
    assert counts.max() >= 2  # with replacement


def test_the_same_data_always_gets_the_same_decision() -> None:
    m = market("ret10m", iid(6000, drift=0.0003, seed=11))
    challenger = m.model(lucky(np.ones(len(m.times)), m, rows=3, value=-1.0))

    first, second = m.decide(challenger), m.decide(challenger)

    assert first == second
