"""The prediction log against a real PostgreSQL: batched writes, shutdown, outage; scoring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pricebot import db
from pricebot.klines import insert_klines, parse_kline, to_millis
from pricebot.predictions import PredictionLog, PredictionRecord, score_predictions
from pricebot_local.localdb import LocalPostgres

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def record(i: int = 0, *, target: str = "ret1h", feature_time: datetime = T0, horizon: int = 60):
    return PredictionRecord(
        made_at=feature_time + timedelta(seconds=30),
        symbol="BTCUSDT",
        target=target,
        model_name=f"pricebot-btcusdt-{target}",
        model_version="3",
        alias="champion",
        feature_time=feature_time,
        horizon_minutes=horizon,
        prediction=0.001 * i,
        base_close=100.0,
        request_id=f"r{i}",
    )


def count(url: str) -> int:
    with db.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]


def test_every_prediction_is_written_by_a_clean_shutdown(database_url: str) -> None:
    log = PredictionLog(database_url, batch_rows=100, flush_ms=10_000).start()

    for i in range(1234):
        log.record(record(i))
    log.close()

    assert count(database_url) == 1234
    assert log.written == 1234
    assert log.dropped == 0


def test_rows_are_written_while_the_service_runs(database_url: str) -> None:
    log = PredictionLog(database_url, batch_rows=500, flush_ms=50).start()
    try:
        for i in range(7):
            log.record(record(i))

        assert log.flush(timeout=10)

        assert count(database_url) == 7
    finally:
        log.close()


def test_logged_row_holds_what_was_predicted(database_url: str) -> None:
    with PredictionLog(database_url) as log:
        log.record(record(5))

    with db.connect(database_url) as conn:
        row = db.fetch_dicts(conn, "SELECT * FROM predictions")[0]
    assert row["symbol"] == "BTCUSDT"
    assert row["model_version"] == "3"
    assert row["feature_time"] == T0
    assert row["horizon_minutes"] == 60
    assert row["prediction"] == pytest.approx(0.005)
    assert row["actual"] is None


def test_rows_wait_out_a_database_outage(postgres: LocalPostgres) -> None:
    name = "outage_log"
    url = postgres.url(name)  # not created yet: the database is "down"
    log = PredictionLog(url, batch_rows=10, flush_ms=20, retry_seconds=0.05).start()
    try:
        for i in range(25):
            log.record(record(i))
        log.flush(timeout=10)
        assert log.failed_flushes >= 1
        assert log.written == 0

        postgres.create_database(name, template="pricebot_template")
        assert log.flush(timeout=10)

        assert count(url) == 25
    finally:
        log.close()
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_recording_after_close_is_refused(database_url: str) -> None:
    log = PredictionLog(database_url).start()
    log.close()

    with pytest.raises(RuntimeError, match="closed"):
        log.record(record())


def kline(symbol: str, minute: datetime, close: float) -> tuple:
    ms = to_millis(minute)
    text = f"{close:.2f}"
    return parse_kline(
        [ms, text, text, text, text, "1.0", ms + 59_999, "100.0", 10, "0.5", "50.0", "0"],
        symbol,
        "test",
    )


def write_closes(url: str, closes: dict[datetime, float], symbol: str = "BTCUSDT") -> None:
    with db.transaction(url) as conn:
        insert_klines(conn, [kline(symbol, t, c) for t, c in closes.items()], market="binance")


def every_minute(start: datetime, minutes: int, close: float = 100.0) -> dict[datetime, float]:
    """A close for each minute of ``[start, start + minutes]`` (no gap for the scorer to skip)."""
    return {start + timedelta(minutes=m): close for m in range(minutes + 1)}


def write_predictions(url: str, *records: PredictionRecord) -> None:
    with PredictionLog(url) as log:
        for r in records:
            log.record(r)


def actuals(url: str) -> list[tuple]:
    with db.connect(url) as conn:
        return conn.execute(
            "SELECT request_id, actual, scored_at FROM predictions ORDER BY id"
        ).fetchall()


def test_scoring_fills_the_realised_return_once_the_horizon_passed(database_url: str) -> None:
    write_closes(database_url, {**every_minute(T0, 59), T0 + timedelta(minutes=60): 103.0})
    write_predictions(database_url, record(1))

    scored = score_predictions(database_url, now=T0 + timedelta(minutes=61))

    assert scored == 1
    assert actuals(database_url)[0][1] == pytest.approx(0.03)


def test_scoring_twice_fills_nothing_new(database_url: str) -> None:
    write_closes(database_url, {**every_minute(T0, 59), T0 + timedelta(minutes=60): 103.0})
    write_predictions(database_url, record(1))
    score_predictions(database_url, now=T0 + timedelta(minutes=61))
    first = actuals(database_url)

    again = score_predictions(database_url, now=T0 + timedelta(minutes=90))

    assert again == 0
    assert actuals(database_url) == first


def test_scoring_leaves_predictions_whose_horizon_is_ahead(database_url: str) -> None:
    write_closes(database_url, {T0: 100.0, T0 + timedelta(minutes=60): 103.0})
    write_predictions(database_url, record(1))

    scored = score_predictions(database_url, now=T0 + timedelta(minutes=59))

    assert scored == 0
    assert actuals(database_url)[0][1] is None


def test_scoring_waits_for_the_candle_at_the_horizon(database_url: str) -> None:
    write_closes(database_url, {T0: 100.0})
    write_predictions(database_url, record(1))

    scored = score_predictions(database_url, now=T0 + timedelta(minutes=120))

    assert scored == 0
    assert actuals(database_url)[0][1] is None


def test_scoring_a_classification_target_uses_its_label_definition(database_url: str) -> None:
    # up1pct1h: did some close within the hour reach +1%? It did at minute 30, then fell back.
    closes = {T0 + timedelta(minutes=m): 100.0 for m in range(61)}
    closes[T0 + timedelta(minutes=30)] = 101.5
    write_closes(database_url, closes)
    write_predictions(database_url, record(1, target="up1pct1h"))

    score_predictions(database_url, now=T0 + timedelta(minutes=61))

    assert actuals(database_url)[0][1] == 1.0


def test_a_horizon_across_a_long_gap_is_decided_without_an_outcome(database_url: str) -> None:
    # Given an hour of closes with a 10-minute hole (longer than max_gap_minutes=5) in it,
    # then the close at the horizon
    closes = every_minute(T0, 60)
    for m in range(20, 30):
        del closes[T0 + timedelta(minutes=m)]
    closes[T0 + timedelta(minutes=60)] = 103.0
    write_closes(database_url, closes)
    write_predictions(database_url, record(1))

    # When the scorer runs after the horizon
    scored = score_predictions(database_url, now=T0 + timedelta(minutes=61), max_gap_minutes=5)

    # Then the prediction gets no outcome (training would have dropped its label too), and is
    # marked decided so no later run reads it again
    assert scored == 0
    _request_id, actual, scored_at = actuals(database_url)[0]
    assert actual is None
    assert scored_at == T0 + timedelta(minutes=61)


def test_a_short_gap_in_the_horizon_still_scores(database_url: str) -> None:
    closes = every_minute(T0, 60)
    for m in range(20, 23):  # 3 minutes: within max_gap_minutes=5
        del closes[T0 + timedelta(minutes=m)]
    closes[T0 + timedelta(minutes=60)] = 103.0
    write_closes(database_url, closes)
    write_predictions(database_url, record(1))

    scored = score_predictions(database_url, now=T0 + timedelta(minutes=61), max_gap_minutes=5)

    assert scored == 1
    assert actuals(database_url)[0][1] == pytest.approx(0.03)
