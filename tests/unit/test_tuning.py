"""The tuning's best trial hands its selection-fold predictions to the job's scoring, which
reuses them instead of fitting the same model on the same rows again; only folds the tuning
did not fit (the held-out one) are fitted afresh, and a candidate whose parameters differ from
the trial's reuses nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pricebot.evaluation import Fold
from pricebot.forecaster import predict_values
from pricebot.targets import parse_target
from pricebot_training.candidates import CandidatePlugin, discover, fit
from pricebot_training.job import _fitted_predict
from pricebot_training.tuning import tune

REGRESSION = parse_target("ret60m")


def _data(n: int = 500, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(0, 1, (n, 5)), columns=[f"f{i}" for i in range(5)])
    y = 0.01 * x["f0"] - 0.005 * x["f1"] + rng.normal(0, 0.002, n)
    return x, pd.Series(y, name="label")


def _folds() -> list[Fold]:
    t0, t1 = pd.Timestamp(0, tz="UTC"), pd.Timestamp(1, tz="UTC")
    return [
        Fold(1, np.arange(0, 200), np.arange(220, 300), t0, t1, 1),
        Fold(2, np.arange(0, 300), np.arange(320, 400), t0, t1, 1),
        Fold(3, np.arange(0, 400), np.arange(420, 500), t0, t1, 1),
    ]


@dataclasses.dataclass
class _Data:
    features: pd.DataFrame
    label: pd.Series
    spec: object = REGRESSION


def _counting(family: CandidatePlugin, fits: list[int]) -> CandidatePlugin:
    """The family itself, its estimator builds counted (each build is one fit)."""

    def build(spec, params, seed):  # type: ignore[no-untyped-def]
        fits.append(1)
        return family.build(spec, params, seed)

    return dataclasses.replace(family, build=build)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm", "ridge", "huber"])
def test_the_best_trials_fold_predictions_are_a_fresh_fit_of_its_parameters(name: str) -> None:
    # Given a family tuned on two selection folds
    x, y = _data()
    family = next(p for p in discover() if p.name == name)
    selection = _folds()[:2]
    tuned = tune(family, _Data(x, y), selection, trials=3, seed=0)

    # When the tuned candidate is fitted afresh on each selection fold
    candidate = family.candidate(REGRESSION, tuned.best_params, 0)
    fresh = {
        f.number: predict_values(fit(candidate, x.iloc[f.train], y.iloc[f.train], REGRESSION),
                                 x.iloc[f.test], REGRESSION.kind)
        for f in selection
    }  # fmt: skip

    # Then the kept predictions are those, from the very same parameters
    assert tuned.fitted_params == candidate.params
    assert sorted(tuned.fold_predictions) == [1, 2]
    for number, predictions in fresh.items():
        np.testing.assert_array_equal(tuned.fold_predictions[number], predictions)


def test_scoring_a_tuned_candidate_fits_only_the_folds_the_tuning_did_not() -> None:
    # Given ridge tuned (its defaults, one trial) on folds 1 and 2 of three
    x, y = _data()
    folds = _folds()
    data = _Data(x, y)
    family = next(p for p in discover() if p.name == "ridge")
    tuned = tune(family, data, folds[:2], trials=1, seed=0)
    fits: list[int] = []
    counted = _counting(family, fits)
    candidate = counted.candidate(REGRESSION, tuned.best_params, 0)
    newest: dict[str, object] = {}

    # When it is scored on every fold
    predict = _fitted_predict(candidate, data, newest, "balanced", tuned)  # type: ignore[arg-type]
    predictions = [predict(f) for f in folds]

    # Then only fold 3 was fitted, its model is the newest, and folds 1-2 are the trial's
    assert len(fits) == 1
    assert newest["ridge"] is not None
    np.testing.assert_array_equal(predictions[0], tuned.fold_predictions[1])
    np.testing.assert_array_equal(predictions[1], tuned.fold_predictions[2])


def test_a_candidate_with_other_parameters_than_the_trials_reuses_nothing() -> None:
    # Given ridge tuned at its defaults on folds 1 and 2
    x, y = _data()
    folds = _folds()
    data = _Data(x, y)
    family = next(p for p in discover() if p.name == "ridge")
    tuned = tune(family, data, folds[:2], trials=1, seed=0)
    fits: list[int] = []
    key = next(iter(tuned.fitted_params))
    other = {key: tuned.fitted_params[key] * 10}
    candidate = _counting(family, fits).candidate(REGRESSION, other, 0)

    # When a candidate with another value of its parameter is scored on every fold
    predict = _fitted_predict(candidate, data, {}, "balanced", tuned)  # type: ignore[arg-type]
    for fold in folds:
        predict(fold)

    # Then every fold was fitted
    assert len(fits) == 3
