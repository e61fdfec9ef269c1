"""Explaining a pooled model's answer, through the real loading path: a pooled estimator fitted
on the feature columns plus one indicator per symbol, logged as the portable model training logs
(``log_forecaster(symbols=...)``), registered on the real MLflow server, loaded by ModelPool."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pricebot.champion import ModelPool, ServedModel
from pricebot.errors import ExplanationUnavailableError
from pricebot.features import feature_names
from pricebot.pooling import indicator_columns
from pricebot.registry import CHAMPION, model_name
from pricebot.targets import parse_target
from pricebot_training.candidates import gbm_xgboost, linear_ridge
from pricebot_training.tracking import log_forecaster

TARGET = "ret23m"  # only this module registers models for it: the MLflow server is shared
SPEC = parse_target(TARGET)
COLUMNS = feature_names("v1")
_pools = (tuple(f"PX{i}{c}USDT" for c in "ABC") for i in itertools.count())

BUILDERS: dict[str, Callable[[], Any]] = {
    "xgboost": lambda: gbm_xgboost.build(SPEC, {"n_estimators": 40, "max_depth": 3}, 0),
    "ridge": lambda: linear_ridge.build(SPEC, linear_ridge.defaults(SPEC), 0),
}


def serve_pooled(tracking_uri: str, family: str, symbols: tuple[str, ...], serve: str) -> Any:
    """Fit a pooled ``family`` model whose symbols differ by a large offset, register it as the
    champion of ``serve``'s slot with the tags a pooled version carries, and load it."""
    rng = np.random.default_rng(7)
    rows = 600
    x = pd.DataFrame(rng.normal(0, 1, (rows, len(COLUMNS))), columns=COLUMNS)
    names = np.array(symbols)[np.arange(rows) % len(symbols)]
    for symbol, column in zip(symbols, indicator_columns(symbols), strict=True):
        x[column] = (names == symbol).astype("float64")
    offsets = {s: 0.02 * i for i, s in enumerate(symbols)}  # the symbol matters most
    y = np.array([offsets[s] for s in names]) + 0.001 * x[COLUMNS[0]].to_numpy()
    estimator = BUILDERS[family]().fit(x, y)
    features = x[COLUMNS].assign(symbol=names)

    name = model_name(serve, TARGET)
    mlflow.set_experiment("tests-pooled-explanations")
    with mlflow.start_run():
        info = log_forecaster(estimator, features, "regression", symbols=list(symbols))
    version = mlflow.register_model(info.model_uri, name).version
    client = MlflowClient(tracking_uri)
    tags = {"feature_set": "v1", "horizon_minutes": "23", "pool": "true",
            "symbols": ",".join(symbols)}  # fmt: skip
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHAMPION, version)
    pool = ModelPool([serve], [TARGET], tracking_uri=tracking_uri)
    pool.refresh()
    return pool.get(serve, TARGET)


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_a_pooled_answer_is_explained_with_the_symbols_own_contribution(
    tracking_uri: str, family: str
) -> None:
    # Given a pooled model of three coins, served for the last one (the largest offset)
    symbols = next(_pools)
    served: ServedModel = serve_pooled(tracking_uri, family, symbols, symbols[2])
    values = np.linspace(-1, 1, len(COLUMNS))

    # When its answer for a feature row is explained
    explanation = served.explain(values, 5)

    # Then the symbol's indicator is among the top contributions, valued 1 for this coin,
    # and everything adds up to the answer the model gave
    top = {c.feature: c for c in explanation.top}
    own = top[f"symbol={symbols[2]}"]
    assert own.value == 1.0
    assert own.contribution > 0
    assert explanation.total == pytest.approx(served.predict(values), abs=1e-6)


def test_a_pooled_model_without_its_symbols_is_unexplained_saying_why() -> None:
    # Given a pooled model whose loaded form did not name its symbols
    symbols = next(_pools)
    served = ServedModel(
        symbol=symbols[0], target=TARGET, name=model_name(symbols[0], TARGET), version="3",
        alias=CHAMPION, feature_set="v1", horizon_minutes=23, run_id=None,
        columns=tuple(COLUMNS), loaded_at=pd.Timestamp.now(tz="UTC"), model=None,
        estimator=BUILDERS["ridge"](), pooled=True,
    )  # fmt: skip

    # When its answer is explained, Then the refusal names the missing symbols
    with pytest.raises(ExplanationUnavailableError, match="pooled model whose symbols are not"):
        served.explain(np.zeros(len(COLUMNS)), 5)
