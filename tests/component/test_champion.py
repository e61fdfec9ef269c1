"""The champion model pool against a real MLflow server: load, swap, keep the old on trouble."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
import pytest
from mlflow import MlflowClient

from pricebot.champion import (
    ALIAS_VANISHED,
    FAILED,
    KEPT,
    MISSING,
    SERVING,
    SWAP_FAILED,
    SWAPPED,
    UNREACHABLE,
    ModelPool,
)
from pricebot.errors import NoChampionError, UnknownModelError
from pricebot.features import feature_names
from pricebot.registry import Registry
from tests.conftest import free_port
from tests.fixtures.models import RegisteredModel, register_broken_version

TARGET = "ret17m"  # only this module registers models for it: the MLflow server is shared
_symbols = (f"C{i}USDT" for i in itertools.count())


@pytest.fixture
def symbol() -> str:
    return next(_symbols)


def make_pool(tracking_uri: str, *symbols: str, events: list | None = None) -> ModelPool:
    def record(event: str, slot: object) -> None:
        if events is not None:
            events.append((event, slot.name))  # type: ignore[attr-defined]

    return ModelPool(
        symbols, [TARGET], poll_seconds=0.2, tracking_uri=tracking_uri, on_event=record
    )


def test_loads_the_champion_with_its_run_details(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel], symbol: str
) -> None:
    model = registered_model(symbol, TARGET, seed=1, metrics={"mae": 0.5, "rmse": 0.7})
    pool = make_pool(tracking_uri, symbol)

    pool.refresh()

    served = pool.get(symbol, TARGET)
    assert (served.name, served.version, served.alias) == (model.name, model.version, "champion")
    assert served.horizon_minutes == 17
    assert served.metrics == {"mae": 0.5, "rmse": 0.7}
    assert set(served.feature_importance) == set(feature_names("v1"))
    assert pool.ready()


def test_prediction_is_the_registered_model_applied_to_the_row(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel], symbol: str
) -> None:
    model = registered_model(symbol, TARGET, seed=2)
    pool = make_pool(tracking_uri, symbol)
    pool.refresh()
    row = np.random.default_rng(5).normal(0, 1, len(feature_names("v1")))

    value = pool.get(symbol, TARGET).predict(row)

    assert value == pytest.approx(model.expected(row), rel=1e-9, abs=1e-12)


def test_moved_alias_swaps_in_the_new_version(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel], symbol: str
) -> None:
    events: list = []
    first = registered_model(symbol, TARGET, seed=3)
    pool = make_pool(tracking_uri, symbol, events=events)
    pool.refresh()

    second = registered_model(symbol, TARGET, seed=4)
    pool.refresh()

    assert pool.get(symbol, TARGET).version == second.version != first.version
    assert events == [(SWAPPED, first.name), (SWAPPED, first.name)]
    assert pool.status()[0]["swaps"] == 2


def test_vanished_alias_keeps_the_old_version_and_says_so(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel], symbol: str
) -> None:
    events: list = []
    model = registered_model(symbol, TARGET, seed=5)
    pool = make_pool(tracking_uri, symbol, events=events)
    pool.refresh()

    MlflowClient(tracking_uri).delete_registered_model_alias(model.name, "champion")
    pool.refresh()

    status = pool.status()[0]
    assert pool.get(symbol, TARGET).version == model.version
    assert status["state"] == KEPT
    assert "no longer exists" in status["message"]
    assert f"still serving version {model.version}" in status["message"]
    assert events[-1] == (ALIAS_VANISHED, model.name)


def test_broken_new_version_keeps_the_old_one(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel], symbol: str
) -> None:
    events: list = []
    model = registered_model(symbol, TARGET, seed=6)
    pool = make_pool(tracking_uri, symbol, events=events)
    pool.refresh()

    broken = register_broken_version(tracking_uri, model)
    pool.refresh()

    status = pool.status()[0]
    assert pool.get(symbol, TARGET).version == model.version
    assert status["state"] == KEPT
    assert status["alias_version"] == broken
    assert f"version {broken} failed to load" in status["message"]
    assert events[-1] == (SWAP_FAILED, model.name)


def test_no_champion_is_reported_missing_with_the_fixing_command(
    tracking_uri: str, symbol: str
) -> None:
    pool = make_pool(tracking_uri, symbol)

    pool.refresh()

    assert pool.ready()
    assert pool.status()[0]["state"] == MISSING
    with pytest.raises(NoChampionError, match=f"pricebot train --symbol {symbol}"):
        pool.get(symbol, TARGET)


def test_unknown_symbol_names_what_is_served(tracking_uri: str, symbol: str) -> None:
    pool = make_pool(tracking_uri, symbol)

    with pytest.raises(UnknownModelError, match=f"symbol 'DOGEUSDT'.*serves symbols {symbol}"):
        pool.get("DOGEUSDT", TARGET)


def test_poller_follows_the_alias_without_being_asked(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel], symbol: str
) -> None:
    registered_model(symbol, TARGET, seed=7)
    pool = make_pool(tracking_uri, symbol)
    pool.start()
    try:
        assert pool.wait_first_pass(timeout=60)
        second = registered_model(symbol, TARGET, seed=8)

        deadline = time.monotonic() + 60
        while pool.get(symbol, TARGET).version != second.version:
            assert time.monotonic() < deadline, f"still serving {pool.status()}"
            time.sleep(0.1)
    finally:
        pool.stop()

    assert pool.status()[0]["state"] == SERVING


@pytest.fixture
def fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow gives up on an unreachable server at once (the service sets the same)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")


@pytest.mark.usefixtures("fail_fast")
def test_an_unreachable_registry_at_start_keeps_the_pool_not_ready(symbol: str) -> None:
    pool = ModelPool([symbol], [TARGET], tracking_uri=f"http://127.0.0.1:{free_port()}")

    pool.refresh()

    status = pool.status()[0]
    assert not pool.ready()
    assert status["state"] == UNREACHABLE
    assert "model registry unreachable" in status["message"]
    assert pool.registry_status()["reachable"] is False


@pytest.mark.usefixtures("fail_fast")
def test_an_unreachable_registry_later_keeps_the_champion_and_says_so(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel], symbol: str
) -> None:
    model = registered_model(symbol, TARGET, seed=9)
    pool = make_pool(tracking_uri, symbol)
    pool.refresh()

    pool.registry = Registry(f"http://127.0.0.1:{free_port()}")  # the server went away
    pool.refresh()

    status = pool.status()[0]
    assert pool.ready()
    assert pool.get(symbol, TARGET).version == model.version
    assert status["state"] == KEPT
    assert status["message"].startswith("model registry unreachable")
    assert pool.registry_status()["reachable"] is False


def test_a_champion_that_cannot_be_loaded_is_failed_and_settled(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel], symbol: str
) -> None:
    model = registered_model(symbol, TARGET, seed=10, alias=None)
    broken = register_broken_version(tracking_uri, model)
    pool = make_pool(tracking_uri, symbol)

    pool.refresh()

    status = pool.status()[0]
    assert pool.ready()
    assert status["state"] == FAILED
    assert f"version {broken} failed to load" in status["message"]
    with pytest.raises(NoChampionError, match="failed to load"):
        pool.get(symbol, TARGET)


def test_one_pass_follows_every_alias_of_the_pool(
    tracking_uri: str, registered_model: Callable[..., RegisteredModel]
) -> None:
    first, second, absent = next(_symbols), next(_symbols), next(_symbols)
    one = registered_model(first, TARGET, seed=11)
    two = registered_model(second, TARGET, seed=12)
    pool = make_pool(tracking_uri, first, second, absent)

    pool.refresh()

    states = {s["symbol"]: (s["state"], s["alias_version"]) for s in pool.status()}
    assert states == {
        first: (SERVING, one.version),
        second: (SERVING, two.version),
        absent: (MISSING, None),
    }
