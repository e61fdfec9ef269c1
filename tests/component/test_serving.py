"""The serving core without HTTP: feature cache, predictions, logging, database faults."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from mlflow import MlflowClient
from psycopg_pool import ConnectionPool

from pricebot import db
from pricebot.errors import MarketMismatchError, NoFeaturesError, StaleFeaturesError
from pricebot.features import feature_names
from pricebot.klines import insert_klines, parse_kline, to_millis
from pricebot.serving import (
    DatabaseUnavailableError,
    FeatureCache,
    Predictor,
    WouldBlock,
    open_pool,
)
from pricebot.settings import Settings
from tests.fixtures.models import RegisteredModel, minutes_back, write_feature_rows

HOUR = timedelta(hours=1)

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


def started_predictor(
    database_url: str, tracking_uri: str, symbol: str | list[str], tmp_path: Path, **options: object
) -> Predictor:
    settings = Settings(
        database_url=database_url,
        symbols=[symbol] if isinstance(symbol, str) else symbol,
        targets=[TARGET],
        home=tmp_path,
        alias_poll_seconds=60,
        feature_cache_seconds=60,
        **options,  # type: ignore[arg-type]
    )
    predictor = Predictor.from_settings(settings)
    predictor.models.refresh()
    return predictor.start()


def logged_count(url: str) -> int:
    with db.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]


def test_a_row_older_than_the_hard_limit_is_refused_with_the_fix(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    registered_model("OLDSRVUSDT", TARGET, seed=5)
    write_feature_rows(database_url, "OLDSRVUSDT", minutes_back(datetime.now(UTC) - HOUR, 2))
    predictor = started_predictor(
        database_url, tracking_uri, "OLDSRVUSDT", tmp_path, stale_after_seconds=300
    )
    try:
        with pytest.raises(StaleFeaturesError, match="older than the 15 min this service serves"):
            predictor.predict("OLDSRVUSDT", TARGET)
        assert predictor.predictions.flush(timeout=10)
    finally:
        predictor.close()

    assert logged_count(database_url) == 0


def test_an_answer_that_needs_the_database_is_deferred_without_being_logged(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    registered_model("LAZYUSDT", TARGET, seed=6)
    write_feature_rows(database_url, "LAZYUSDT", minutes_back(datetime.now(UTC), 2))
    predictor = started_predictor(database_url, tracking_uri, "LAZYUSDT", tmp_path)
    try:
        # Given a cold cache, When asked not to block, Then it defers and does nothing
        with pytest.raises(WouldBlock):
            predictor.predict("LAZYUSDT", TARGET, block=False)
        # When the blocking call has filled the cache, Then the next answer comes from memory
        blocking = predictor.predict("LAZYUSDT", TARGET)
        queries = predictor.features.queries
        from_memory = predictor.predict("LAZYUSDT", TARGET, block=False)
        assert predictor.predictions.flush(timeout=10)
    finally:
        predictor.close()

    assert predictor.features.queries == queries
    assert from_memory.prediction == blocking.prediction
    assert logged_count(database_url) == 2


def test_a_batch_answers_each_symbol_or_its_error_and_logs_the_answers(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    registered_model("BATCHUSDT", TARGET, seed=7)
    write_feature_rows(database_url, "BATCHUSDT", minutes_back(datetime.now(UTC), 2))
    predictor = started_predictor(database_url, tracking_uri, "BATCHUSDT", tmp_path)
    try:
        with pytest.raises(WouldBlock):
            predictor.predict_many(["BATCHUSDT", "DOGEUSDT"], TARGET, block=False)
        answers = predictor.predict_many(["BATCHUSDT", "DOGEUSDT", "batchusdt"], TARGET)
        assert predictor.predictions.flush(timeout=10)
    finally:
        predictor.close()

    assert [type(a).__name__ for a in answers] == ["Prediction", "UnknownModelError", "Prediction"]
    assert logged_count(database_url) == 2


def test_a_batch_reads_every_row_in_one_query_and_names_a_symbol_without_features(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    registered_model("MANY1USDT", TARGET, seed=11)
    registered_model("MANY2USDT", TARGET, seed=12)
    written = write_feature_rows(database_url, "MANY1USDT", minutes_back(datetime.now(UTC), 3))
    predictor = started_predictor(database_url, tracking_uri, ["MANY1USDT", "MANY2USDT"], tmp_path)
    try:
        first, missing = predictor.predict_many(["MANY1USDT", "MANY2USDT"], TARGET)
    finally:
        predictor.close()

    assert predictor.features.queries == 1
    assert first.feature_time == written.index[-1]
    assert isinstance(missing, NoFeaturesError)
    assert "No v1 features for MANY2USDT" in str(missing)


def test_the_pool_cancels_a_statement_running_longer_than_the_timeout(database_url: str) -> None:
    settings = Settings(database_url=database_url, db_statement_timeout_seconds=0.2)
    pool = open_pool(settings)
    pool.open(wait=True)
    try:
        with pool.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "200ms"
            with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
                conn.execute("SELECT pg_sleep(5)")
    finally:
        pool.close()


def test_a_model_trained_on_simulated_candles_is_refused_for_real_ones(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    model = registered_model("SIMUSDT", TARGET, seed=8)
    MlflowClient(tracking_uri).set_model_version_tag(
        model.name, model.version, "market", "simulated:swinging"
    )
    write_feature_rows(database_url, "SIMUSDT", minutes_back(datetime.now(UTC), 2))
    with db.transaction(database_url) as conn:
        insert_klines(conn, [real_kline("SIMUSDT")], market="binance-vision")
    predictor = started_predictor(database_url, tracking_uri, "SIMUSDT", tmp_path)
    try:
        with pytest.raises(MarketMismatchError, match="trained on simulated candles") as refused:
            predictor.predict("SIMUSDT", TARGET)
    finally:
        predictor.close()

    assert refused.value.fix == "pricebot train --symbol SIMUSDT"


def test_a_model_trained_on_simulated_candles_is_served_for_simulated_ones(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    model = registered_model("SIM2USDT", TARGET, seed=9)
    MlflowClient(tracking_uri).set_model_version_tag(
        model.name, model.version, "market", "simulated:swinging"
    )
    write_feature_rows(database_url, "SIM2USDT", minutes_back(datetime.now(UTC), 2))
    with db.transaction(database_url) as conn:
        insert_klines(conn, [real_kline("SIM2USDT")], market="simulated:swinging")
    predictor = started_predictor(database_url, tracking_uri, "SIM2USDT", tmp_path)
    try:
        answer = predictor.predict("SIM2USDT", TARGET)
    finally:
        predictor.close()

    assert answer.model_version == model.version


def real_kline(symbol: str) -> tuple:
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - HOUR
    ms = to_millis(minute)
    row = [ms, "1.0", "1.0", "1.0", "1.0", "1.0", ms + 59_999, "1.0", 1, "0.5", "0.5", "0"]
    return parse_kline(row, symbol, "archive")


def test_an_explained_answer_adds_up_to_the_prediction(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    model = registered_model("WHYUSDT", TARGET, seed=13)
    frame = write_feature_rows(database_url, "WHYUSDT", minutes_back(datetime.now(UTC), 2))
    predictor = started_predictor(database_url, tracking_uri, "WHYUSDT", tmp_path)
    try:
        answer = predictor.predict("WHYUSDT", TARGET, explain=True)
    finally:
        predictor.close()

    explanation = answer.explanation
    values = frame.iloc[-1, 1:].to_numpy()
    largest = int(np.argmax(np.abs(model.weights * values)))
    assert explanation.method == "linear"
    assert len(explanation.top) == 5
    assert explanation.total == pytest.approx(answer.prediction, abs=1e-12)
    assert explanation.top[0].feature == feature_names("v1")[largest]
    assert explanation.top[0].contribution == pytest.approx(
        model.weights[largest] * values[largest]
    )
