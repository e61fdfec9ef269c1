"""Candidate fitting: class weights for imbalanced events, a clear error for a one-class set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricebot.errors import DegenerateTargetError
from pricebot.targets import parse_target
from pricebot_training.candidates import (
    balanced_weights,
    candidates,
    fit,
    xgboost_candidate,
)

SPEC = parse_target("up2pct24h")


def rare_event(n: int = 4000, rate: float = 0.1, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """An event that happens ``rate`` of the time, weakly tied to one feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (rng.uniform(size=n) < rate * np.exp(0.3 * x[:, 0]) / np.exp(0.045)).astype(float)
    return pd.DataFrame(x, columns=["a", "b", "c"]), pd.Series(y)


def test_balanced_weights_give_each_class_half_of_the_total() -> None:
    y = np.array([1.0, 0.0, 0.0, 0.0])

    weights = balanced_weights(y)

    assert weights[y == 1].sum() == pytest.approx(weights[y == 0].sum())
    assert weights.sum() == pytest.approx(len(y))


@pytest.mark.parametrize("name", ["logistic", "xgboost"])
def test_balanced_class_weights_keep_a_rare_event_from_being_learnt_as_never(name: str) -> None:
    # Given an event in 10% of the rows
    x, y = rare_event()
    candidate = (
        xgboost_candidate(SPEC, {"n_estimators": 50}, 0)
        if name == "xgboost"
        else next(c for c in candidates(SPEC, 0) if c.name == name)
    )

    # When fitted with and without class weights
    weighted = fit(candidate, x, y, SPEC, "balanced").predict_proba(x)[:, 1]
    plain = fit(candidate, x, y, SPEC, "none").predict_proba(x)[:, 1]

    # Then unweighted probabilities sit at the base rate (below 0.5 everywhere: "never"), and
    # weighted ones centre on 0.5, so a threshold can split the rows
    assert plain.mean() == pytest.approx(y.mean(), abs=0.03)
    assert (plain < 0.5).mean() > 0.95
    assert 0.4 < weighted.mean() < 0.6
    assert 0.2 < (weighted >= 0.5).mean() < 0.8


def test_a_regression_ignores_class_weights() -> None:
    x, _ = rare_event()
    y = pd.Series(x["a"].to_numpy() * 0.01)
    ridge = next(c for c in candidates(parse_target("ret24h"), 0) if c.name == "ridge")

    weighted = fit(ridge, x, y, parse_target("ret24h"), "balanced").predict(x)
    plain = fit(ridge, x, y, parse_target("ret24h"), "none").predict(x)

    np.testing.assert_allclose(weighted, plain)


def test_an_event_that_never_happens_is_a_clear_error() -> None:
    x, _ = rare_event(n=100)

    with pytest.raises(DegenerateTargetError, match="never happens in a training set of 100 rows"):
        fit(candidates(SPEC, 0)[0], x, pd.Series(np.zeros(100)), SPEC)
