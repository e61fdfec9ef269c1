"""The ingest and transform Lambdas, called directly with real EventBridge event shapes.

AWS is moto (Secrets Manager for the RDS-managed secret, EventBridge with an SQS target to read
what was put); the database is the real test PostgreSQL; the market is the simulated exchange
over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pricebot import cloud, errors

SECRET_NAME = "rds!db-pricebot"


class FakeContext:
    """The attributes of a Lambda context that Powertools' Logger reads."""

    function_name = "pricebot-ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:pricebot-ingest"
    aws_request_id = "req-1"


def scheduled_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-20T12:00:00Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/pricebot-ingest"],
        "detail": {},
    }


def custom_event(detail_type: str, detail: dict) -> dict[str, Any]:
    return {**scheduled_event(), "source": cloud.EVENT_SOURCE, "detail-type": detail_type,
            "detail": detail, "resources": []}  # fmt: skip


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[dict[str, Any]]:
    """moto with the DB secret and an SQS queue receiving every pricebot event on the bus."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "pricebot-test", "POWERTOOLS_METRICS_NAMESPACE": "pricebot",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    with mock_aws():
        secret = boto3.client("secretsmanager").create_secret(
            Name=SECRET_NAME, SecretString=json.dumps({"username": "pricebot", "password": "pw"})
        )
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events = boto3.client("events")
        events.put_rule(Name="all", EventPattern=json.dumps({"source": [cloud.EVENT_SOURCE]}))
        events.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": queue_arn}])
        monkeypatch.setenv("PRICEBOT_DB_SECRET_ARN", secret["ARN"])
        monkeypatch.setenv("PRICEBOT_DB_HOST", info["host"])
        monkeypatch.setenv("PRICEBOT_DB_PORT", str(info["port"]))
        monkeypatch.setenv("PRICEBOT_DB_NAME", info["dbname"])
        monkeypatch.setenv("PRICEBOT_DB_SSLMODE", "disable")
        parameters.clear_caches()
        yield {"sqs": sqs, "queue_url": queue_url, "secret_arn": secret["ARN"]}
        parameters.clear_caches()


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch, aws: dict, exchange) -> Iterator[Any]:
    """Both handler modules, with settings re-read for this test's environment."""
    from lambdas.ingest import handler as ingest
    from lambdas.transform import handler as transform
    from pricebot.settings import get_settings

    market = exchange(history_days=2, symbols=["BTCUSDT", "ETHUSDT"])
    monkeypatch.setenv("PRICEBOT_BINANCE_URL", market.url)
    monkeypatch.setenv("PRICEBOT_LOOKBACK_DAYS", "1")
    monkeypatch.setenv("PRICEBOT_SYMBOLS", "BTCUSDT,ETHUSDT")
    for module in (ingest, transform):
        module.settings.cache_clear()
    get_settings.cache_clear()
    yield type("Handlers", (), {"ingest": ingest, "transform": transform, "market": market})
    for module in (ingest, transform):
        module.settings.cache_clear()
    get_settings.cache_clear()


def received(aws: dict) -> list[dict]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def candle_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT symbol, count(*) FROM klines GROUP BY symbol").fetchall())


