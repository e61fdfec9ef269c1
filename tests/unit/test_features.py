"""The feature definition: causal, hand-checkable, honest about gaps, strict about its input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricebot.errors import FeatureInputError, UnknownFeatureSetError
from pricebot.features import (
    DAY,
    HOUR,
    WARMUP_MINUTES,
    compute_features,
    feature_names,
    feature_set_definition,
    warmup_minutes,
)
from pricebot.transform import thin_history

START = pd.Timestamp("2026-01-01", tz="UTC")


def random_candles(minutes: int, seed: int = 0, start: pd.Timestamp = START) -> pd.DataFrame:
    """A seeded random walk of 1m candles (close and volume are what the features read)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, minutes)))
    volume = rng.lognormal(3.0, 1.0, minutes)
    index = pd.date_range(start, periods=minutes, freq="min", name="open_time")
    return pd.DataFrame({"close": close, "volume": volume}, index=index)


def hourly_step_candles(hour_closes: list[float] | np.ndarray, volume: float = 10.0):
    """Candles whose close is constant within each hour, so every hourly sample is known."""
    closes = np.repeat(np.asarray(hour_closes, dtype=float), HOUR)
    index = pd.date_range(START, periods=len(closes), freq="min", name="open_time")
    volumes = volume + np.arange(len(closes)) % 7  # varies, so the volume z-score is defined
    return pd.DataFrame({"close": closes, "volume": volumes}, index=index)


# A little over the warm-up: ~3 days of emitted rows, fast enough for many examples.
SERIES_MINUTES = WARMUP_MINUTES + 3 * DAY
SERIES = random_candles(SERIES_MINUTES, seed=1)
SERIES_FEATURES = compute_features(SERIES)


def test_v1_names_are_the_stored_column_order() -> None:
    names = feature_names("v1")

    assert names[:3] == ["close_minmax_24h", "ma_gap_h7_h25", "ma_gap_h7_h25_rel"]
    assert "rsi_h14" in names
    assert "bb_width_h20" in names
    assert len(names) == len(set(names)) == 17
    assert list(SERIES_FEATURES.columns) == ["close", *names]


def test_unknown_feature_set_names_the_known_ones() -> None:
    with pytest.raises(UnknownFeatureSetError, match=r"Unknown feature set 'v9'.*v1"):
        feature_names("v9")


def test_warmup_covers_the_daily_25_period_average() -> None:
    assert warmup_minutes("v1") == WARMUP_MINUTES == 24 * DAY


def test_one_row_per_candle_after_the_warmup() -> None:
    # Given a gap-free series; when computed; then every candle after the warm-up has a row
    expected = SERIES.index[WARMUP_MINUTES:]

    assert SERIES_FEATURES.index.equals(expected)
    assert np.isfinite(SERIES_FEATURES.to_numpy()).all()
    np.testing.assert_array_equal(SERIES_FEATURES["close"], SERIES["close"].iloc[WARMUP_MINUTES:])


def test_history_shorter_than_the_warmup_gives_no_rows() -> None:
    frame = compute_features(SERIES.iloc[:WARMUP_MINUTES])

    assert frame.empty
    assert list(frame.columns) == ["close", *feature_names()]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(WARMUP_MINUTES - 10, SERIES_MINUTES - 2), seed=st.integers(0, 2**32 - 1))
def test_perturbing_the_future_changes_no_feature_at_or_before_t(cut: int, seed: int) -> None:
    # Given the candles, and a copy whose every candle after t is replaced by random values
    rng = np.random.default_rng(seed)
    t = SERIES.index[cut]
    future = SERIES.index > t
    perturbed = SERIES.copy()
    perturbed.loc[future, "close"] = rng.uniform(1.0, 1000.0, future.sum())
    perturbed.loc[future, "volume"] = rng.uniform(0.0, 1e6, future.sum())

    # When the features are computed from each
    before = compute_features(perturbed)

    # Then every row at or before t is identical, bit for bit
    pd.testing.assert_frame_equal(
        before.loc[before.index <= t], SERIES_FEATURES.loc[SERIES_FEATURES.index <= t]
    )


def test_the_causality_check_can_see_a_change_at_t() -> None:
    # Guard for the test above: changing the candle at t itself must show in the row at t.
    t = SERIES.index[WARMUP_MINUTES + 100]
    perturbed = SERIES.copy()
    perturbed.loc[t, "close"] *= 1.01

    changed = compute_features(perturbed).loc[t] != SERIES_FEATURES.loc[t]

    assert changed.sum() >= len(feature_names()) - 2  # all but e.g. volume_z use close


