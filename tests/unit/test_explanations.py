"""Per-prediction explanations: each decomposition adds up to what the model answered."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from scipy.special import logit
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import HuberRegressor, LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pricebot.errors import ExplanationUnavailableError
from pricebot.explanations import LINEAR, LOG_ODDS, OUTPUT, TREESHAP, explain

COLUMNS = [f"f{i}" for i in range(8)]
RNG = np.random.default_rng(3)
X = RNG.normal(0, 1, (400, len(COLUMNS))) * np.arange(1, 9) + np.arange(8)  # unequal scales
Y = 0.01 * (2.0 * X[:, 2] - 0.5 * X[:, 5]) + RNG.normal(0, 0.002, len(X))
UP = (Y - np.median(Y) > 0).astype(int)
ROW = X[7]


def test_trees_are_explained_by_treeshap_adding_up_to_the_prediction() -> None:
    model = xgb.XGBRegressor(n_estimators=60, max_depth=3, n_jobs=1).fit(X, Y)

    explanation = explain(model, COLUMNS, ROW)

    assert (explanation.method, explanation.space) == (TREESHAP, OUTPUT)
    assert explanation.total == pytest.approx(float(model.predict(ROW.reshape(1, -1))[0]), abs=1e-5)
    assert explanation.top[0].feature == "f2"  # the feature the target is made of


def test_a_tree_classifier_is_explained_in_log_odds() -> None:
    model = xgb.XGBClassifier(n_estimators=60, max_depth=3, n_jobs=1).fit(X, UP)

    explanation = explain(model, COLUMNS, ROW)

    probability = float(model.predict_proba(ROW.reshape(1, -1))[0, 1])
    assert explanation.space == LOG_ODDS
    assert explanation.total == pytest.approx(logit(probability), abs=1e-4)


@pytest.mark.parametrize(
    "model",
    [
        TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), Ridge(alpha=10.0)),
            transformer=StandardScaler(),
        ),
        TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), HuberRegressor(alpha=10.0, max_iter=300)),
            transformer=StandardScaler(),
        ),
        LinearRegression(),
    ],
    ids=["ridge-scaled-target", "huber-scaled-target", "plain-linear"],
)
def test_a_linear_model_is_coefficient_times_standardised_value(model) -> None:
    model.fit(X, Y)

    explanation = explain(model, COLUMNS, ROW)

    assert (explanation.method, explanation.space) == (LINEAR, OUTPUT)
    assert explanation.total == pytest.approx(float(model.predict(ROW.reshape(1, -1))[0]))
    assert explanation.top[0].feature == "f2"


def test_a_linear_contribution_is_the_coefficient_times_the_standardised_value() -> None:
    scaler = StandardScaler().fit(X)
    ridge = Ridge(alpha=1.0).fit(scaler.transform(X), Y)
    model = make_pipeline(scaler, ridge)

    explanation = explain(model, COLUMNS, ROW, top=len(COLUMNS))

    by_feature = {c.feature: c.contribution for c in explanation.top}
    z = (ROW[2] - scaler.mean_[2]) / scaler.scale_[2]
    assert by_feature["f2"] == pytest.approx(ridge.coef_[2] * z)
    assert explanation.base == pytest.approx(ridge.intercept_)
    assert explanation.rest == 0.0


def test_a_logistic_pipeline_is_explained_in_log_odds() -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, UP)

    explanation = explain(model, COLUMNS, ROW)

    probability = float(model.predict_proba(ROW.reshape(1, -1))[0, 1])
    assert explanation.space == LOG_ODDS
    assert explanation.total == pytest.approx(logit(probability))


def test_the_top_contributions_are_the_largest_and_the_rest_is_folded() -> None:
    model = LinearRegression().fit(X, Y)

    explanation = explain(model, COLUMNS, ROW, top=3)

    sizes = [abs(c.contribution) for c in explanation.top]
    everything = explain(model, COLUMNS, ROW, top=len(COLUMNS))
    assert len(explanation.top) == 3
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] >= max(abs(c.contribution) for c in everything.top[3:])
    assert explanation.rest == pytest.approx(sum(c.contribution for c in everything.top[3:]))


def test_a_model_of_another_kind_is_refused_naming_it() -> None:
    model = RandomForestRegressor(n_estimators=5).fit(X, Y)

    with pytest.raises(ExplanationUnavailableError, match="RandomForestRegressor is neither"):
        explain(model, COLUMNS, ROW)
