"""Live model health from the real prediction log and features; metrics into moto CloudWatch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from pricebot import model_health as mh
from pricebot.features import feature_names

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def log_prediction(
    conn: psycopg.Connection,
    *,
    feature_time: datetime,
    prediction: float,
    actual: float | None,
    symbol: str = "BTCUSDT",
    target: str = "ret1h",
    version: str = "3",
    alias: str = "champion",
    horizon: int = 60,
) -> None:
    conn.execute(
        """INSERT INTO predictions (made_at, symbol, target, model_name, model_version, alias,
               feature_time, horizon_minutes, prediction, actual)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (feature_time, symbol, target, f"pricebot-{symbol.lower()}-{target}", version, alias,
         feature_time, horizon, prediction, actual),
    )  # fmt: skip


def health(url: str, **kwargs: Any) -> mh.ChampionHealth:
    with psycopg.connect(url) as conn:
        [result] = mh.champion_health(
            conn, ["BTCUSDT"], ["ret1h"], now=NOW, window=timedelta(hours=24), **kwargs
        )
    return result


def test_the_champion_error_is_compared_with_no_change_on_the_same_rows(database_url: str) -> None:
    # Given 40 matured champion predictions, each off by 0.01, on returns of +-0.02
    with psycopg.connect(database_url) as conn:
        for i in range(40):
            actual = 0.02 if i % 2 else -0.02
            log_prediction(
                conn, feature_time=NOW - 2 * HOUR - i * timedelta(minutes=1),
                prediction=actual - 0.01, actual=actual,
            )  # fmt: skip

    # When its health is computed
    result = health(database_url)

    # Then the champion's MAE is 0.01, no change's 0.02, so it does twice as well
    assert result.scored == 40
    assert result.champion_mae == pytest.approx(0.01)
    assert result.no_change_mae == pytest.approx(0.02)
    assert result.error_ratio == pytest.approx(0.5)
    assert result.newest_version == "3"