def test_scheduled_ingest_writes_candles_and_announces_them(
    handlers: Any, aws: dict, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the schedule fires
    result = handlers.ingest.lambda_handler(scheduled_event(), FakeContext())

    # Then every configured symbol has a day of closed candles
    counts = candle_counts(database_url)
    assert set(counts) == {"BTCUSDT", "ETHUSDT"}
    assert result["candles_written"] == sum(counts.values()) > 2 * 1400
    # and one KlinesIngested event names both symbols with their ranges
    [event] = received(aws)
    assert event["detail-type"] == cloud.KLINES_INGESTED
    ranges = {r["symbol"]: r for r in event["detail"]["symbols"]}
    assert set(ranges) == {"BTCUSDT", "ETHUSDT"}
    assert ranges["BTCUSDT"]["rows"] == counts["BTCUSDT"]
    # and the metrics went out as EMF with the candle count
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    written = [m["CandlesWritten"] for m in emf if "CandlesWritten" in m]
    assert written == [[float(sum(counts.values()))]]
    assert any("LagSeconds" in m for m in emf)


def test_ingest_logs_json_with_the_event_id_as_correlation_id(
    handlers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handlers.ingest.lambda_handler(scheduled_event(), FakeContext())

    # The record as the function's JSON formatter writes it to CloudWatch
    [record] = [r for r in caplog.records if r.getMessage() == "caught up"]
    line = json.loads(handlers.ingest.logger.registered_formatter.format(record))
    assert line["correlation_id"] == scheduled_event()["id"]
    assert line["function_name"] == "pricebot-ingest"
    assert line["candles"] > 0


def test_same_event_twice_writes_no_candle_twice(handlers: Any, database_url: str) -> None:
    event = custom_event(cloud.INGEST_BATCH, {"symbols": ["ETHUSDT"]})
    handlers.ingest.lambda_handler(event, FakeContext())
    first = candle_counts(database_url)

    handlers.ingest.lambda_handler(event, FakeContext())

    assert candle_counts(database_url) == first == {"ETHUSDT": first["ETHUSDT"]}


def test_many_symbols_fan_out_in_batches_that_cover_them_all(
    handlers: Any, aws: dict, monkeypatch: pytest.MonkeyPatch, exchange, database_url: str
) -> None:
    # Given 60 symbols and batches of 25
    symbols = [f"C{i:03d}USDT" for i in range(60)]
    market = exchange(history_days=2, symbols=symbols)
    monkeypatch.setenv("PRICEBOT_BINANCE_URL", market.url)
    monkeypatch.setenv("PRICEBOT_SYMBOLS", ",".join(symbols))
    monkeypatch.setenv("PRICEBOT_BATCH_SIZE", "25")
    handlers.ingest.settings.cache_clear()
    from pricebot.settings import get_settings

    get_settings.cache_clear()

    # When the schedule fires, then each batch event is delivered as its own invocation
    result = handlers.ingest.lambda_handler(scheduled_event(), FakeContext())
    batches = [e for e in received(aws) if e["detail-type"] == cloud.INGEST_BATCH]
    for batch in batches:
        handlers.ingest.lambda_handler(custom_event(cloud.INGEST_BATCH, batch["detail"]),
                                       FakeContext())  # fmt: skip

    # Then three batches covered every symbol exactly once, and no candle was fetched up front
    assert result == {"fanned_out": 3}
    assert sorted(len(b["detail"]["symbols"]) for b in batches) == [10, 25, 25]
    assert set(candle_counts(database_url)) == set(symbols)


def test_unexpected_event_is_refused_before_any_work(handlers: Any, database_url: str) -> None:
    event = {**scheduled_event(), "source": "aws.s3", "detail-type": "Object Created"}

    with pytest.raises(errors.UnexpectedEventError, match=r"aws\.s3"):
        handlers.ingest.lambda_handler(event, FakeContext())

    assert candle_counts(database_url) == {}


def test_batch_event_without_symbols_names_the_field(handlers: Any, database_url: str) -> None:
    with pytest.raises(errors.UnexpectedEventError, match="symbols"):
        handlers.ingest.lambda_handler(custom_event(cloud.INGEST_BATCH, {"coins": ["X"]}),
                                       FakeContext())  # fmt: skip

    assert candle_counts(database_url) == {}


def test_missing_secret_is_named(handlers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf"
    monkeypatch.setenv("PRICEBOT_DB_SECRET_ARN", arn)
    handlers.ingest.settings.cache_clear()

    with pytest.raises(errors.SecretUnavailableError, match="gone-AbCdEf"):
        handlers.ingest.lambda_handler(scheduled_event(), FakeContext())


def test_failing_exchange_fails_the_invocation_and_the_next_catches_up(
    handlers: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pricebot.errors import RetriesExhaustedError
    from pricebot.settings import get_settings

    # Given an exchange that answers every request with a 5xx, and a client that retries briefly
    handlers.market.config.failure_rate = 1.0
    monkeypatch.setenv("PRICEBOT_MAX_RETRIES", "1")
    monkeypatch.setenv("PRICEBOT_BACKOFF_CAP_SECONDS", "0.1")
    get_settings.cache_clear()

    # When the schedule fires, the invocation fails (so Lambda retries it, then the DLQ)
    with pytest.raises(RetriesExhaustedError):
        handlers.ingest.lambda_handler(scheduled_event(), FakeContext())
    assert candle_counts(database_url) == {}

    # Then once the exchange recovers, the next invocation catches up fully
    handlers.market.config.failure_rate = 0.0
    handlers.ingest.lambda_handler(scheduled_event(), FakeContext())
    assert set(candle_counts(database_url)) == {"BTCUSDT", "ETHUSDT"}


def test_transform_on_klines_ingested_updates_features_of_the_named_symbols(
    handlers: Any, aws: dict, database_url: str
) -> None:
    # Given candles ingested for both symbols, announced as an event
    handlers.ingest.lambda_handler(scheduled_event(), FakeContext())
    [announced] = received(aws)
    only_btc = {"symbols": [r for r in announced["detail"]["symbols"] if r["symbol"] == "BTCUSDT"]}

    # When the transform gets an event naming BTCUSDT only
    result = handlers.transform.lambda_handler(
        custom_event(cloud.KLINES_INGESTED, only_btc), FakeContext()
    )

    # Then BTCUSDT has features and ETHUSDT none
    with psycopg.connect(database_url) as conn:
        rows = dict(conn.execute("SELECT symbol, count(*) FROM features GROUP BY symbol"))
    assert set(rows) <= {"BTCUSDT"}
    assert result["feature_rows"] == {"BTCUSDT": rows.get("BTCUSDT", 0)}


def test_transform_twice_writes_nothing_the_second_time(handlers: Any) -> None:
    handlers.ingest.lambda_handler(scheduled_event(), FakeContext())
    handlers.transform.lambda_handler(scheduled_event(), FakeContext())

    again = handlers.transform.lambda_handler(scheduled_event(), FakeContext())

    assert again == {"feature_rows": {"BTCUSDT": 0, "ETHUSDT": 0}, "predictions_scored": 0}


def test_transform_refuses_an_ingest_batch_event(handlers: Any) -> None:
    with pytest.raises(errors.UnexpectedEventError, match=cloud.INGEST_BATCH):
        handlers.transform.lambda_handler(
            custom_event(cloud.INGEST_BATCH, {"symbols": ["BTCUSDT"]}), FakeContext()
        )


@pytest.mark.parametrize(
    ("module", "tracing"),
    [("lambdas.ingest.handler", "true"), ("lambdas.ingest.handler", "false"),
     ("lambdas.transform.handler", "true")],
)  # fmt: skip
def test_importing_a_handler_defers_the_heavy_stack_to_its_first_use(
    module: str, tracing: str
) -> None:
    # Given a fresh interpreter, tracing off or on
    heavy = ["numpy", "pandas", "psycopg", "httpx", "pydantic_settings", "aws_xray_sdk",
             "botocore.session", "boto3"]  # fmt: skip
    code = f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": tracing, "AWS_DEFAULT_REGION": "eu-west-1"}
    # When only the handler module is imported (a Lambda's init)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    # Then none of the heavy stack came with it: Powertools' Logger and Metrics are all it needs
    assert done.stdout.strip() == ""


def test_with_tracing_on_the_handler_runs_inside_powertools_tracer(
    handlers: Any, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    # Given tracing switched on (as the deployed functions have it)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    handlers.ingest._instrumented.cache_clear()
    try:
        # When a batch is ingested, Then it runs inside the Tracer, and the work is done
        event = custom_event(cloud.INGEST_BATCH, {"symbols": ["ETHUSDT"]})
        result = handlers.ingest.lambda_handler(event, FakeContext())
        assert result["candles_written"] == candle_counts(database_url)["ETHUSDT"] > 0
    finally:
        handlers.ingest._instrumented.cache_clear()


def test_the_start_of_history_is_the_lookback_not_more(handlers: Any, database_url: str) -> None:
    handlers.ingest.lambda_handler(custom_event(cloud.INGEST_BATCH, {"symbols": ["BTCUSDT"]}),
                                   FakeContext())  # fmt: skip

    with psycopg.connect(database_url) as conn:
        first = conn.execute("SELECT min(open_time) FROM klines").fetchone()[0]
    assert first >= datetime.now(UTC) - timedelta(days=1, minutes=2)


def test_a_ban_is_recorded_and_later_invocations_ask_nothing_until_it_ends(
    handlers: Any, aws: dict, database_url: str
) -> None:
    # Given an exchange banning this client for ten minutes
    handlers.market.config.banned_until = datetime.now(UTC) + timedelta(minutes=10)
    # When the schedule fires, Then the invocation succeeds (a retry would only ask again),
    # saying when ingestion resumes, having made one request, and announcing nothing
    first = handlers.ingest.lambda_handler(scheduled_event(), FakeContext())
    resume = datetime.fromisoformat(first["resume_at"])
    assert timedelta(minutes=9) < resume - datetime.now(UTC) <= timedelta(minutes=10, seconds=1)
    assert first["candles_written"] == 0
    asked = handlers.market.stats.requests()
    assert asked == 1
    # When the schedule fires again during the ban, Then nothing at all is asked
    again = handlers.ingest.lambda_handler(scheduled_event(), FakeContext())
    assert again["resume_at"] == first["resume_at"]
    assert handlers.market.stats.requests() == asked
    assert received(aws) == []
    assert candle_counts(database_url) == {}


class ShortContext(FakeContext):
    """An invocation with 40 s left before its timeout."""

    def get_remaining_time_in_millis(self) -> int:
        return 40_000


def test_an_invocation_does_not_wait_out_a_retry_after_its_time_left_cannot_cover(
    handlers: Any,
) -> None:
    # Given a 30 s ban (within PRICEBOT_MAX_RETRY_AFTER_SECONDS) and an invocation whose
    # timeout is 40 s away (30 s of which are its margin)
    handlers.market.config.banned_until = datetime.now(UTC) + timedelta(seconds=30)
    # When the schedule fires
    result = handlers.ingest.lambda_handler(scheduled_event(), ShortContext())
    # Then it returned with the ban's end after the one request that met it, instead of
    # sleeping 30 s into its timeout and asking again
    assert "resume_at" in result
    assert handlers.market.stats.requests() == 1
