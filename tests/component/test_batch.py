"""Batch predictions: every served symbol and target, through the service's own path, into the
prediction log (real PostgreSQL, a real MLflow server, registered models)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pricebot import db
from pricebot import model_health as mh
from pricebot.batch import run_batch
from pricebot.settings import Settings
from pricebot_cli import app
from tests.fixtures.models import RegisteredModel, minutes_back, write_feature_rows

TARGET = "ret17m"  # this module's own target: no other module registers it


def settings_for(database_url: str, tmp_path: Path, symbols: list[str]) -> Settings:
    return Settings(database_url=database_url, symbols=symbols, targets=[TARGET], home=tmp_path,
                    feature_cache_seconds=0)  # fmt: skip


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


def latest(client: Any, name: str) -> float:
    """The largest value published in the last hour for the dimensionless ``name``."""
    now = datetime.now(UTC)
    stats = client.get_metric_statistics(
        Namespace=mh.NAMESPACE, MetricName=name, Dimensions=[],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(hours=1),
        Period=7200, Statistics=["Maximum"],
    )  # fmt: skip
    [point] = stats["Datapoints"]
    return point["Maximum"]


def logged(database_url: str) -> list[tuple]:
    with db.connect(database_url) as conn:
        return conn.execute(
            "SELECT symbol, target, model_name, model_version, prediction FROM predictions "
            "ORDER BY symbol"
        ).fetchall()


def test_every_served_symbol_is_predicted_and_logged_as_the_service_would(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    # Given two symbols with champions and feature rows
    models = {s: registered_model(s, TARGET, seed=i) for i, s in enumerate(["BTAUSDT", "BTBUSDT"])}
    rows = {s: write_feature_rows(database_url, s, minutes_back(datetime.now(UTC), 3), seed=i)
            for i, s in enumerate(models)}  # fmt: skip

    # When one batch runs
    result = run_batch(settings_for(database_url, tmp_path, list(models)))

    # Then each got the prediction its champion makes on its newest row, and the log has them
    assert result.skipped == []
    assert result.logged
    for p in result.predictions:
        newest = rows[p.symbol].iloc[-1]
        assert p.prediction == pytest.approx(models[p.symbol].expected(newest.iloc[1:].to_numpy()))
        assert p.feature_time == rows[p.symbol].index[-1]
    assert [(s, t, n) for s, t, n, _, _ in logged(database_url)] == [
        ("BTAUSDT", TARGET, models["BTAUSDT"].name),
        ("BTBUSDT", TARGET, models["BTBUSDT"].name),
    ]


def test_a_symbol_without_a_champion_is_skipped_and_the_others_still_logged(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    tmp_path: Path,
) -> None:
    registered_model("BTCAUSDT", TARGET, seed=5)
    for symbol in ("BTCAUSDT", "BTDUSDT"):
        write_feature_rows(database_url, symbol, minutes_back(datetime.now(UTC), 2))

    result = run_batch(settings_for(database_url, tmp_path, ["BTCAUSDT", "BTDUSDT"]))

    assert [p.symbol for p in result.predictions] == ["BTCAUSDT"]
    assert [(s, t) for s, t, _ in result.skipped] == [("BTDUSDT", TARGET)]
    assert "No champion for BTDUSDT" in result.skipped[0][2]
    assert [row[0] for row in logged(database_url)] == ["BTCAUSDT"]


def test_the_predict_command_prints_and_logs_the_batch(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from pricebot.settings import get_settings

    model = registered_model("BTEUSDT", TARGET, seed=6)
    write_feature_rows(database_url, "BTEUSDT", minutes_back(datetime.now(UTC), 2))
    monkeypatch.setenv("PRICEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("PRICEBOT_HOME", str(tmp_path))
    get_settings.cache_clear()

    result = CliRunner().invoke(app, ["predict", "--symbols", "bteusdt", "--targets", TARGET])

    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "logged 1 prediction(s)" in result.output
    assert [row[:3] for row in logged(database_url)] == [("BTEUSDT", TARGET, model.name)]


def test_the_predict_command_publishes_its_heartbeat_of_logged_and_skipped_pairs(
    database_url: str,
    tracking_uri: str,
    registered_model: Callable[..., RegisteredModel],
    cloudwatch: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from pricebot.settings import get_settings

    # Given one symbol with a champion and features, and one with features but no champion
    registered_model("BTFUSDT", TARGET, seed=7)
    for symbol in ("BTFUSDT", "BTGUSDT"):
        write_feature_rows(database_url, symbol, minutes_back(datetime.now(UTC), 2))
    monkeypatch.setenv("PRICEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("PRICEBOT_HOME", str(tmp_path))
    get_settings.cache_clear()

    # When the hourly task's command runs
    result = CliRunner().invoke(
        app, ["predict", "--symbols", "BTFUSDT,BTGUSDT", "--targets", TARGET, "--publish-metrics"]
    )

    # Then CloudWatch has the pair it logged and the one it skipped
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert latest(cloudwatch, mh.BATCH_PREDICTED) == 1
    assert latest(cloudwatch, mh.BATCH_SKIPPED) == 1
    assert "published 2 metric values" in result.output


def test_a_batch_that_predicts_nothing_still_publishes_a_zero_heartbeat_and_fails(
    database_url: str,
    tracking_uri: str,
    cloudwatch: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from pricebot.settings import get_settings

    # Given a symbol with features but no champion
    write_feature_rows(database_url, "BTHUSDT", minutes_back(datetime.now(UTC), 2))
    monkeypatch.setenv("PRICEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("PRICEBOT_HOME", str(tmp_path))
    get_settings.cache_clear()

    # When the hourly task's command runs
    result = CliRunner().invoke(
        app, ["predict", "--symbols", "BTHUSDT", "--targets", TARGET, "--publish-metrics"]
    )

    # Then it fails, and the alarm's metric says nothing was logged (not just silence)
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert "Nothing could be predicted" in result.output
    assert latest(cloudwatch, mh.BATCH_PREDICTED) == 0