def test_a_champion_worse_than_no_change_has_a_ratio_above_one(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for i in range(30):
            log_prediction(conn, feature_time=NOW - 2 * HOUR - i * timedelta(minutes=1),
                           prediction=0.03, actual=-0.01)  # fmt: skip
    assert health(database_url).error_ratio == pytest.approx(4.0)


def test_repeated_requests_for_one_feature_row_count_once(database_url: str) -> None:
    # Given 30 rows, the first asked for 50 times with a wildly wrong prediction
    with psycopg.connect(database_url) as conn:
        for _ in range(50):
            log_prediction(conn, feature_time=NOW - 2 * HOUR, prediction=9.0, actual=0.01)
        for i in range(1, 30):
            log_prediction(conn, feature_time=NOW - 2 * HOUR - i * timedelta(minutes=1),
                           prediction=0.01, actual=0.01)  # fmt: skip

    result = health(database_url)

    assert result.scored == 30
    assert result.champion_mae == pytest.approx(8.99 / 30)


def test_only_the_served_alias_and_outcomes_matured_in_the_window_count(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for i in range(30):  # counted
            log_prediction(conn, feature_time=NOW - 3 * HOUR - i * timedelta(minutes=1),
                           prediction=0.0, actual=0.01)  # fmt: skip
        # a challenger's, an outcome older than the window, one not scored yet, one of the future
        log_prediction(
            conn, feature_time=NOW - 3 * HOUR, prediction=1, actual=1, alias="challenger"
        )
        log_prediction(conn, feature_time=NOW - 30 * HOUR, prediction=1, actual=-1)
        log_prediction(conn, feature_time=NOW - 2 * HOUR, prediction=1, actual=None)
        log_prediction(conn, feature_time=NOW - timedelta(minutes=30), prediction=1, actual=-1)

    assert health(database_url).scored == 30


def test_too_few_scored_rows_give_a_count_but_no_error(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for i in range(5):
            log_prediction(conn, feature_time=NOW - 2 * HOUR - i * timedelta(minutes=1),
                           prediction=0.5, actual=0.01)  # fmt: skip

    result = health(database_url, min_scored=30)

    assert result.scored == 5
    assert (result.champion_mae, result.error_ratio) == (None, None)


def test_a_configured_pair_without_predictions_is_reported_empty(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        results = mh.champion_health(conn, ["BTCUSDT", "ETHUSDT"], ["ret1h"], now=NOW)
    assert [(r.symbol, r.scored, r.error_ratio) for r in results] == [
        ("BTCUSDT", 0, None),
        ("ETHUSDT", 0, None),
    ]


# --- drift --------------------------------------------------------------------------------------
def store_features(conn: psycopg.Connection, start: datetime, minutes: int, shift: float) -> None:
    rng = np.random.default_rng(7)
    width = len(feature_names("v1"))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO features (symbol, feature_set, open_time, close, values)"
            " VALUES ('BTCUSDT', 'v1', %s, 1.0, %s)",
            [
                (start + timedelta(minutes=m), list(rng.normal(shift, 1.0, width)))
                for m in range(minutes)
            ],
        )


def drift(url: str) -> list[mh.FeatureDrift]:
    with psycopg.connect(url) as conn:
        return mh.feature_drift(
            conn, ["BTCUSDT"], "v1", window=6 * HOUR, reference=timedelta(days=1), now=NOW
        )


def test_features_like_their_past_show_little_drift(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        store_features(conn, NOW - 30 * HOUR + timedelta(minutes=1), 30 * 60, shift=0.0)
    [result] = drift(database_url)
    assert result.psi < 0.1
    assert (result.recent_rows, result.reference_rows) == (360, 1440)


def test_features_that_moved_show_a_large_drift(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        store_features(conn, NOW - 30 * HOUR + timedelta(minutes=1), 24 * 60, shift=0.0)
        store_features(conn, NOW - 6 * HOUR + timedelta(minutes=1), 6 * 60, shift=1.5)
    [result] = drift(database_url)
    assert result.psi > 0.25
    assert result.feature in feature_names("v1")


def test_a_symbol_without_enough_rows_publishes_no_drift(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        store_features(conn, NOW - 6 * HOUR + timedelta(minutes=1), 30, shift=0.0)
    assert drift(database_url) == []


def test_the_stability_index_is_zero_for_the_same_sample_and_grows_with_a_shift() -> None:
    sample = np.random.default_rng(1).normal(0, 1, 5000)
    assert mh.population_stability_index(sample, sample) == pytest.approx(0.0, abs=1e-9)
    assert mh.population_stability_index(sample, sample + 0.5) > 0.1
    assert mh.population_stability_index(sample, sample + 2.0) > 1.0


# --- publication --------------------------------------------------------------------------------
@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("cloudwatch")


def published(client: Any) -> dict[tuple[str, tuple], float]:
    out = {}
    for metric in client.list_metrics(Namespace=mh.NAMESPACE)["Metrics"]:
        dims = tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]))
        stats = client.get_metric_statistics(
            Namespace=mh.NAMESPACE,
            MetricName=metric["MetricName"],
            Dimensions=metric["Dimensions"],
            StartTime=NOW - HOUR,
            EndTime=NOW + HOUR,
            Period=3600,
            Statistics=["Maximum"],
        )
        out[(metric["MetricName"], dims)] = stats["Datapoints"][0]["Maximum"]
    return out


def test_health_and_drift_are_published_per_champion_and_symbol(
    database_url: str, cloudwatch: Any
) -> None:
    # Given a champion that does worse than no change, and drifting features
    with psycopg.connect(database_url) as conn:
        for i in range(30):
            log_prediction(conn, feature_time=NOW - 2 * HOUR - i * timedelta(minutes=1),
                           prediction=0.03, actual=-0.01)  # fmt: skip
        store_features(conn, NOW - 38 * HOUR + timedelta(minutes=1), 14 * 60, shift=0.0)
        store_features(conn, NOW - 24 * HOUR + timedelta(minutes=1), 24 * 60, shift=2.0)

    # When the scoring job publishes
    report = mh.publish_model_health(
        database_url, ["BTCUSDT"], ["ret1h"], "v1",
        settings=mh.ModelHealthSettings(reference_days=14 / 24), client=cloudwatch, now=NOW,
    )  # fmt: skip

    # Then CloudWatch has the ratio, both errors and the count per (symbol, target), and the
    # drift per (symbol, feature set)
    pair = (("Symbol", "BTCUSDT"), ("Target", "ret1h"))
    metrics = published(cloudwatch)
    assert metrics[(mh.ERROR_RATIO, pair)] == pytest.approx(4.0)
    assert metrics[(mh.CHAMPION_MAE, pair)] == pytest.approx(0.04)
    assert metrics[(mh.NO_CHANGE_MAE, pair)] == pytest.approx(0.01)
    assert metrics[(mh.SCORED, pair)] == 30
    assert metrics[(mh.FEATURE_DRIFT, (("FeatureSet", "v1"), ("Symbol", "BTCUSDT")))] > 0.25
    assert report.published == 5


def test_a_pair_without_enough_outcomes_publishes_only_its_count() -> None:
    empty = mh.ChampionHealth("ETHUSDT", "ret1h", 3, None, None, "1")
    data = mh.metric_data([empty], [], NOW)
    assert [d["MetricName"] for d in data] == [mh.SCORED]


def test_many_datums_are_sent_in_batches_cloudwatch_accepts() -> None:
    healths = [mh.ChampionHealth(f"S{i}", "ret1h", 50, 0.1, 0.2, "1") for i in range(300)]
    calls = []

    class Recording:
        def put_metric_data(self, **kwargs: Any) -> None:
            calls.append(len(kwargs["MetricData"]))

    assert mh.put_metrics(Recording(), mh.metric_data(healths, [], NOW)) == 1200
    assert calls == [1000, 200]
