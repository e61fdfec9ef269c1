"""The candidate plug-ins: found by import, each fits, predicts and explains itself, and the
trial budget is shared the documented way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricebot.errors import UsageError
from pricebot.forecaster import predict_values
from pricebot.targets import parse_target
from pricebot_training.candidates import (
    CandidatePlugin,
    choose,
    discover,
    feature_importance,
    fit,
    linear_importance,
    split_trials,
)
from pricebot_training.tuning import tune

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