def test_moving_average_gaps_of_a_linear_trend_match_hand_values() -> None:
    # Given close = 1000 + 0.01 * minute, MA_N of samples 60 m apart = close - 0.01 * 60 * (N-1)/2
    # so MA7 - MA25 = 0.01 * 60 * (24 - 6) / 2 = 5.4, MA25 - MA99 = 0.01 * 60 * (98 - 24) / 2
    # = 22.2, and daily MA7 - MA25 = 0.01 * 1440 * 9 = 129.6.
    minutes = WARMUP_MINUTES + 10
    index = pd.date_range(START, periods=minutes, freq="min", name="open_time")
    close = 1000.0 + 0.01 * np.arange(minutes)
    candles = pd.DataFrame({"close": close, "volume": 1.0 + np.arange(minutes) % 5}, index=index)

    frame = compute_features(candles)

    assert len(frame) == 10
    np.testing.assert_allclose(frame["ma_gap_h7_h25"], 5.4, rtol=1e-9)
    np.testing.assert_allclose(frame["ma_gap_h25_h99"], 22.2, rtol=1e-9)
    np.testing.assert_allclose(frame["ma_gap_d7_d25"], 129.6, rtol=1e-9)
    np.testing.assert_allclose(frame["ma_gap_d7_d25_rel"], 129.6 / frame["close"], rtol=1e-12)
    np.testing.assert_allclose(frame["rsi_h14"], 100.0)  # it only ever went up
    np.testing.assert_allclose(frame["logret_1h"], np.log(frame["close"] / (frame["close"] - 0.6)))
    np.testing.assert_allclose(frame["close_minmax_24h"], 1.0)  # at the top of its window


def test_macd_of_a_linear_trend_is_the_difference_of_the_ema_lags() -> None:
    # Given close rising 0.6 per hour; an EMA with factor a trails a linear series by
    # (1 - a) / a samples: 5.5 h for EMA12 (a = 2/13), 12.5 h for EMA26 (a = 2/27). So the MACD
    # line is (12.5 - 5.5) * 0.6 = 4.2, its EMA9 signal the same, and the histogram 0.
    minutes = WARMUP_MINUTES + 10
    index = pd.date_range(START, periods=minutes, freq="min", name="open_time")
    close = 1000.0 + 0.01 * np.arange(minutes)
    candles = pd.DataFrame({"close": close, "volume": 1.0 + np.arange(minutes) % 5}, index=index)

    frame = compute_features(candles)

    np.testing.assert_allclose(frame["macd_h_line_rel"] * frame["close"], 4.2, rtol=1e-9)
    np.testing.assert_allclose(frame["macd_h_signal_rel"] * frame["close"], 4.2, rtol=1e-9)
    np.testing.assert_allclose(frame["macd_h_hist_rel"], 0.0, atol=1e-12)


def test_rsi_of_a_zigzag_matches_wilders_steady_state() -> None:
    # Given hourly closes 100, 102, 101, 103, 102, ... (+2, -1 alternately, for 30 days).
    # Wilder's averages with a = 1/14 settle to: average gain just after a rise A = 2a / (1 -
    # (1-a)^2), average loss just after a fall B = a / (1 - (1-a)^2); each decays by (1-a) the
    # other hour. RSI after a rise = A / (A + (1-a)B) = 2 / (2 + 13/14) = 2800/41 ~ 68.29;
    # after a fall = (1-a)A / ((1-a)A + B) = (26/14) / (40/14) = 65.
    hours = 30 * 24
    k = np.arange(hours)
    hour_closes = 100.0 + k // 2 + 2.0 * (k % 2)
    candles = hourly_step_candles(hour_closes)

    frame = compute_features(candles)

    assert len(frame) > 0
    hour_index = (frame.index - START) // pd.Timedelta(hours=1)
    after_rise = frame["rsi_h14"][hour_index % 2 == 1]
    after_fall = frame["rsi_h14"][hour_index % 2 == 0]
    np.testing.assert_allclose(after_rise, 2800 / 41, rtol=1e-9)
    np.testing.assert_allclose(after_fall, 65.0, rtol=1e-9)


def test_bollinger_width_of_a_two_level_series() -> None:
    # Given hourly closes alternating 99, 101: over 20 hourly samples mean 100, population std 1,
    # so the width (upper - lower) / middle = 4 * 1 / 100.
    hour_closes = np.where(np.arange(30 * 24) % 2 == 0, 99.0, 101.0)

    frame = compute_features(hourly_step_candles(hour_closes))

    assert len(frame) > 0
    np.testing.assert_allclose(frame["bb_width_h20"], 0.04, rtol=1e-12)


def test_no_row_is_invented_for_a_missing_minute() -> None:
    missing = SERIES.index[WARMUP_MINUTES + 500]

    frame = compute_features(SERIES.drop(index=missing))

    assert missing not in frame.index


