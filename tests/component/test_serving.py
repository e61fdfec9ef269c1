"""The serving core without HTTP: feature cache, predictions, logging, database faults."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from pricebot import db
from pricebot.errors import NoFeaturesError
from pricebot.serving import DatabaseUnavailableError, FeatureCache, Predictor
from pricebot.settings import Settings
from tests.fixtures.models import RegisteredModel, minutes_back, write_feature_rows

TARGET = "ret19m"  # only this module registers models for it: the MLflow server is shared


@pytest.fixture
def pool(database_url: str):
    with ConnectionPool(database_url, min_size=1, max_size=4, timeout=2) as opened:
        yield opened


def test_a_burst_of_lookups_costs_one_query(database_url: str, pool: ConnectionPool) -> None:
    write_feature_rows(database_url, "BTCUSDT", minutes_back(datetime.now(UTC), 3))
    cache = FeatureCache(pool, ttl_seconds=60)
    rows = []

    threads = [
        threading.Thread(target=lambda: rows.append(cache.latest("BTCUSDT", "v1")))
        for _ in range(32)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert cache.queries == 1
    assert len({row.open_time for row in rows}) == 1
    assert len(rows) == 32


def test_the_cache_returns_the_newest_row(database_url: str, pool: ConnectionPool) -> None:
    times = minutes_back(datetime.now(UTC), 3)
    frame = write_feature_rows(database_url, "BTCUSDT", times)
    cache = FeatureCache(pool, ttl_seconds=0)

    row = cache.latest("BTCUSDT", "v1")

    assert row.open_time == times[-1]
    assert list(row.values) == pytest.approx(list(frame.iloc[-1, 1:]))


def test_a_symbol_without_features_says_which_command_computes_them(
    pool: ConnectionPool,
) -> None:
    cache = FeatureCache(pool, ttl_seconds=0)

    with pytest.raises(NoFeaturesError, match="pricebot transform"):
        cache.latest("BTCUSDT", "v1")


def test_an_unreachable_database_is_reported_as_such(postgres) -> None:
    url = postgres.url("no_such_database")
    with ConnectionPool(url, min_size=0, max_size=1, timeout=0.5, open=True) as broken:
        cache = FeatureCache(broken, ttl_seconds=0, url=url)

        with pytest.raises(DatabaseUnavailableError, match="unreachable"):
            cache.latest("BTCUSDT", "v1")


def test_a_burst_during_an_outage_waits_for_one_timeout_not_one_each(postgres) -> None:
    url = postgres.url("no_such_database")
    errors: list[Exception] = []
    with ConnectionPool(url, min_size=0, max_size=1, timeout=0.5, open=True) as broken:
        cache = FeatureCache(broken, ttl_seconds=60, url=url)

        def look_up() -> None:
            try:
                cache.latest("BTCUSDT", "v1")
            except DatabaseUnavailableError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=look_up) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert cache.queries == 1
    assert len(errors) == 8


def make_predictor(database_url: str, tracking_uri: str, symbol: str, tmp_path: Path) -> Predictor:
    settings = Settings(
        database_url=database_url,
        symbols=[symbol],
        targets=[TARGET],
        home=tmp_path,
        alias_poll_seconds=60,
        feature_cache_seconds=0,
    )
    predictor = Predictor.from_settings(settings)
    predictor.models.tracking_uri = tracking_uri
    return predictor


def test_prediction_uses_the_newest_row_and_is_logged(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    model = registered_model("SRVUSDT", TARGET, seed=3)
    frame = write_feature_rows(database_url, "SRVUSDT", minutes_back(datetime.now(UTC), 2))
    predictor = make_predictor(database_url, tracking_uri, "SRVUSDT", tmp_path)
    predictor.models.refresh()
    predictor.start()
    try:
        result = predictor.predict("srvusdt", TARGET)
    finally:
        predictor.close()

    newest = frame.iloc[-1]
    assert result.prediction == pytest.approx(model.expected(newest.iloc[1:].to_numpy()))
    assert result.implied_price == pytest.approx(newest["close"] * (1 + result.prediction))
    assert result.feature_time == frame.index[-1]
    with db.connect(database_url) as conn:
        logged = conn.execute("SELECT request_id, prediction FROM predictions").fetchall()
    assert logged == [(result.request_id, pytest.approx(result.prediction))]


def test_a_new_feature_row_changes_the_prediction(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    model = registered_model("SRV2USDT", TARGET, seed=4)
    times = minutes_back(datetime.now(UTC), 2)
    write_feature_rows(database_url, "SRV2USDT", times[:1], seed=1)
    predictor = make_predictor(database_url, tracking_uri, "SRV2USDT", tmp_path)
    predictor.models.refresh()
    predictor.start()
    try:
        first = predictor.predict("SRV2USDT", TARGET)
        newer = write_feature_rows(database_url, "SRV2USDT", times[1:], seed=2)
        second = predictor.predict("SRV2USDT", TARGET)
    finally:
        predictor.close()

    assert second.feature_time > first.feature_time
    assert second.prediction == pytest.approx(model.expected(newer.iloc[-1, 1:].to_numpy()))
