"""Which model serves a symbol when pools hold it: the service's ModelPool over the real MLflow
server, with pooled models registered as the pooled training job registers them
(``pricebot-pool-<label>-<target>``, tags ``symbols`` and ``target``, versions tagged
``pool=true``) and champions moved with the registry's audited ``move_alias``."""

from __future__ import annotations

import itertools
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from pricebot.champion import ModelPool
from pricebot.features import feature_names
from pricebot.pooling import indicator_columns
from pricebot.registry import CHAMPION, model_name, pool_model_name
from pricebot.targets import parse_target
from pricebot_training.candidates import linear_ridge
from pricebot_training.tracking import log_forecaster

TARGET = "ret29m"  # only this module registers models for it: the MLflow server is shared
SPEC = parse_target(TARGET)
COLUMNS = feature_names("v1")
_coins = (tuple(f"PS{i}{c}USDT" for c in "AB") for i in itertools.count())


def register(tracking_uri: str, name: str, symbols: tuple[str, ...], moved_at: str) -> str:
    """A fitted Ridge over ``symbols`` (pooled when more than one) registered under ``name``
    as its champion, the alias move stamped ``moved_at``; the version number."""
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(0, 1, (200, len(COLUMNS))), columns=COLUMNS)
    names = np.array(symbols)[np.arange(200) % len(symbols)]
    pooled = len(symbols) > 1
    if pooled:
        for symbol, column in zip(symbols, indicator_columns(symbols), strict=True):
            x[column] = (names == symbol).astype("float64")
    estimator = linear_ridge.build(SPEC, linear_ridge.defaults(SPEC), 0).fit(
        x, rng.normal(size=200)
    )
    features = x[COLUMNS].assign(symbol=names) if pooled else x[COLUMNS]
    mlflow.set_experiment("tests-pooled-serving")
    with mlflow.start_run():
        info = log_forecaster(
            estimator, features, "regression", symbols=list(symbols) if pooled else None
        )
    client = MlflowClient(tracking_uri)
    version = mlflow.register_model(info.model_uri, name).version
    if pooled:
        client.set_registered_model_tag(name, "symbols", ",".join(symbols))
        client.set_registered_model_tag(name, "target", TARGET)
    tags = {"feature_set": "v1", "horizon_minutes": "29", f"{CHAMPION}.moved_at": moved_at}
    if pooled:
        tags |= {"pool": "true", "symbols": ",".join(symbols)}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHAMPION, version)
    return str(version)


def served(tracking_uri: str, symbol: str) -> Any:
    pool = ModelPool([symbol], [TARGET], tracking_uri=tracking_uri)
    pool.refresh()
    return pool.get(symbol, TARGET)


def test_a_symbol_without_its_own_model_is_served_by_the_pool_that_holds_it(
    tracking_uri: str,
) -> None:
    # Given a pooled champion over two coins and no model of either coin's own
    coins = next(_coins)
    pool_name = pool_model_name(coins, TARGET)
    register(tracking_uri, pool_name, coins, "2026-12-01T10:00:00+00:00")

    # When the service looks for the second coin's model
    model = served(tracking_uri, coins[1])

    # Then it serves the pool's champion, for that coin
    assert (model.name, model.pooled, model.symbol) == (pool_name, True, coins[1])
    assert np.isfinite(model.predict(np.zeros(len(COLUMNS))))


def test_of_the_own_and_the_pool_champion_the_one_promoted_last_is_served(
    tracking_uri: str,
) -> None:
    # Given a coin whose own champion was promoted after the pool's
    coins = next(_coins)
    pool_name, own_name = pool_model_name(coins, TARGET), model_name(coins[0], TARGET)
    register(tracking_uri, pool_name, coins, "2026-12-01T10:00:00+00:00")
    register(tracking_uri, own_name, coins[:1], "2026-12-01T11:00:00+00:00")
    assert served(tracking_uri, coins[0]).name == own_name

    # When the pool is promoted again, later
    register(tracking_uri, pool_name, coins, "2026-12-01T12:00:00+00:00")

    # Then the pool serves the coin
    assert served(tracking_uri, coins[0]).name == pool_name


def test_a_tie_goes_to_the_symbols_own_model(tracking_uri: str) -> None:
    # Given the own and the pool champion promoted in the same second
    coins = next(_coins)
    own_name = model_name(coins[0], TARGET)
    register(tracking_uri, pool_model_name(coins, TARGET), coins, "2026-12-01T10:00:00+00:00")
    register(tracking_uri, own_name, coins[:1], "2026-12-01T10:00:00+00:00")

    # Then the coin's own model serves it
    assert served(tracking_uri, coins[0]).name == own_name
