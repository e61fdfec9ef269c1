"""The service's model cache against a real MLflow server: kept, served while the registry is
down, followed once it answers, refused when damaged.

"The registry is down" is a pool pointed at a port nobody listens on (the session's MLflow server
is shared, so it is not stopped here); "it answers again" is the same pool pointed back at it.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pricebot.champion import CACHED, SERVING, UNREACHABLE, ModelPool
from pricebot.errors import DamagedCacheEntryError, NoChampionError
from pricebot.features import feature_names
from pricebot.model_cache import ModelCache
from pricebot.registry import CHAMPION, Registry
from tests.conftest import free_port
from tests.fixtures.models import RegisteredModel

TARGET = "ret23m"  # only this module registers models for it: the MLflow server is shared
_symbols = (f"K{i}USDT" for i in itertools.count())


@pytest.fixture
def symbol() -> str:
    return next(_symbols)


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    return ModelCache(tmp_path / "model-cache")


@pytest.fixture(autouse=True)
def fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow gives up on an unreachable server at once (the service sets its own limits)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def dead_registry() -> Registry:
    return Registry(f"http://127.0.0.1:{free_port()}")


def pool_of(registry: Registry, symbol: str, cache: ModelCache | None) -> ModelPool:
    return ModelPool([symbol], [TARGET], poll_seconds=0.2, registry=registry, cache=cache)


def served_once(tracking_uri: str, symbol: str, cache: ModelCache) -> None:
    """An earlier run of the service on this machine: it served the champion once."""
    earlier = pool_of(Registry(tracking_uri), symbol, cache)
    earlier.refresh()
    assert earlier.status()[0]["state"] == SERVING


def test_a_served_version_is_kept_with_what_describes_it(
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    symbol: str,
    cache: ModelCache,
) -> None:
    # Given a champion, When a pool with a cache serves it
    model = registered_model(symbol, TARGET, seed=1, metrics={"mae": 0.25})
    served_once(tracking_uri, symbol, cache)

    # Then the cache holds that version as the one served for the alias, with its details
    entry = cache.served(symbol, TARGET, CHAMPION)
    assert entry is not None
    assert (entry.name, entry.version, entry.run_id) == (model.name, model.version, model.run_id)
    assert (entry.feature_set, entry.metrics) == ("v1", {"mae": 0.25})
    assert set(entry.feature_importance or {}) == set(feature_names("v1"))
    assert (entry.model_dir / "MLmodel").is_file()


def test_the_cached_version_is_served_while_the_registry_is_down(
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    symbol: str,
    cache: ModelCache,
) -> None:
    # Given a champion this machine served before
    model = registered_model(symbol, TARGET, seed=2)
    served_once(tracking_uri, symbol, cache)
    row = np.random.default_rng(3).normal(0, 1, len(feature_names("v1")))

    # When a pool starts with the registry unreachable
    pool = pool_of(dead_registry(), symbol, cache)
    pool.refresh()

    # Then it serves the cached version, answers as the model does, is ready and says why
    served = pool.get(symbol, TARGET)
    status = pool.status()[0]
    assert (served.name, served.version) == (model.name, model.version)
    assert served.predict(row) == pytest.approx(model.expected(row), rel=1e-9, abs=1e-12)
    assert pool.ready()
    assert status["state"] == CACHED
    assert "model registry unreachable" in status["message"]
    assert f"serving version {model.version}" in status["message"]
    assert status["served"]["cached_at"] is not None
    assert pool.registry_status()["reachable"] is False


def test_the_pool_follows_a_moved_alias_once_the_registry_answers(
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    symbol: str,
    cache: ModelCache,
) -> None:
    # Given a pool serving a cached version because the registry was down at its start
    registered_model(symbol, TARGET, seed=4)
    served_once(tracking_uri, symbol, cache)
    pool = pool_of(dead_registry(), symbol, cache)
    pool.refresh()
    # ... and the alias moved meanwhile
    newer = registered_model(symbol, TARGET, seed=5)

    # When the registry answers
    pool.registry = Registry(tracking_uri)
    pool.refresh()

    # Then the new champion is swapped in and served as usual
    assert pool.get(symbol, TARGET).version == newer.version
    assert pool.status()[0]["state"] == SERVING
    assert pool.status()[0]["swaps"] == 1


def test_the_same_version_turns_from_cached_to_serving_without_a_reload(
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    symbol: str,
    cache: ModelCache,
) -> None:
    # Given a pool serving the cached champion while the registry was down
    model = registered_model(symbol, TARGET, seed=6)
    served_once(tracking_uri, symbol, cache)
    pool = pool_of(dead_registry(), symbol, cache)
    pool.refresh()
    cached = pool.get(symbol, TARGET)

    # When the registry answers with the alias where it was
    pool.registry = Registry(tracking_uri)
    pool.refresh()

    # Then the same loaded model serves on, now confirmed by the registry
    status = pool.status()[0]
    assert pool.get(symbol, TARGET) is cached
    assert (status["state"], status["alias_version"], status["swaps"]) == (
        SERVING,
        model.version,
        0,
    )


def test_a_damaged_entry_is_refused_with_a_warning(
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    symbol: str,
    cache: ModelCache,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a cached champion one of whose files was changed on disk
    registered_model(symbol, TARGET, seed=7)
    served_once(tracking_uri, symbol, cache)
    entry = cache.served(symbol, TARGET, CHAMPION)
    assert entry is not None
    (entry.model_dir / "MLmodel").write_text("flavors: {}\n")

    # When a pool starts with the registry down
    pool = pool_of(dead_registry(), symbol, cache)
    with caplog.at_level(logging.WARNING, logger="pricebot.champion"):
        pool.refresh()

    # Then nothing is served, the service is not ready, and the log says which entry and why
    assert not pool.ready()
    assert pool.status()[0]["state"] == UNREACHABLE
    with pytest.raises(NoChampionError, match="model registry unreachable"):
        pool.get(symbol, TARGET)
    assert any(
        "not serving the cached model" in r.message and "differ from the manifest" in r.message
        for r in caplog.records
    )


def test_an_unreadable_manifest_makes_the_entry_damaged(
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    symbol: str,
    cache: ModelCache,
) -> None:
    # Given a cached champion whose manifest was cut short
    registered_model(symbol, TARGET, seed=8)
    served_once(tracking_uri, symbol, cache)
    entry = cache.served(symbol, TARGET, CHAMPION)
    assert entry is not None
    manifest = entry.path / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])

    # When the cache is asked for it, Then it refuses it, naming the entry
    with pytest.raises(DamagedCacheEntryError, match=f"cached {entry.name} version"):
        cache.served(symbol, TARGET, CHAMPION)


def test_no_cache_entry_and_no_registry_is_the_usual_not_ready(
    symbol: str, cache: ModelCache
) -> None:
    # Given an empty cache, When a pool starts with the registry down
    pool = pool_of(dead_registry(), symbol, cache)
    pool.refresh()

    # Then it is not ready and says to check the registry, as without a cache
    status = pool.status()[0]
    assert not pool.ready()
    assert status["state"] == UNREACHABLE
    with pytest.raises(NoChampionError, match="model registry unreachable"):
        pool.get(symbol, TARGET)


def test_a_registry_that_is_not_up_fails_the_pass_through_the_quick_probe(
    symbol: str, cache: ModelCache
) -> None:
    # Given a registry nobody listens for, When a pool's first pass runs
    pool = pool_of(dead_registry(), symbol, cache)
    pool.refresh()

    # Then the pass ended on the /health probe, not on MLflow's retried API call
    assert "TrackingUnavailableError" in pool.registry_status()["error"]


def test_a_record_naming_another_version_of_a_model_serves_that_version(
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    symbol: str,
    cache: ModelCache,
) -> None:
    # Given two versions this machine served, the second last
    first = registered_model(symbol, TARGET, seed=9)
    served_once(tracking_uri, symbol, cache)
    second = registered_model(symbol, TARGET, seed=10)
    served_once(tracking_uri, symbol, cache)

    # When the cache is asked what was served last
    entry = cache.served(symbol, TARGET, CHAMPION)

    # Then it is the second, and the first is still kept
    assert entry is not None
    assert entry.version == second.version
    assert cache.entry(first.name, first.version).version == first.version
    record = json.loads(
        next((cache.root / "served" / CHAMPION).glob(f"{symbol}-*.json")).read_text()
    )
    assert record == {"name": second.name, "version": second.version}
