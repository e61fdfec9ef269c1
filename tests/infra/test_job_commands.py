"""The job image's own commands, run as the CLI runs them: ``pricebot score --publish-metrics``
(the hourly scoring task) against the real PostgreSQL and moto's CloudWatch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from pricebot import model_health as mh

MINUTE = timedelta(minutes=1)


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


def store_candles(conn: psycopg.Connection, symbol: str, start: datetime, closes: list[float]):
    for i, close in enumerate(closes):
        when = start + i * MINUTE
        conn.execute(
            "INSERT INTO klines VALUES (%s, %s, %s, %s, %s, %s, 1, %s, 1, 1, 1, 1, '0', 'test')",
            (symbol, when, close, close, close, close, when + timedelta(milliseconds=59_999)),
        )


def log_prediction(conn: psycopg.Connection, symbol: str, feature_time: datetime, value: float):
    conn.execute(
        """INSERT INTO predictions (made_at, symbol, target, model_name, model_version, alias,
               feature_time, horizon_minutes, prediction)
           VALUES (%s, %s, 'ret1h', %s, '1', 'champion', %s, 60, %s)""",
        (feature_time, symbol, f"pricebot-{symbol.lower()}-ret1h", feature_time, value),
    )


def latest(client: Any, name: str, dimensions: dict[str, str]) -> float:
    stats = client.get_metric_statistics(
        Namespace=mh.NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(hours=1),
        Period=3600,
        Statistics=["Maximum"],
    )
    [point] = stats["Datapoints"]
    return point["Maximum"]


def test_score_with_publish_metrics_fills_outcomes_then_publishes_the_champions_health(
    settings_env: str, cloudwatch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pricebot.settings import get_settings
    from pricebot_cli import app

    # Given 40 champion predictions of +3 % made three hours ago, on a price that then rose 1 %
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    with psycopg.connect(settings_env) as conn:
        store_candles(conn, "BTCUSDT", start, [100.0] * 60 + [101.0] * 60)
        for i in range(40):
            log_prediction(conn, "BTCUSDT", start + i * MINUTE, 0.03)
    monkeypatch.setenv("PRICEBOT_SYMBOLS", "BTCUSDT")
    monkeypatch.setenv("PRICEBOT_TARGETS", "RET60M")  # published under its canonical name
    monkeypatch.setenv("PRICEBOT_MODEL_HEALTH_MIN_SCORED", "30")
    get_settings.cache_clear()

    # When the scoring task's command runs
    result = CliRunner().invoke(app, ["score", "--publish-metrics"])

    # Then every outcome is filled in (+1 %), and CloudWatch has the champion's error (2 %)
    # against no change's (1 %) for the pair
    assert result.exit_code == 0, result.output
    assert "scored 40 predictions" in result.output
    with psycopg.connect(settings_env) as conn:
        actuals = conn.execute("SELECT DISTINCT round(actual::numeric, 6) FROM predictions")
        assert [float(a) for (a,) in actuals] == [0.01]
    pair = {"Symbol": "BTCUSDT", "Target": "ret1h"}
    assert latest(cloudwatch, mh.SCORED, pair) == 40
    assert latest(cloudwatch, mh.CHAMPION_MAE, pair) == pytest.approx(0.02)
    assert latest(cloudwatch, mh.NO_CHANGE_MAE, pair) == pytest.approx(0.01)
    assert latest(cloudwatch, mh.ERROR_RATIO, pair) == pytest.approx(2.0)
    assert "published 4 metric values" in result.output


def test_score_alone_publishes_nothing(settings_env: str, cloudwatch: Any) -> None:
    from pricebot_cli import app

    result = CliRunner().invoke(app, ["score"])

    assert result.exit_code == 0, result.output
    assert cloudwatch.list_metrics(Namespace=mh.NAMESPACE)["Metrics"] == []


def test_bootstrap_on_a_bootstrapped_stack_only_looks(
    settings_env: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from pricebot.registry import Registry, model_name
    from pricebot.settings import get_settings
    from pricebot_cli import app

    # Given a symbol with 31 days of history and a champion (the tracking server is shared, so
    # the symbol is this test's own)
    symbol = f"BS{uuid.uuid4().hex[:8].upper()}"
    with psycopg.connect(settings_env) as conn:
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=31)
        store_candles(conn, symbol, start, [100.0])
    client = Registry(tracking_uri).client
    run = client.create_run(client.create_experiment(f"bootstrap-{symbol}"))
    name = model_name(symbol, "ret1h")
    client.create_registered_model(name)
    version = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model",
                                          run_id=run.info.run_id)  # fmt: skip
    client.set_registered_model_alias(name, "champion", version.version)
    monkeypatch.setenv("PRICEBOT_SYMBOLS", symbol)
    monkeypatch.setenv("PRICEBOT_TARGETS", "ret1h")
    get_settings.cache_clear()

    # When the bootstrap task's command runs
    result = CliRunner().invoke(app, ["bootstrap", "--history-days", "30", "--trials", "1"])

    # Then it has nothing to do, and trains nothing
    assert result.exit_code == 0, result.output
    assert f"{name}: served (@champion = v1)" in result.output
    assert "nothing to do" in result.output
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]
