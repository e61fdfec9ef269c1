"""Labels: exact forward returns and events, none for the last horizon, never the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricebot.labels import (
    compute_labels,
    crosses_long_gap,
    forward_returns,
    label_candles,
    past_returns,
)
from pricebot.targets import parse_target


def candles(closes: list[float] | np.ndarray, start: str = "2026-01-01") -> pd.DataFrame:
    index = pd.date_range(start, periods=len(closes), freq="1min", tz="UTC", name="open_time")
    return pd.DataFrame({"close": np.asarray(closes, dtype="float64")}, index=index)


def test_ret_label_is_the_close_h_minutes_later_over_the_close_now() -> None:
    frame = candles([100, 101, 102, 99, 110])

    labels = compute_labels(frame, parse_target("ret2m"))

    np.testing.assert_allclose(
        labels["label"].iloc[:3], [102 / 100 - 1, 99 / 101 - 1, 110 / 102 - 1]
    )


def test_the_last_h_minutes_have_no_label() -> None:
    frame = candles(np.linspace(100, 120, 30))

    labels = compute_labels(frame, parse_target("ret5m"))

    assert labels["label"].iloc[-5:].isna().all()
    assert labels["label"].iloc[:-5].notna().all()


def test_h_minutes_means_wall_time_not_rows_across_a_missing_candle() -> None:
    frame = candles([100.0, 101.0, 102.0, 103.0, 104.0]).drop(
        pd.Timestamp("2026-01-01 00:02", tz="UTC")
    )

    labels = compute_labels(frame, parse_target("ret2m"))

    # t=00:00 -> close at 00:02 is missing: no label, rather than borrowing 00:03.
    assert np.isnan(labels["label"].iloc[0])
    assert labels["label"].iloc[1] == pytest.approx(103 / 101 - 1)


def test_up_event_is_one_when_some_close_within_h_reaches_the_threshold() -> None:
    frame = candles([100.0, 100.5, 102.1, 100.0, 100.0, 100.0, 100.0])

    labels = compute_labels(frame, parse_target("up2pct3m"))

    # From 100 at t0 a close of 102.1 within 3 minutes is a 2.1% rise; from 100.5 it is 1.6%.
    assert labels["label"].iloc[0] == 1.0
    assert labels["label"].iloc[1] == 0.0
    assert labels["forward_return"].iloc[0] == pytest.approx(0.0)


def test_down_event_is_one_when_some_close_within_h_falls_by_the_threshold() -> None:
    frame = candles([100.0, 99.0, 97.9, 100.0, 100.0, 100.0])

    labels = compute_labels(frame, parse_target("down2pct2m"))

    assert labels["label"].iloc[:2].tolist() == [1.0, 0.0]


def test_dir_label_is_one_when_the_close_at_the_horizon_is_above_the_close_now() -> None:
    frame = candles([100.0, 103.0, 101.0, 100.0, 100.0])

    labels = compute_labels(frame, parse_target("dir2m"))

    # 100 -> 101 (rise), 103 -> 100 (fall), 101 -> 100 (fall); a tie would not be a rise
    assert labels["label"].iloc[:3].tolist() == [1.0, 0.0, 0.0]
    assert labels["label"].iloc[3:].isna().all()


def test_trend_label_compares_the_moving_average_a_horizon_later_with_todays() -> None:
    # Given closes of 100 for 4 minutes, then 110: the 4-minute average rises by 10% over 4
    closes = [100.0] * 4 + [110.0] * 4 + [100.0] * 4
    frame = candles(closes)

    up = compute_labels(frame, parse_target("trendup5pct4m"))["label"]
    down = compute_labels(frame, parse_target("trenddown5pct4m"))["label"]

    # at t=3 the average is 100, at t=7 it is 110: up; at t=7 vs t=11: 110 -> 100, down
    assert up.iloc[3] == 1.0
    assert down.iloc[3] == 0.0
    assert (up.iloc[7], down.iloc[7]) == (0.0, 1.0)
    assert up.iloc[:3].isna().all()  # no full window behind the first minutes
    assert up.iloc[-4:].isna().all()  # nor a horizon ahead of the last


def test_a_trend_average_with_too_many_missing_minutes_gives_no_label() -> None:
    frame = candles([100.0] * 30).drop(
        pd.date_range("2026-01-01 00:01", periods=3, freq="1min", tz="UTC")
    )

    labels = compute_labels(frame, parse_target("trendup1pct10m"))["label"]

    # the window ending at 00:10 misses 3 of its 10 minutes (more than 10%); 00:13's is whole
    assert np.isnan(labels.loc["2026-01-01 00:10"])
    assert labels.loc["2026-01-01 00:13"] == 0.0


@pytest.mark.parametrize(
    "target", ["ret30m", "up1pct30m", "down1pct30m", "dir30m", "trendup1pct30m", "trenddown1pct30m"]
)
def test_labels_at_or_before_t_ignore_every_candle_after_t_plus_h(target: str) -> None:
    # Given a random walk and a cut t
    rng = np.random.default_rng(5)
    frame = candles(100 * np.exp(np.cumsum(rng.normal(0, 0.003, 600))))
    spec = parse_target(target)
    t = frame.index[300]
    before = compute_labels(frame, spec)

    # When every candle after t + H is replaced by something else entirely
    perturbed = frame.copy()
    later = perturbed.index > t + pd.Timedelta(minutes=spec.horizon_minutes)
    perturbed.loc[later, "close"] = rng.uniform(1, 1000, later.sum())
    after = compute_labels(perturbed, spec)

    # Then no label at or before t changes
    pd.testing.assert_frame_equal(before.loc[:t], after.loc[:t])


def test_forward_returns_of_a_constant_price_are_zero_where_known() -> None:
    returns = forward_returns(candles([5.0] * 10)["close"], 3)

    assert returns.iloc[:7].eq(0.0).all()
    assert returns.iloc[7:].isna().all()


def test_a_label_window_crossing_a_long_gap_is_flagged_and_a_short_gap_is_not() -> None:
    index = pd.date_range("2026-01-01", periods=100, freq="1min", tz="UTC")
    long_hole = index[(index < index[40]) | (index >= index[50])]  # 10 minutes missing
    short_hole = index[(index < index[40]) | (index >= index[43])]  # 3 minutes missing

    crossing_long = crosses_long_gap(long_hole, horizon_minutes=20, max_gap_minutes=5)
    crossing_short = crosses_long_gap(short_hole, horizon_minutes=20, max_gap_minutes=5)

    times = long_hole.to_series().reset_index(drop=True)
    window_hits = (times < index[50]) & (times + pd.Timedelta(minutes=20) >= index[40])
    assert crossing_long.tolist() == window_hits.tolist()
    assert not crossing_short.any()


@pytest.mark.parametrize("target", ["ret20m", "up1pct20m"])
def test_label_candles_withdraws_outcomes_across_a_long_gap_and_keeps_the_rest(
    target: str,
) -> None:
    # Given a random walk with a 10-minute hole (longer than the 5 allowed)
    rng = np.random.default_rng(3)
    frame = candles(100 * np.exp(np.cumsum(rng.normal(0, 0.003, 200))))
    frame = frame.drop(frame.index[100:110])
    spec = parse_target(target)

    context = label_candles(frame, spec, max_gap_minutes=5)

    # Then a horizon across the hole has no outcome; every other is compute_labels' own
    crossing = crosses_long_gap(frame.index, 20, 5)
    plain = compute_labels(frame, spec)
    assert context["crosses_gap"].any()
    assert (context["crosses_gap"] == (crossing & plain["label"].notna())).all()
    assert context.loc[context["crosses_gap"], ["label", "forward_return"]].isna().all().all()
    kept = ~context["crosses_gap"]
    pd.testing.assert_series_equal(context.loc[kept, "label"], plain.loc[kept, "label"])
    # ... and the baselines' input is the past return, unaffected by what lies ahead
    pd.testing.assert_series_equal(
        context["past_return"], past_returns(frame["close"], 20), check_names=False
    )