def test_a_missing_minute_drops_only_rows_whose_sampled_windows_hit_it() -> None:
    # Given one missing minute m
    m = WARMUP_MINUTES + 500
    frame = compute_features(SERIES.drop(index=SERIES.index[m]))
    minute = pd.Timedelta(minutes=1)
    t_m = SERIES.index[m]

    # Then the next minute still has a row (the dense 24 h windows tolerate one missing minute)
    assert t_m + minute in frame.index
    # but an hour later the hourly samples include m, so that row is left out, not filled
    assert t_m + HOUR * minute not in frame.index
    assert t_m + DAY * minute not in frame.index
    # and a row whose windows all avoid m (other hourly phase, 24 h window past it) is unchanged
    untouched = t_m + (DAY + 1) * minute
    pd.testing.assert_series_equal(frame.loc[untouched], SERIES_FEATURES.loc[untouched])


def test_after_a_three_hour_gap_rows_resume_when_the_99_hour_window_is_whole() -> None:
    # Given a 3-hour gap: every phase of the hourly series has a missing sample for 98 hours
    # after it, so the first row is 98 h + 1 min after the gap's last missing minute.
    candles = random_candles(WARMUP_MINUTES + 8 * DAY, seed=3)
    gap_start = WARMUP_MINUTES + DAY
    gap_last = gap_start + 3 * HOUR - 1
    candles = candles.drop(index=candles.index[gap_start : gap_last + 1])

    frame = compute_features(candles)

    gap_last_time = START + pd.Timedelta(minutes=gap_last)
    after = frame.index[frame.index > gap_last_time]
    assert after[0] == gap_last_time + pd.Timedelta(minutes=98 * HOUR + 1)
    gap_first_time = START + pd.Timedelta(minutes=gap_start)
    assert not ((frame.index >= gap_first_time) & (frame.index <= gap_last_time)).any()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(WARMUP_MINUTES, WARMUP_MINUTES + 6 * DAY),
    gap=st.tuples(
        st.integers(WARMUP_MINUTES - 2 * DAY, WARMUP_MINUTES + 6 * DAY), st.integers(1, 2 * DAY)
    ),
)
def test_the_warmup_is_all_the_history_a_row_needs(cut: int, gap: tuple[int, int]) -> None:
    # Given candles with a gap somewhere, computed whole and from WARMUP_MINUTES before a cut
    candles = random_candles(WARMUP_MINUTES + 7 * DAY, seed=5)
    candles = candles.drop(index=candles.index[gap[0] : gap[0] + gap[1]])
    whole = compute_features(candles)
    cut_time = START + pd.Timedelta(minutes=cut)
    tail = compute_features(candles[candles.index >= cut_time - pd.Timedelta(WARMUP_MINUTES, "m")])

    # Then both give the same rows after the cut, to far better than 1e-9
    expected = whole[whole.index >= cut_time]
    got = tail[tail.index >= cut_time]
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    last=st.integers(WARMUP_MINUTES + 2 * DAY, SERIES_MINUTES - 60),
    new=st.integers(1, HOUR - 1),
    hole=st.integers(0, SERIES_MINUTES - 1),
)
def test_new_minutes_need_only_the_thin_history_the_definition_states(
    last: int, new: int, hole: int
) -> None:
    # Given candles up to last + new minutes (one minute missing somewhere), and only the thin
    # history the v1 definition says those new rows read (dense day + hourly samples)
    definition = feature_set_definition("v1")
    candles = SERIES.iloc[: last + new + 1].drop(index=SERIES.index[hole], errors="ignore")
    last_time = START + pd.Timedelta(minutes=last)
    newest = START + pd.Timedelta(minutes=last + new)
    since, moments = thin_history(definition, last_time.to_pydatetime(), newest.to_pydatetime())
    thin = candles[(candles.index >= since) | candles.index.isin(pd.DatetimeIndex(moments))]

    # When both are computed
    whole = compute_features(candles)
    partial = compute_features(thin)

    # Then the new rows agree to far better than 1e-9
    expected = whole[whole.index > last_time]
    got = partial[partial.index > last_time]
    assert len(thin) < len(candles)
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)


def test_empty_candles_give_an_empty_frame_with_the_columns() -> None:
    empty = SERIES.iloc[:0]

    frame = compute_features(empty)

    assert frame.empty
    assert list(frame.columns) == ["close", *feature_names()]


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(FeatureInputError, match="timezone-aware"):
        compute_features(SERIES.tz_localize(None))


def test_unsorted_candles_are_refused() -> None:
    with pytest.raises(FeatureInputError, match="strictly increasing"):
        compute_features(SERIES.iloc[::-1])


def test_candles_off_the_minute_are_refused() -> None:
    shifted = SERIES.iloc[:10].copy()
    shifted.index = shifted.index + pd.Timedelta(seconds=30)

    with pytest.raises(FeatureInputError, match="not on a minute"):
        compute_features(shifted)


def test_missing_columns_are_named() -> None:
    with pytest.raises(FeatureInputError, match=r"\['volume'\]"):
        compute_features(SERIES[["close"]])


def test_non_positive_closes_are_refused() -> None:
    broken = SERIES.iloc[:100].copy()
    broken.iloc[5, 0] = 0.0

    with pytest.raises(FeatureInputError, match="positive"):
        compute_features(broken)
