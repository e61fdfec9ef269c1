"""The monitoring page's core queries on a real PostgreSQL (and MLflow for the replay)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pricebot import monitoring
from pricebot.candles import load_candles
from pricebot.db import connect, transaction
from pricebot.errors import NoChampionError, RangeError
from pricebot.klines import insert_klines, parse_kline, to_millis
from pricebot.predictions import score_predictions
from pricebot.registry import CHAMPION, Registry
from pricebot.targets import parse_target
from tests.fixtures.models import write_feature_rows
from tests.fixtures.monitoring_data import log_predictions, minute_times, store_candles

T0 = datetime(2026, 3, 2, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def store_closes(url: str, symbol: str, start: datetime, closes: list[float]) -> None:
    """One flat candle per minute from ``start`` with the given closes."""
    rows = []
    for i, close in enumerate(closes):
        open_ms = to_millis(start + i * MINUTE)
        price = f"{close:.2f}"
        rows.append([open_ms, price, price, price, price, "1.0", open_ms + 59_999, "1.0", 1,
                     "0.5", "0.5", "0"])  # fmt: skip
    with transaction(url) as conn:
        insert_klines(conn, [parse_kline(r, symbol, "test") for r in rows], market="binance")


def test_price_series_sends_at_most_max_points_with_each_steps_last_close(
    database_url: str,
) -> None:
    # Given three days of minute candles (4,320 rows)
    end = T0 + timedelta(days=3) - MINUTE
    store_candles(database_url, "BTCUSDT", T0, end)

    # When the page asks for the range with room for 100 points
    with connect(database_url) as conn:
        series = monitoring.price_series(conn, "BTCUSDT", T0, end, max_points=100)
        candles = load_candles(conn, "BTCUSDT", T0, end)

    # Then it gets one row per hour (the smallest clock step under 100 points) ...
    assert len(series) == 72
    assert (series["candles"] == 60).all()
    # ... each carrying the hour's last close, lowest low and highest high
    hourly = candles.resample("60min")
    assert np.allclose(series["close"], hourly["close"].last().to_numpy())
    assert np.allclose(series["low"], hourly["low"].min().to_numpy())
    assert np.allclose(series["high"], hourly["high"].max().to_numpy())


def test_a_year_of_minutes_stays_within_the_point_budget() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for days in (1, 30, 365, 3650):
        end = start + timedelta(days=days)
        step = monitoring.step_minutes(start, end)
        assert (end - start) / timedelta(minutes=step) <= monitoring.MAX_POINTS
        assert 1440 % step == 0 or step % 1440 == 0  # on the day's clock grid


def test_logged_points_are_one_served_prediction_per_step(database_url: str) -> None:
    # Given a prediction logged every minute for two days
    end = T0 + timedelta(days=2) - MINUTE
    times = minute_times(T0, end)
    log_predictions(database_url, "ETHUSDT", "ret24h", times, lambda i: i / 1e6)

    # When the page asks for at most 100 points
    with connect(database_url) as conn:
        points = monitoring.logged_points(
            conn, "ETHUSDT", parse_target("ret24h"), T0, end, max_points=100
        )

    # Then it gets 96 real predictions, the first of each 30-minute step
    assert len(points) == 96
    minutes = (points["time"] - T0) / MINUTE
    assert (minutes % 30 == 0).all()
    assert np.allclose(points["prediction"], minutes.to_numpy() / 1e6)


@pytest.fixture
def known_series(database_url: str) -> str:
    """Closes 50 for an hour, 100 for the next, 110 after; 60 logged 1-hour predictions made in
    the second hour alternating +10% and -10%, scored by the real scorer.

    Every prediction's truth is +10% (100 -> 110); momentum and the recent mean both say +100%
    (50 -> 100); no change says 0.
    """
    store_closes(database_url, "ADAUSDT", T0, [50.0] * 60 + [100.0] * 60 + [110.0] * 120)
    times = [T0 + (60 + i) * MINUTE for i in range(60)]
    log_predictions(database_url, "ADAUSDT", "ret1h", times,
                    lambda i: 0.1 if i % 2 == 0 else -0.1, horizon_minutes=60)  # fmt: skip
    assert score_predictions(database_url, now=T0 + timedelta(hours=4)) == 60
    return database_url


def final(metrics: pd.DataFrame, metric: str, series: str) -> float:
    rows = metrics[(metrics["metric"] == metric) & (metrics["series"] == series)]
    return float(rows.sort_values("time")["value"].iloc[-1])


def test_rolling_metrics_over_the_whole_range_match_the_hand_computed_values(
    known_series: str,
) -> None:
    spec = parse_target("ret1h")
    with connect(known_series) as conn:
        points = monitoring.logged_points(conn, "ADAUSDT", spec, T0, T0 + timedelta(hours=2))

    metrics = monitoring.rolling_metrics(points, spec, window_minutes=240)

    assert len(points) == 60
    assert final(metrics, "mae", "model") == pytest.approx(0.1)  # half 0, half 0.2
    assert final(metrics, "directional_accuracy", "model") == pytest.approx(0.5)
    assert final(metrics, "mae", "no_change") == pytest.approx(0.1)
    assert final(metrics, "directional_accuracy", "no_change") == pytest.approx(0.0)
    assert final(metrics, "mae", "momentum") == pytest.approx(0.9)
    assert final(metrics, "directional_accuracy", "momentum") == pytest.approx(1.0)
    assert final(metrics, "mae", "recent_mean") == pytest.approx(0.9)
    assert final(metrics, "directional_accuracy", "buy_and_hold") == pytest.approx(1.0)
    assert "buy_and_hold" not in set(metrics.loc[metrics["metric"] == "mae", "series"])


def test_a_two_minute_window_averages_each_prediction_with_the_one_before(
    known_series: str,
) -> None:
    spec = parse_target("ret1h")
    with connect(known_series) as conn:
        points = monitoring.logged_points(conn, "ADAUSDT", spec, T0, T0 + timedelta(hours=2))

    metrics = monitoring.rolling_metrics(points, spec, window_minutes=2)

    model = metrics[(metrics["metric"] == "mae") & (metrics["series"] == "model")]
    values = model.sort_values("time")["value"].to_numpy()
    assert values[0] == pytest.approx(0.0)  # the first alone: +10% was right
    assert np.allclose(values[1:], 0.1)  # each pair: one exact, one 0.2 off


def test_pool_value_after_fees_comes_from_the_evaluation_code(known_series: str) -> None:
    # Given the known series: every hour is +10%, the model is long on every other minute
    spec = parse_target("ret1h")
    with connect(known_series) as conn:
        points = monitoring.logged_points(conn, "ADAUSDT", spec, T0, T0 + timedelta(hours=2))

    pools = monitoring.pool_curves(points, spec, step=1)

    # Then buy-and-hold makes 10% less two fees in every pool; the model only in the pools
    # that start on a +10% call (the even minutes)
    hold = 1.1 * 0.999 * 0.999
    assert pools.buy_hold_value == pytest.approx(hold)
    assert pools.model_value == pytest.approx((12 * hold + 12 * 1.0) / 24)
    assert set(pools.curve["series"]) == {"model (after fees)", "buy and hold (after fees)"}


def test_replay_is_the_registered_version_applied_to_the_stored_features(
    database_url: str, registered_model
) -> None:
    # Given stored feature rows for two hours and a registered version
    times = [T0 + i * MINUTE for i in range(120)]
    frame = write_feature_rows(database_url, "XRPUSDT", times, seed=3)
    model = registered_model("XRPUSDT", "ret13m", seed=5)
    spec = parse_target("ret13m")

    # When the page asks for that version over the range, 30 points at most
    with connect(database_url) as conn:
        points = monitoring.prediction_points(
            conn, "XRPUSDT", spec, T0, times[-1], model.version, uri=None, max_points=30
        )

    # Then it is a replay, one row every 4 minutes, each the model's answer for that row
    assert points.source == monitoring.REPLAY
    assert "replay" in points.label
    got = points.frame.set_index("time")
    assert len(got) == 30
    assert ((got.index - T0) / MINUTE % 4 == 0).all()
    names = list(frame.columns[1:])
    expected = [model.expected(frame.loc[t, names].to_numpy()) for t in got.index]
    assert np.allclose(got["prediction"].to_numpy(), expected, rtol=1e-9, atol=1e-12)
    assert (got["version"] == model.version).all()


def test_a_version_with_logged_predictions_shows_them_not_a_replay(
    database_url: str, registered_model
) -> None:
    model = registered_model("DOTUSDT", "ret13m", seed=6)
    times = [T0 + i * MINUTE for i in range(30)]
    log_predictions(database_url, "DOTUSDT", "ret13m", times, lambda i: 0.5,
                    version=model.version, horizon_minutes=13)  # fmt: skip

    with connect(database_url) as conn:
        points = monitoring.prediction_points(
            conn, "DOTUSDT", parse_target("ret13m"), T0, times[-1], CHAMPION, uri=None
        )

    assert points.source == monitoring.LOGGED
    assert points.version == model.version
    assert (points.frame["prediction"] == 0.5).all()


def test_a_symbol_without_a_registered_model_says_how_to_train_one(
    database_url: str, tracking_uri: str
) -> None:
    with connect(database_url) as conn, pytest.raises(NoChampionError) as caught:
        monitoring.prediction_points(
            conn, "NOPEUSDT", parse_target("ret24h"), T0, T0 + timedelta(days=1), CHAMPION,
            uri=tracking_uri,
        )  # fmt: skip
    assert "pricebot train --symbol NOPEUSDT" in str(caught.value)


def test_champion_timeline_joins_alias_history_and_the_log(
    database_url: str, registered_model, tracking_uri: str
) -> None:
    # Given version A served for an hour, then the alias moved to B which served the next hour
    from mlflow import MlflowClient

    first = registered_model("SOLUSDT", "ret13m", seed=1)
    second = registered_model("SOLUSDT", "ret13m", seed=2, alias=None)
    client = MlflowClient(tracking_uri)
    moved = Registry(client=client).move_alias(
        database_url, first.name, CHAMPION, second.version, reason="test"
    )
    base = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    hour = [base + i * MINUTE for i in range(60)]
    log_predictions(database_url, "SOLUSDT", "ret13m", hour, lambda i: 0.0,
                    version=first.version, horizon_minutes=13)  # fmt: skip
    log_predictions(database_url, "SOLUSDT", "ret13m", [t + timedelta(hours=1) for t in hour],
                    lambda i: 0.0, version=second.version, horizon_minutes=13)  # fmt: skip

    # When the timeline up to now is asked for
    with connect(database_url) as conn:
        segments = monitoring.champion_timeline(
            conn, "SOLUSDT", "ret13m", base, moved.moved_at + timedelta(minutes=1)
        )

    # Then the log shows A then B, and the alias history shows B from its move on
    served = segments[segments["source"] == "served (prediction log)"]
    assert list(served["version"]) == [first.version, second.version]
    assert served["start"].iloc[1] - served["start"].iloc[0] == timedelta(hours=1)
    history = segments[segments["source"] == "alias history"]
    assert list(history["version"]) == [second.version]


def test_data_health_reports_the_newest_candle_age_and_the_gaps(database_url: str) -> None:
    from pricebot.gaps import record_gaps

    store_closes(database_url, "BTCUSDT", T0, [100.0] * 10)
    store_closes(database_url, "BTCUSDT", T0 + 15 * MINUTE, [100.0] * 5)
    with transaction(database_url) as conn:
        record_gaps(conn, "BTCUSDT", T0, T0 + timedelta(hours=1))

    now = T0 + 30 * MINUTE
    health = monitoring.data_health(database_url, "BTCUSDT", T0, now, now=now)

    row = health.symbols.set_index("symbol").loc["BTCUSDT"]
    assert row["newest"] == T0 + 19 * MINUTE
    assert row["age_minutes"] == pytest.approx(10.0)  # complete at :20, seen at :30
    assert bool(row["stale"])
    assert list(health.gaps["minutes"]) == [5]


def test_an_inverted_range_is_refused_with_what_to_change() -> None:
    with pytest.raises(RangeError, match="must be after the start"):
        monitoring.check_range(T0, T0 - timedelta(hours=1))


def test_a_version_served_on_a_few_minutes_only_is_replayed_over_the_range(
    database_url: str, registered_model
) -> None:
    # Given features for two hours and a version the log shows served for five minutes
    times = [T0 + i * MINUTE for i in range(120)]
    write_feature_rows(database_url, "BNBUSDT", times, seed=4)
    model = registered_model("BNBUSDT", "ret13m", seed=7)
    log_predictions(database_url, "BNBUSDT", "ret13m", times[:5], lambda i: 0.5,
                    version=model.version, horizon_minutes=13)  # fmt: skip

    with connect(database_url) as conn:
        points = monitoring.prediction_points(
            conn, "BNBUSDT", parse_target("ret13m"), T0, times[-1], model.version, uri=None
        )

    # Then the whole range is a replay, which says how many served predictions it stands in for
    assert points.source == monitoring.REPLAY
    assert len(points.frame) == 120
    assert points.logged == 5
    assert "the log holds only 5 of its served predictions" in points.label


def test_a_replay_over_its_own_training_rows_is_marked_in_sample_and_left_out(
    database_url: str, registered_model
) -> None:
    # Given four hours of candles and features, and a 13-minute model whose training data
    # ended at T0 + 60 min (so its labels saw the prices up to T0 + 73 min)
    times = [T0 + i * MINUTE for i in range(240)]
    store_closes(database_url, "TRXUSDT", T0, [100.0 + (i % 7) for i in range(260)])
    write_feature_rows(database_url, "TRXUSDT", times, seed=8)
    trained_to = T0 + 60 * MINUTE
    model = registered_model("TRXUSDT", "ret13m", seed=9, training_end=trained_to)
    spec = parse_target("ret13m")

    # When the page replays that version over the whole range
    with connect(database_url) as conn:
        points = monitoring.prediction_points(
            conn, "TRXUSDT", spec, T0, times[-1], model.version, uri=None
        )
    frame = points.frame
    window = monitoring.default_window_minutes(T0, times[-1], spec.horizon_minutes)
    metrics = monitoring.rolling_metrics(frame, spec, window)
    pools = monitoring.pool_curves(frame, spec, points.step_minutes)

    # Then every point before the end plus one horizon is in-sample, and said to be
    cutoff = trained_to + 13 * MINUTE
    assert points.source == monitoring.REPLAY
    assert points.training_ends == {model.version: trained_to}
    assert (frame["in_sample"] == (frame["time"] < cutoff)).all()
    assert points.in_sample == 73
    assert "In-sample" in points.in_sample_note
    assert "2026-03-02 01:00 UTC" in points.in_sample_note
    # ... and neither the errors nor the pool value count any of them
    assert metrics["time"].min() >= cutoff
    assert pools.curve["time"].min() >= cutoff
    outside = monitoring.pool_curves(frame[~frame["in_sample"]], spec, points.step_minutes)
    assert pools.model_value == pytest.approx(outside.model_value)


def test_a_version_without_a_recorded_training_end_says_so(
    database_url: str, registered_model
) -> None:
    times = [T0 + i * MINUTE for i in range(60)]
    write_feature_rows(database_url, "NEARUSDT", times, seed=1)
    model = registered_model("NEARUSDT", "ret13m", seed=2)

    with connect(database_url) as conn:
        points = monitoring.prediction_points(
            conn, "NEARUSDT", parse_target("ret13m"), T0, times[-1], model.version, uri=None
        )

    assert points.unknown_training_ends == [model.version]
    assert not points.frame["in_sample"].any()
    assert f"The training data end of version {model.version} is unknown" in (points.in_sample_note)


def test_an_outcome_across_a_long_gap_is_not_scored_on_the_page(database_url: str) -> None:
    # Given a price rising 1 a minute with a 10-minute hole (the longest allowed is 5), and a
    # 1-hour prediction every minute of the first hour
    closes = [100.0 + i for i in range(200)]
    store_closes(database_url, "ATOMUSDT", T0, closes[:90])
    store_closes(database_url, "ATOMUSDT", T0 + 100 * MINUTE, closes[100:])
    times = [T0 + i * MINUTE for i in range(60)]
    log_predictions(database_url, "ATOMUSDT", "ret1h", times, lambda i: 0.01,
                    horizon_minutes=60)  # fmt: skip
    spec = parse_target("ret1h")

    # When the page reads them with their outcomes
    with connect(database_url) as conn:
        points = monitoring.logged_points(conn, "ATOMUSDT", spec, T0, times[-1], max_gap_minutes=5)

    # Then the predictions whose hour reaches into the hole (made at minute 30 or later) have
    # no outcome, exactly as training and live scoring treat them: from minute 40 on the
    # horizon's end is stored but the hour crosses the hole; before, it ends inside it
    crossing = points["time"] >= T0 + 30 * MINUTE
    assert points.loc[crossing, ["actual", "forward_return"]].isna().all().all()
    assert (points["crosses_gap"] == (points["time"] >= T0 + 40 * MINUTE)).all()
    early = points[~crossing]
    assert not early["crosses_gap"].any()
    expected = (100.0 + (early["time"] - T0) / MINUTE + 60) / (
        100.0 + (early["time"] - T0) / MINUTE
    )
    assert np.allclose(early["actual"], expected - 1.0)
    # ... and the error over time counts only the earlier ones
    metrics = monitoring.rolling_metrics(points, spec, window_minutes=600)
    assert metrics["time"].max() < T0 + 30 * MINUTE
