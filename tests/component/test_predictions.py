"""The prediction log against a real PostgreSQL: batches, bound, back-off, shutdown; scoring."""

from __future__ import annotations

import itertools
import logging
import os
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pricebot import db
from pricebot.klines import insert_klines, parse_kline, to_millis
from pricebot.predictions import DROPPED, PredictionLog, PredictionRecord, score_predictions
from pricebot_local.localdb import LocalPostgres
from tests.conftest import free_port

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
    # Given a log writing partial batches after 50 ms, When fewer rows than a batch arrive
    log = PredictionLog(database_url, batch_rows=500, flush_ms=50).start()
    try:
        for i in range(7):
            log.record(record(i))

        # Then they are written without a flush or a close asking for it
        deadline = time.monotonic() + 30
        while count(database_url) < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count(database_url) == 7
    finally:
        log.close()


def test_a_flush_waits_until_the_rows_are_written(database_url: str) -> None:
    log = PredictionLog(database_url, batch_rows=500, flush_ms=600_000).start()
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


@pytest.fixture
def absent_database(postgres: LocalPostgres):
    """A database URL on the running server whose database does not exist yet ("down"); the
    test creates it (the database "comes back") with ``create()``."""
    name = f"absent_{os.getpid()}_{next(_absent)}"

    class Absent:
        url = postgres.url(name)

        @staticmethod
        def create() -> None:
            postgres.create_database(name, template="pricebot_template")

    yield Absent
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_absent = itertools.count()


def test_rows_wait_out_a_database_outage(absent_database) -> None:
    log = PredictionLog(absent_database.url, batch_rows=10, flush_ms=20, retry_seconds=0.05)
    log.start()
    try:
        for i in range(25):
            log.record(record(i))
        assert not log.flush(timeout=1)
        assert log.failed_flushes >= 1
        assert log.written == 0

        absent_database.create()

        assert log.flush(timeout=30)
        assert count(absent_database.url) == 25
    finally:
        log.close()


def test_a_full_queue_drops_the_oldest_and_counts_them(absent_database) -> None:
    events: list[tuple[str, int]] = []
    log = PredictionLog(
        absent_database.url,
        batch_rows=4,
        flush_ms=10,
        max_pending=10,
        retry_seconds=0.05,
        retry_max_seconds=0.1,
        on_event=lambda kind, rows: events.append((kind, rows)),
    ).start()
    try:
        for i in range(25):
            log.record(record(i))
        absent_database.create()
        log.flush(timeout=30)

        with db.connect(absent_database.url) as conn:
            kept = [r[0] for r in conn.execute("SELECT request_id FROM predictions ORDER BY id")]
    finally:
        log.close()

    assert kept == [f"r{i}" for i in range(15, 25)]
    assert log.dropped == 15
    assert sum(rows for kind, rows in events if kind == DROPPED) == 15


def test_a_batch_larger_than_the_room_left_keeps_the_newest_in_order(absent_database) -> None:
    # Given a log of at most 10 rows already holding 6, while its database is away
    events: list[tuple[str, int]] = []
    log = PredictionLog(
        absent_database.url, batch_rows=4, flush_ms=10, max_pending=10, retry_seconds=0.05,
        retry_max_seconds=0.1, on_event=lambda kind, rows: events.append((kind, rows)),
    ).start()  # fmt: skip
    try:
        log.record_many([record(i) for i in range(6)])

        # When a batch of 8 answers is logged at once
        log.record_many([record(i) for i in range(6, 14)])
        absent_database.create()
        log.flush(timeout=30)
        with db.connect(absent_database.url) as conn:
            kept = [r[0] for r in conn.execute("SELECT request_id FROM predictions ORDER BY id")]
    finally:
        log.close()

    # Then the oldest 4 were dropped and counted, and the newest 10 are written in order
    assert kept == [f"r{i}" for i in range(4, 14)]
    assert log.dropped == 4
    assert sum(rows for kind, rows in events if kind == DROPPED) == 4


def test_a_refused_connection_is_retried_with_back_off_not_per_record(postgres) -> None:
    # Given a log whose database refuses connections (nothing listens on the port)
    refused = f"postgresql://pricebot@127.0.0.1:{free_port()}/pricebot"
    log = PredictionLog(
        refused, batch_rows=20, flush_ms=10, retry_seconds=0.1, retry_max_seconds=0.4
    ).start()
    try:
        # When thousands of predictions arrive for two seconds
        stop_at = time.monotonic() + 2.0
        i = 0
        while time.monotonic() < stop_at:
            log.record(record(i))
            i += 1
            if i % 100 == 0:
                time.sleep(0.001)
        attempts = log.failed_flushes
    finally:
        log.close()

    # Then the writer tried only as often as its back-off allows (0.1, 0.2, 0.4, 0.4 ... s)
    assert i > 1000
    assert 1 <= attempts <= 8


def test_closing_writes_the_queue_and_logs_what_was_written(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = PredictionLog(database_url, batch_rows=1000, flush_ms=600_000).start()
    for i in range(321):
        log.record(record(i))

    with caplog.at_level(logging.INFO, logger="pricebot.predictions"):
        log.close()

    assert count(database_url) == 321
    assert "prediction log closed: 321 rows written, 0 lost" in caplog.text


def test_closing_while_the_database_is_away_gives_up_and_counts_the_loss(
    absent_database, caplog: pytest.LogCaptureFixture
) -> None:
    log = PredictionLog(
        absent_database.url, batch_rows=5, flush_ms=10, retry_seconds=0.05, shutdown_seconds=0.5
    ).start()
    for i in range(12):
        log.record(record(i))

    with caplog.at_level(logging.INFO, logger="pricebot.predictions"):
        log.close()

    assert log.lost_at_exit == 12
    assert "0 rows written, 12 lost (0 dropped while the queue was full, 12 unwritten" in (
        caplog.text
    )


def test_a_prediction_retried_after_an_unconfirmed_commit_is_stored_once(
    database_url: str,
) -> None:
    # A retry of a batch whose commit went through sends the same request ids again.
    with PredictionLog(database_url) as log:
        log.record(record(7))
    with PredictionLog(database_url) as log:
        log.record(record(7))
        log.record(record(8))

    with db.connect(database_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT request_id FROM predictions ORDER BY id")]
    assert ids == ["r7", "r8"]


def test_a_row_the_database_refuses_is_rejected_alone(database_url: str) -> None:
    bad = record(2)._replace(symbol=None)  # symbol is NOT NULL
    with PredictionLog(database_url, batch_rows=10, flush_ms=10_000) as log:
        log.record(record(1))
        log.record(bad)
        log.record(record(3))

    with db.connect(database_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT request_id FROM predictions ORDER BY id")]
    assert ids == ["r1", "r3"]
    assert log.rejected == 1


def test_the_log_records_the_feature_age_of_each_answer(database_url: str) -> None:
    with PredictionLog(database_url) as log:
        log.record(record(1))  # made 30 s after the feature row's open time

    with db.connect(database_url) as conn:
        age = conn.execute("SELECT feature_age_seconds FROM predictions").fetchone()[0]
    assert age == pytest.approx(30.0)


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
