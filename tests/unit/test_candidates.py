"""The candidate plug-ins: found by import, each fits, predicts and explains itself, and the
trial budget is shared the documented way; class weights for imbalanced events and a clear
error for a one-class set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricebot.errors import DegenerateTargetError, UsageError
from pricebot.forecaster import predict_values
from pricebot.targets import parse_target
from pricebot_training.candidates import (
    CandidatePlugin,
    balanced_weights,
    candidates,
    choose,
    discover,
    feature_importance,
    fit,
    linear_importance,
    split_trials,
    xgboost_candidate,
)
from pricebot_training.tuning import tune

SPEC = parse_target("up2pct24h")
REGRESSION = parse_target("ret60m")
CLASSIFIER = parse_target("dir60m")
FAMILIES = ["ridge", "lasso", "elasticnet", "huber", "xgboost", "lightgbm", "catboost"]


def rows(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Five features; the target leans on the first two (and noise)."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(0, 1, (n, 5)), columns=[f"f{i}" for i in range(5)])
    y = 0.01 * x["f0"] - 0.005 * x["f1"] + rng.normal(0, 0.002, n)
    return x, pd.Series(y, name="label")


def test_the_package_modules_are_the_seven_families_in_their_order() -> None:
    assert [p.name for p in discover()] == FAMILIES


def test_each_family_has_a_classifier_named_for_it() -> None:
    names = {p.name: p.name_for(CLASSIFIER) for p in discover()}

    assert names == {
        "ridge": "logistic",
        "lasso": "logistic_l1",
        "elasticnet": "logistic_elasticnet",
        "huber": "huber_classifier",
        "xgboost": "xgboost",
        "lightgbm": "lightgbm",
        "catboost": "catboost",
    }


@pytest.mark.parametrize("family", discover(), ids=lambda p: p.name)
def test_every_regressor_fits_predicts_and_explains_every_column(
    family: CandidatePlugin,
) -> None:
    x, y = rows()

    model = fit(family.candidate(REGRESSION, {}, seed=0), x, y, REGRESSION)
    pred = predict_values(model, x, "regression")
    importance = feature_importance(model, x)

    assert pred.shape == (len(x),)
    assert np.isfinite(pred).all()
    assert np.corrcoef(pred, y)[0, 1] > 0.5  # it learnt the lean on f0 and f1
    assert set(importance["mean_abs"]) == set(x.columns)
    assert next(iter(importance["mean_abs"])) == "f0"  # the strongest feature first


@pytest.mark.parametrize("family", discover(), ids=lambda p: p.name)
def test_every_classifier_gives_probabilities_with_balanced_weights(
    family: CandidatePlugin,
) -> None:
    x, y = rows()
    noisy = y + np.random.default_rng(1).normal(0, 0.01, len(y))
    event = (noisy > noisy.quantile(0.8)).astype("float64")  # a rare, noisy event: 20% of rows

    candidate = family.candidate(CLASSIFIER, {}, seed=0)
    model = fit(candidate, x, event, CLASSIFIER)
    p = predict_values(model, x, "classification")
    unweighted = predict_values(fit(candidate, x, event, CLASSIFIER, "none"), x, "classification")

    assert ((p >= 0) & (p <= 1)).all()
    # balanced weights: the rare event gets more probability than an unweighted fit gives it
    assert float(np.mean(p)) > float(np.mean(unweighted))
    assert set(feature_importance(model, x)["mean_abs"]) == set(x.columns)


def test_the_budget_gives_trees_three_shares_and_linear_models_one() -> None:
    shares = split_trials(10, discover())

    assert shares == {"ridge": 1, "lasso": 1, "elasticnet": 1, "huber": 1, "xgboost": 2,
                      "lightgbm": 2, "catboost": 2}  # fmt: skip
    assert sum(split_trials(30, discover()).values()) == 30
    assert set(split_trials(0, discover()).values()) == {0}


def test_the_first_trial_is_the_defaults_so_tuning_never_scores_worse_than_them() -> None:
    x, y = rows()
    n = len(x)
    from pricebot.evaluation import Fold

    folds = [Fold(1, np.arange(0, 200), np.arange(220, 300), pd.Timestamp(0, tz="UTC"),
                  pd.Timestamp(1, tz="UTC"), 1),
             Fold(2, np.arange(0, 300), np.arange(320, n), pd.Timestamp(0, tz="UTC"),
                  pd.Timestamp(1, tz="UTC"), 1)]  # fmt: skip

    class Data:
        features, label, spec = x, y, REGRESSION

    family = next(p for p in discover() if p.name == "lightgbm")
    tuned = tune(family, Data(), folds, trials=4, seed=0)

    defaults = tuned.study.trials[0]
    assert {k: defaults.params[k] for k in defaults.params} == {
        k: v for k, v in family.defaults(REGRESSION).items() if k in defaults.params
    }
    assert tuned.best_value <= defaults.value
    assert tuned.trials == 4


def test_a_family_whose_library_is_missing_says_how_to_install_it() -> None:
    absent = CandidatePlugin(
        name="absent", build=lambda s, p, seed: None, defaults=lambda s: {},
        importance=linear_importance, imports=("no_such_library_here",),
        install_hint="install pricebot[absent]",
    )  # fmt: skip

    assert absent.missing() == (
        "absent: no_such_library_here is not installed (install pricebot[absent])"
    )


def test_naming_an_unknown_candidate_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match="No candidate 'forest'; the candidates are ridge, lasso"):
        choose(REGRESSION, ["forest"])


# Class weights (the gate's tests) ------------------------------------------------------------


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
