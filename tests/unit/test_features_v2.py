"""Feature sets v2 and v2x: causal, start-independent, hand-checked, honest about gaps.

The hand checks build candles whose hourly bars are known exactly (every minute of clock hour h
has close C_h, high C_h + up_h, low C_h - down_h and volume v_h, so the bar ending at the last
minute of hour h is (C_h, C_h + up_h, C_h - down_h, 60 v_h)) and compare with values worked
out on paper from those bars, written in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricebot.errors import FeatureInputError, UnknownFeatureSetError
from pricebot.features import (
    DAY,
    HOUR,
    REFERENCE_MINUTES,
    V2_RETURN_LAGS_HOURS,
    V2_WARMUP_MINUTES,
    V2X_REFERENCES,
    compute_features,
    cross_asset_feature_set,
    feature_names,
    feature_set_definition,
    feature_sets,
    input_columns,
    reference_symbols,
    warmup_minutes,
)
from pricebot.transform import thin_history

START = pd.Timestamp("2026-01-01", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)
WARMUP = V2_WARMUP_MINUTES


def random_candles(minutes: int, seed: int, start: pd.Timestamp = START) -> pd.DataFrame:
    """A seeded random walk of 1m candles with wicks (high above, low below the close)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, minutes)))
    wick = np.abs(rng.normal(0.0, 5e-4, (2, minutes)))
    index = pd.date_range(start, periods=minutes, freq="min", name="open_time")
    return pd.DataFrame(
        {
            "high": close * (1 + wick[0]),
            "low": close / (1 + wick[1]),
            "close": close,
            "volume": rng.lognormal(3.0, 1.0, minutes),
        },
        index=index,
    )


def hourly_bar_candles(closes, up=0.5, down=0.5, volume=1.0) -> pd.DataFrame:
    """Minute candles constant within each clock hour h: close C_h, high C_h + up_h, low
    C_h - down_h, volume v_h (scalars or one value per hour)."""
    closes = np.asarray(closes, dtype=float)
    per_hour = [
        np.broadcast_to(np.asarray(x, dtype=float), closes.shape) for x in (up, down, volume)
    ]
    close = np.repeat(closes, HOUR)
    index = pd.date_range(START, periods=len(close), freq="min", name="open_time")
    return pd.DataFrame(
        {
            "high": close + np.repeat(per_hour[0], HOUR),
            "low": close - np.repeat(per_hour[1], HOUR),
            "close": close,
            "volume": np.repeat(per_hour[2], HOUR),
        },
        index=index,
    )


def at_hour_ends(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows at the last minute of a clock hour, where the hourly bar is that hour."""
    return frame[frame.index.minute == 59]


def hour_of(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray((frame.index - START) // pd.Timedelta(hours=1))


HOURS = WARMUP // HOUR + 3 * 24  # three days of rows after the warm-up
SERIES_MINUTES = WARMUP + 3 * DAY
SERIES = random_candles(SERIES_MINUTES, seed=1)
SERIES_FEATURES = compute_features(SERIES, "v2")
# A second coin as the reference; it runs a day past SERIES (the coin's future).
REFERENCE = random_candles(SERIES_MINUTES + DAY, seed=2)[["close"]] * 300.0
OTHER = random_candles(SERIES_MINUTES, seed=3)[["close"]] * 20.0
REFERENCES = {"BTCUSDT": REFERENCE, "ETHUSDT": OTHER}
SERIES_X = compute_features(SERIES, "v2x", REFERENCES)


# --- the definitions ---------------------------------------------------------------------------


def test_v2_columns_are_relative_and_include_the_seed_indicators() -> None:
    names = feature_names("v2")

    assert len(names) == len(set(names)) == 41
    for seed in ("obv_h24", "cmf_h20", "adx_h14", "dx_h14", "aroon_up_h25", "stoch_k_h14",
                 "mfi_h14", "trix_h15", "ppo_h_line", "ma_gap_d25_d99_rel"):  # fmt: skip
        assert seed in names
    assert [n for n in names if n.startswith("logret_1h_lag")] == [
        f"logret_1h_lag{k}h" for k in V2_RETURN_LAGS_HOURS
    ]
    # nothing in price units: the v1 gaps survive only as _rel, MACD only as PPO
    assert not {"ma_gap_h7_h25", "ma_gap_h25_h99", "ma_gap_d7_d25", "macd_h_line_rel"} & set(names)
    assert list(SERIES_FEATURES.columns) == ["close", *names]


def test_v1_is_unchanged_by_v2() -> None:
    assert len(feature_names("v1")) == 17
    assert warmup_minutes("v1") == 24 * DAY
    assert input_columns("v1") == ["close", "volume"]


def test_v2_warmup_is_the_98_days_of_the_daily_ma99() -> None:
    assert warmup_minutes("v2") == warmup_minutes("v2x") == 98 * DAY == 141_120
    assert input_columns("v2") == ["high", "low", "close", "volume"]


def test_v2x_adds_five_columns_per_reference_after_v2s() -> None:
    names = feature_names("v2x")

    assert names[:41] == feature_names("v2")
    assert names[41:] == [
        f"ref_{r}_{c}"
        for r in ("btcusdt", "ethusdt")
        for c in ("logret_1h", "logret_4h", "logret_24h", "volatility_24h", "corr_24h")
    ]
    assert reference_symbols("v2x") == ["BTCUSDT", "ETHUSDT"] == list(V2X_REFERENCES)
    assert list(SERIES_X.columns) == ["close", *names]


def test_other_references_are_named_in_the_feature_set() -> None:
    name = cross_asset_feature_set(["SOLUSDT", "BTCUSDT"])

    assert name == "v2x:SOLUSDT,BTCUSDT"
    assert reference_symbols(name) == ["SOLUSDT", "BTCUSDT"]
    assert feature_names(name)[41] == "ref_solusdt_logret_1h"
    assert cross_asset_feature_set(["BTCUSDT", "ETHUSDT"]) == "v2x"
    assert "v2x" in feature_sets()


def test_the_default_references_spelled_out_are_refused_for_the_bare_name() -> None:
    # one definition, one stored name: otherwise rows would be split over two keys
    with pytest.raises(UnknownFeatureSetError, match=r"is the default; call it 'v2x'"):
        feature_names("v2x:BTCUSDT,ETHUSDT")


@pytest.mark.parametrize("name", ["v2x:", "v2x:btcusdt", "v2x:BTCUSDT,BTCUSDT", "v2x:BTC-USDT"])
def test_malformed_reference_lists_are_refused(name: str) -> None:
    with pytest.raises(UnknownFeatureSetError, match="distinct upper-case symbols"):
        feature_names(name)


def test_settings_name_the_references_in_the_feature_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from pricebot import settings as settings_module

    monkeypatch.setenv("PRICEBOT_FEATURE_SET", "v2x")
    monkeypatch.setenv("PRICEBOT_REFERENCE_SYMBOLS", "solusdt, btcusdt")

    configured = settings_module.Settings()

    assert configured.reference_symbols == ["SOLUSDT", "BTCUSDT"]
    assert configured.feature_set == "v2x:SOLUSDT,BTCUSDT"
    assert feature_names(configured.feature_set)[41] == "ref_solusdt_logret_1h"


def test_settings_keep_the_bare_name_for_the_default_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pricebot import settings as settings_module

    monkeypatch.setenv("PRICEBOT_FEATURE_SET", "v2x")
    monkeypatch.delenv("PRICEBOT_REFERENCE_SYMBOLS", raising=False)

    assert settings_module.Settings().feature_set == "v2x"
    assert settings_module.V2X_REFERENCES == V2X_REFERENCES


# --- causality and independence from where the history starts ----------------------------------


def perturb_after(candles: pd.DataFrame, t: pd.Timestamp, rng: np.random.Generator):
    perturbed = candles.copy()
    future = perturbed.index > t
    for column in perturbed.columns:
        perturbed.loc[future, column] = rng.uniform(1.0, 1e6, future.sum())
    return perturbed


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(WARMUP - 10, SERIES_MINUTES - 2), seed=st.integers(0, 2**32 - 1))
def test_v2_perturbing_the_future_changes_no_feature_at_or_before_t(cut: int, seed: int) -> None:
    # Given the candles, and a copy whose every value after t (high, low, close, volume) is random
    t = SERIES.index[cut]
    perturbed = perturb_after(SERIES, t, np.random.default_rng(seed))

    # When the features are computed from each
    got = compute_features(perturbed, "v2")

    # Then every row at or before t is identical, bit for bit
    pd.testing.assert_frame_equal(got[got.index <= t], SERIES_FEATURES[SERIES_FEATURES.index <= t])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(WARMUP - 10, SERIES_MINUTES - 2), seed=st.integers(0, 2**32 - 1))
def test_v2x_perturbing_the_coins_and_the_references_future_changes_nothing_before(
    cut: int, seed: int
) -> None:
    # Given the coin and its references, every value after t replaced by random ones (the
    # reference BTCUSDT also runs a day past the coin's last candle)
    rng = np.random.default_rng(seed)
    t = SERIES.index[cut]
    perturbed = {name: perturb_after(frame, t, rng) for name, frame in REFERENCES.items()}

    # When the features are computed
    got = compute_features(perturb_after(SERIES, t, rng), "v2x", perturbed)

    # Then every row at or before t is identical, bit for bit
    pd.testing.assert_frame_equal(got[got.index <= t], SERIES_X[SERIES_X.index <= t])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.integers(0, SERIES_MINUTES + 10))
def test_asking_for_rows_since_t_gives_the_same_rows(first: int) -> None:
    # Given a moment anywhere (before the warm-up ends, inside the rows, past the last candle)
    since = START + first * MINUTE

    # When only the rows since then are asked for (v2 then computes only what they read)
    got = compute_features(SERIES, "v2x", REFERENCES, since=since)

    # Then they are the rows of the whole computation from then on, to far better than 1e-9
    expected = SERIES_X[SERIES_X.index >= since]
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)


def test_the_v2_causality_check_can_see_a_change_at_t() -> None:
    # Guard for the tests above: a higher high and more volume at t itself show in the row at t.
    t = SERIES.index[WARMUP + 100]
    perturbed = SERIES.copy()
    perturbed.loc[t, "high"] *= 1.05
    perturbed.loc[t, "volume"] *= 3.0

    changed = compute_features(perturbed, "v2").loc[t] != SERIES_FEATURES.loc[t]

    for name in ("plus_di_h14", "adx_h14", "aroon_up_h25", "stoch_k_h14", "mfi_h14", "obv_h24",
                 "cmf_h20", "volume_z_24h"):  # fmt: skip
        assert changed[name], name


def test_a_change_of_the_reference_at_t_shows_in_the_row_at_t() -> None:
    t = SERIES.index[WARMUP + 100]
    references = {**REFERENCES, "BTCUSDT": REFERENCE.copy()}
    references["BTCUSDT"].loc[t, "close"] *= 1.01

    changed = compute_features(SERIES, "v2x", references).loc[t] != SERIES_X.loc[t]

    assert list(changed[changed].index) == [
        f"ref_btcusdt_{c}"
        for c in ("logret_1h", "logret_4h", "logret_24h", "volatility_24h", "corr_24h")
    ]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(WARMUP, WARMUP + 6 * DAY),
    gap=st.tuples(st.integers(WARMUP - 2 * DAY, WARMUP + 6 * DAY), st.integers(1, 2 * DAY)),
)
def test_v2x_warmup_and_reference_span_are_all_the_history_a_row_needs(
    cut: int, gap: tuple[int, int]
) -> None:
    # Given candles with a gap somewhere, computed whole, and from the warm-up before a cut with
    # the references only from REFERENCE_MINUTES before it (where the history starts must not
    # matter: this is what OBV's and A/D's windowed forms buy)
    candles = random_candles(WARMUP + 7 * DAY, seed=5)
    candles = candles.drop(index=candles.index[gap[0] : gap[0] + gap[1]])
    references = {"BTCUSDT": REFERENCE, "ETHUSDT": candles[["close"]]}  # the coin is ETHUSDT
    whole = compute_features(candles, "v2x", references)
    cut_time = START + cut * MINUTE
    tail = compute_features(
        candles[candles.index >= cut_time - WARMUP * MINUTE],
        "v2x",
        {r: f[f.index >= cut_time - REFERENCE_MINUTES * MINUTE] for r, f in references.items()},
    )

    # Then both give the same rows after the cut, to far better than 1e-9
    expected = whole[whole.index >= cut_time]
    got = tail[tail.index >= cut_time]
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    last=st.integers(WARMUP + DAY, SERIES_MINUTES - 60),
    new=st.integers(1, HOUR - 1),
    hole=st.integers(0, SERIES_MINUTES - 1),
)
def test_v2x_new_minutes_need_only_the_thin_history_the_definition_states(
    last: int, new: int, hole: int
) -> None:
    # Given candles up to last + new minutes (one minute missing somewhere), and only the thin
    # history the v2x definition says those new rows read: its dense bars and hourly samples,
    # and the references' last REFERENCE_MINUTES
    definition = feature_set_definition("v2x")
    candles = SERIES.iloc[: last + new + 1].drop(index=SERIES.index[hole], errors="ignore")
    last_time = START + last * MINUTE
    newest = START + (last + new) * MINUTE
    since, moments = thin_history(definition, last_time.to_pydatetime(), newest.to_pydatetime())
    thin = candles[(candles.index >= since) | candles.index.isin(pd.DatetimeIndex(moments))]
    reference_start = last_time - REFERENCE_MINUTES * MINUTE
    recent = {r: f[f.index >= reference_start] for r, f in REFERENCES.items()}

    # When both are computed, the thin one for the new rows only (as the transform asks)
    whole = compute_features(candles, "v2x", REFERENCES)
    partial = compute_features(thin, "v2x", recent, since=last_time + MINUTE)

    # Then the new rows agree to far better than 1e-9
    expected = whole[whole.index > last_time]
    got = partial[partial.index > last_time]
    assert len(thin) < len(candles)
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)


# --- rows, warm-up and gaps ----------------------------------------------------------------------


def test_v2_one_row_per_candle_after_the_98_day_warmup() -> None:
    assert SERIES_FEATURES.index.equals(SERIES.index[WARMUP:])
    assert np.isfinite(SERIES_FEATURES.to_numpy()).all()


def test_v2_history_shorter_than_the_warmup_gives_no_rows() -> None:
    frame = compute_features(SERIES.iloc[:WARMUP], "v2")

    assert frame.empty
    assert list(frame.columns) == ["close", *feature_names("v2")]


def test_an_hourly_bar_survives_six_missing_minutes() -> None:
    # Given the 6 minutes m-9 .. m-4 missing: the bar ending at m still has 54 of its 60 minutes
    m = WARMUP + 500
    frame = compute_features(SERIES.drop(index=SERIES.index[m - 9 : m - 3]), "v2")

    assert SERIES.index[m] in frame.index


def test_seven_missing_minutes_in_an_hour_stop_the_rows_for_26_hours() -> None:
    # Given m-10 .. m-4 missing: every bar ending in [m-3, m+49] has 53 minutes, under 90%, so it
    # does not exist, and every row up to 26 hours on reads one of them (Aroon's 26 bars). The
    # first row back is at m + 1557: its 26 bars end at m + 57 or later and none of its hourly
    # or daily samples is a missing minute (at m + 1550 .. m + 1556 the hourly MA99 still is).
    m = WARMUP + 500
    frame = compute_features(SERIES.drop(index=SERIES.index[m - 10 : m - 3]), "v2")

    after = frame.index[frame.index >= SERIES.index[m - 10]]
    assert after[0] == SERIES.index[m + 1557]


def test_a_missing_reference_minute_drops_only_rows_that_read_it() -> None:
    # Given the reference without minute m: its 1-hour return at m and m + 60 is unknown
    m = WARMUP + 500
    references = {**REFERENCES, "BTCUSDT": REFERENCE.drop(index=REFERENCE.index[m])}

    frame = compute_features(SERIES, "v2x", references)

    assert SERIES.index[m] not in frame.index
    assert SERIES.index[m + HOUR] not in frame.index
    # the 24 h windows tolerate it, and the rows that never read it are unchanged
    assert SERIES.index[m + 1] in frame.index
    untouched = SERIES.index[m + DAY + 1]
    pd.testing.assert_series_equal(frame.loc[untouched], SERIES_X.loc[untouched])


def test_missing_reference_candles_are_named() -> None:
    with pytest.raises(FeatureInputError, match=r"reads the candles of ETHUSDT"):
        compute_features(SERIES, "v2x", {"BTCUSDT": REFERENCE})


def test_v2_needs_highs_and_lows() -> None:
    with pytest.raises(FeatureInputError, match=r"\['high', 'low'\]"):
        compute_features(SERIES[["close", "volume"]], "v2")


def test_non_positive_highs_are_refused() -> None:
    broken = SERIES.iloc[:100].copy()
    broken.iloc[5, 0] = -1.0

    with pytest.raises(FeatureInputError, match="high prices must be positive"):
        compute_features(broken, "v2")


def test_a_naive_since_is_refused() -> None:
    with pytest.raises(FeatureInputError, match="since must be a timezone-aware"):
        compute_features(SERIES, "v2", since=pd.Timestamp("2026-04-01"))


def test_a_broken_reference_is_named_in_the_error() -> None:
    naive = REFERENCE.tz_localize(None)

    with pytest.raises(FeatureInputError, match="reference BTCUSDT candles need a timezone"):
        compute_features(SERIES, "v2x", {**REFERENCES, "BTCUSDT": naive})


# --- hand-checked values: a linear trend ---------------------------------------------------------

# close = 1000 + 0.01 * minute (0.6 per hour), high = close + 0.2, low = close - 0.2. The hourly
# bar ending at t: H = C_t + 0.2, L = C_{t-59} - 0.2 = C_t - 0.79, previous close C_t - 0.6.
TREND_MINUTES = WARMUP + 10
_trend_close = 1000.0 + 0.01 * np.arange(TREND_MINUTES)
TREND = compute_features(
    pd.DataFrame(
        {
            "high": _trend_close + 0.2,
            "low": _trend_close - 0.2,
            "close": _trend_close,
            "volume": 1.0 + np.arange(TREND_MINUTES) % 5,
        },
        index=pd.date_range(START, periods=TREND_MINUTES, freq="min", name="open_time"),
    ),
    "v2",
)
TREND_CLOSE = TREND["close"].to_numpy()


def test_trend_has_rows_only_after_the_warmup() -> None:
    assert len(TREND) == 10


def test_columns_carried_from_v1_of_a_trend() -> None:
    # At the top of its 24 h range, only ever up (RSI 100); the returns over 1, 4, 24 h are
    # log(C / (C - 0.6 h)); 20 hourly samples 0.6 apart have population std 0.6 sqrt(399 / 12)
    # around C - 5.7; volume cycles 1..5, so over 1440 minutes (288 cycles) log1p(volume) has the
    # mean and std of log(2), ..., log(6).
    minute = np.asarray((TREND.index - START) // MINUTE)
    levels = np.log(np.arange(2.0, 7.0))
    volume_z = (np.log(2.0 + minute % 5) - levels.mean()) / levels.std()
    np.testing.assert_allclose(TREND["close_minmax_24h"], 1.0)
    np.testing.assert_allclose(TREND["rsi_h14"], 100.0)
    for label, hours in (("1h", 1), ("4h", 4), ("24h", 24)):
        expected = np.log(TREND_CLOSE / (TREND_CLOSE - 0.6 * hours))
        np.testing.assert_allclose(TREND[f"logret_{label}"], expected, rtol=1e-9)
    bb = 4 * 0.6 * math.sqrt(399 / 12) / (TREND_CLOSE - 5.7)
    np.testing.assert_allclose(TREND["bb_width_h20"], bb, rtol=1e-9)
    np.testing.assert_allclose(TREND["volume_z_24h"], volume_z, rtol=1e-9)


def test_moving_average_gaps_relative_to_price_of_a_trend() -> None:
    # MA_N of samples s minutes apart = close - 0.01 * s * (N - 1) / 2, so MA25 - MA99 of daily
    # closes = 0.01 * 1440 * (98 - 24) / 2 = 532.8; the v1 gaps 5.4, 22.2, 129.6 over close.
    np.testing.assert_allclose(TREND["ma_gap_d25_d99_rel"], 532.8 / TREND_CLOSE, rtol=1e-9)
    np.testing.assert_allclose(TREND["ma_gap_h7_h25_rel"], 5.4 / TREND_CLOSE, rtol=1e-9)
    np.testing.assert_allclose(TREND["ma_gap_h25_h99_rel"], 22.2 / TREND_CLOSE, rtol=1e-9)
    np.testing.assert_allclose(TREND["ma_gap_d7_d25_rel"], 129.6 / TREND_CLOSE, rtol=1e-9)


@pytest.mark.parametrize("k", V2_RETURN_LAGS_HOURS)
def test_hourly_return_lags_of_a_trend(k: int) -> None:
    # The 1-hour return that ended k hours ago: log((C - 0.6 k) / (C - 0.6 (k + 1)))
    expected = np.log((TREND_CLOSE - 0.6 * k) / (TREND_CLOSE - 0.6 * (k + 1)))

    np.testing.assert_allclose(TREND[f"logret_1h_lag{k}h"], expected, rtol=1e-9)


def test_directional_movement_of_a_trend() -> None:
    # +DM = H_t - H_{t-1h} = 0.6 (and beats -DM = L_{t-1h} - L_t = -0.6, so -DM = 0);
    # TR = max(H, C_prev) - min(L, C_prev) = (C + 0.2) - (C - 0.79) = 0.99. Wilder's averages of
    # constants are those constants: +DI = 100 * 0.6 / 0.99, -DI = 0, DX = ADX = 100.
    np.testing.assert_allclose(TREND["plus_di_h14"], 6000 / 99, rtol=1e-9)
    np.testing.assert_allclose(TREND["minus_di_h14"], 0.0, atol=1e-12)
    np.testing.assert_allclose(TREND["dx_h14"], 100.0, rtol=1e-12)
    np.testing.assert_allclose(TREND["adx_h14"], 100.0, rtol=1e-12)


def test_aroon_of_a_trend() -> None:
    # The newest bar has the highest high (0 bars ago), the oldest of 26 the lowest low (25 ago)
    np.testing.assert_allclose(TREND["aroon_up_h25"], 100.0)
    np.testing.assert_allclose(TREND["aroon_down_h25"], 0.0)


def test_stochastic_of_a_trend() -> None:
    # Highest high of 14 bars = C + 0.2; lowest low = the low of the bar 13 h back
    # = C - 13 * 0.6 - 0.79 = C - 8.59: %K = 100 * 8.59 / 8.79, constant, so %D is the same.
    np.testing.assert_allclose(TREND["stoch_k_h14"], 100 * 8.59 / 8.79, rtol=1e-9)
    np.testing.assert_allclose(TREND["stoch_d_h14"], 100 * 8.59 / 8.79, rtol=1e-9)


def test_volume_indicators_of_a_trend() -> None:
    # Every bar closes up (OBV: all volume counts +1) with typical price rising (MFI 100); the
    # money flow multiplier ((C - L) - (H - C)) / (H - L) = (0.79 - 0.2) / 0.99 for every bar.
    np.testing.assert_allclose(TREND["obv_h24"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(TREND["mfi_h14"], 100.0, rtol=1e-12)
    np.testing.assert_allclose(TREND["cmf_h20"], 0.59 / 0.99, rtol=1e-9)


def test_trix_and_ppo_line_of_a_trend() -> None:
    # An EMA with factor a trails a line rising b per sample by b (1 - a) / a samples: 7 for
    # EMA15 (a = 2/16), three times for the triple EMA: E3 = C - 0.6 * 21, so TRIX = 100 * 0.6 /
    # (C - 0.6 - 12.6). PPO = 100 * (EMA12 - EMA26) / EMA26 = 100 * 0.6 * (12.5 - 5.5) / (C - 7.5).
    np.testing.assert_allclose(TREND["trix_h15"], 60.0 / (TREND_CLOSE - 13.2), rtol=1e-9)
    np.testing.assert_allclose(TREND["ppo_h_line"], 420.0 / (TREND_CLOSE - 7.5), rtol=1e-9)


# --- hand-checked values: a geometric trend ----------------------------------------------------


def test_trix_and_ppo_of_a_geometric_trend() -> None:
    # close = 100 * g ** (minute / 60), g = 1.001 an hour. An EMA with factor a of x_n = x_0 g^n
    # settles at k(a) x_n, k(a) = a / (1 - (1 - a) / g); so the triple EMA grows by g an hour
    # (TRIX = 100 (g - 1) = 0.1), PPO = 100 (k(2/13) / k(2/27) - 1) is constant, its EMA9
    # signal equals it and the histogram is 0.
    g = 1.001
    minutes = WARMUP + 10
    close = 100.0 * g ** (np.arange(minutes) / 60.0)
    candles = pd.DataFrame(
        {"high": close * 1.0001, "low": close * 0.9999, "close": close,
         "volume": 1.0 + np.arange(minutes) % 5},
        index=pd.date_range(START, periods=minutes, freq="min", name="open_time"),
    )  # fmt: skip

    frame = compute_features(candles, "v2")

    def k(a: float) -> float:
        return a / (1 - (1 - a) / g)

    ppo = 100 * (k(2 / 13) / k(2 / 27) - 1)
    assert len(frame) == 10
    np.testing.assert_allclose(frame["trix_h15"], 0.1, rtol=1e-9)
    np.testing.assert_allclose(frame["ppo_h_line"], ppo, rtol=1e-9)
    np.testing.assert_allclose(frame["ppo_h_signal"], ppo, rtol=1e-9)
    np.testing.assert_allclose(frame["ppo_h_hist"], 0.0, atol=1e-9)


# --- hand-checked values: a zigzag of hourly bars ----------------------------------------------

# Hour closes 100, 102, 101, 103, 102, ...: odd hours rise by 2, even hours fall by 1 (a peak
# after each rise, a trough after each fall, both climbing 1 per two hours). Bars span +-0.5
# around the close; rising hours trade 2 a minute, falling ones 1.
_k = np.arange(HOURS)
ZIGZAG_CLOSES = 100.0 + _k // 2 + 2.0 * (_k % 2)
ZIGZAG = at_hour_ends(
    compute_features(hourly_bar_candles(ZIGZAG_CLOSES, volume=np.where(_k % 2, 2.0, 1.0)), "v2")
)
AFTER_RISE = hour_of(ZIGZAG) % 2 == 1
AFTER_FALL = ~AFTER_RISE


def test_zigzag_rows_exist_after_rises_and_falls() -> None:
    assert AFTER_RISE.sum() >= 30
    assert AFTER_FALL.sum() >= 30


def test_directional_movement_of_a_zigzag() -> None:
    # A rise: +DM 2, -DM 0, TR = (C + .5) - min(C - .5, C - 2) = 2.5. A fall: +DM 0, -DM 1,
    # TR = max(C + .5, C + 1) - (C - .5) = 1.5. Wilder's average (a = 1/14, q = 13/14) of values
    # alternating u (rises) and d (falls) is, just after a rise, (u + q d) * a / (1 - q^2)
    # = (u + q d) * 14/27, and (d + q u) * 14/27 just after a fall. So after a rise
    # +DM~ = 28/27, -DM~ = 13/27, TR~ = 54.5/27: +DI = 2800/54.5, -DI = 1300/54.5, DX = 1500/41;
    # after a fall +DM~ = 26/27, -DM~ = 14/27, TR~ = 53.5/27: +DI = 2600/53.5, -DI = 1400/53.5,
    # DX = 100 * 12/40 = 30. ADX alternates the same way: (DX_rise + q DX_fall) * 14/27 ...
    q = 13 / 14
    dx_rise, dx_fall = 1500 / 41, 30.0
    rise, fall = ZIGZAG[AFTER_RISE], ZIGZAG[AFTER_FALL]
    np.testing.assert_allclose(rise["plus_di_h14"], 2800 / 54.5, rtol=1e-9)
    np.testing.assert_allclose(rise["minus_di_h14"], 1300 / 54.5, rtol=1e-9)
    np.testing.assert_allclose(rise["dx_h14"], dx_rise, rtol=1e-9)
    np.testing.assert_allclose(fall["plus_di_h14"], 2600 / 53.5, rtol=1e-9)
    np.testing.assert_allclose(fall["minus_di_h14"], 1400 / 53.5, rtol=1e-9)
    np.testing.assert_allclose(fall["dx_h14"], dx_fall, rtol=1e-9)
    np.testing.assert_allclose(rise["adx_h14"], (dx_rise + q * dx_fall) * 14 / 27, rtol=1e-9)
    np.testing.assert_allclose(fall["adx_h14"], (dx_fall + q * dx_rise) * 14 / 27, rtol=1e-9)


def test_aroon_of_a_zigzag() -> None:
    # After a rise the newest bar is the highest (up 100) and the oldest of the 26 bars, a
    # trough, the lowest (down 0); after a fall the peak is 1 bar back (up 96) and the oldest
    # trough 24 bars back (down 4).
    np.testing.assert_allclose(ZIGZAG.loc[AFTER_RISE, "aroon_up_h25"], 100.0)
    np.testing.assert_allclose(ZIGZAG.loc[AFTER_RISE, "aroon_down_h25"], 0.0)
    np.testing.assert_allclose(ZIGZAG.loc[AFTER_FALL, "aroon_up_h25"], 96.0)
    np.testing.assert_allclose(ZIGZAG.loc[AFTER_FALL, "aroon_down_h25"], 4.0)


def test_stochastic_of_a_zigzag() -> None:
    # After a rise: highest high C + .5, lowest low the trough 13 bars back, C - 8 - .5:
    # %K = 8.5 / 9. After a fall: the peak 1 back is C + 1.5, the trough 12 back C - 6.5:
    # %K = 6.5 / 8. %D averages the last three: two of one kind and one of the other.
    k_rise, k_fall = 100 * 8.5 / 9, 100 * 6.5 / 8
    np.testing.assert_allclose(ZIGZAG.loc[AFTER_RISE, "stoch_k_h14"], k_rise, rtol=1e-9)
    np.testing.assert_allclose(ZIGZAG.loc[AFTER_FALL, "stoch_k_h14"], k_fall, rtol=1e-9)
    np.testing.assert_allclose(
        ZIGZAG.loc[AFTER_RISE, "stoch_d_h14"], (2 * k_rise + k_fall) / 3, rtol=1e-9
    )
    np.testing.assert_allclose(
        ZIGZAG.loc[AFTER_FALL, "stoch_d_h14"], (k_rise + 2 * k_fall) / 3, rtol=1e-9
    )


def test_money_flow_index_of_a_zigzag() -> None:
    # Typical price (H + L + C) / 3 = C. Over the last 14 bars after a rise: 7 rises with closes
    # C, C - 1, ..., C - 6 (flow 2 * 60 each per unit of price) and 7 falls with C - 2, ..., C - 8
    # (60 each): MFI = 100 * 2 (7C - 21) / (2 (7C - 21) + (7C - 35)). After a fall: rises
    # C + 1, ..., C - 5, falls C, ..., C - 6: MFI = 100 * 2 (7C - 14) / (2 (7C - 14) + 7C - 21).
    c = ZIGZAG["close"]
    rise = 2 * (7 * c - 21) / (2 * (7 * c - 21) + (7 * c - 35))
    fall = 2 * (7 * c - 14) / (2 * (7 * c - 14) + (7 * c - 21))
    np.testing.assert_allclose(ZIGZAG.loc[AFTER_RISE, "mfi_h14"], 100 * rise[AFTER_RISE], rtol=1e-9)
    np.testing.assert_allclose(ZIGZAG.loc[AFTER_FALL, "mfi_h14"], 100 * fall[AFTER_FALL], rtol=1e-9)


def test_on_balance_volume_of_a_zigzag() -> None:
    # 24 bars: 12 rises of 120 traded, 12 falls of 60: (12 * 120 - 12 * 60) / (12 * 180) = 1/3
    np.testing.assert_allclose(ZIGZAG["obv_h24"], 1 / 3, rtol=1e-12)


def test_chaikin_money_flow_of_a_zigzag_with_lopsided_bars() -> None:
    # Rising hours close 1.5 above their low and 0.5 under their high (multiplier (1.5 - 0.5) /
    # 2 = +0.5), falling ones the other way round (-0.5); rises trade 2 a minute, falls 1. Over 20
    # bars: (10 * 0.5 * 120 - 10 * 0.5 * 60) / (10 * 120 + 10 * 60) = 1/6.
    rising = _k % 2 == 1
    candles = hourly_bar_candles(
        ZIGZAG_CLOSES,
        up=np.where(rising, 0.5, 1.5),
        down=np.where(rising, 1.5, 0.5),
        volume=np.where(rising, 2.0, 1.0),
    )

    frame = at_hour_ends(compute_features(candles, "v2"))

    assert len(frame) >= 60
    np.testing.assert_allclose(frame["cmf_h20"], 1 / 6, rtol=1e-12)


# --- hand-checked values: the reference coins -----------------------------------------------------


def patterned_closes(pattern: tuple[float, ...], drift: float, minutes: int) -> np.ndarray:
    """Closes whose minute log returns repeat ``pattern`` (period 4) plus ``drift``."""
    returns = np.tile(np.asarray(pattern), minutes // 4 + 1)[:minutes] + drift
    returns[0] = 0.0
    return 100.0 * np.exp(np.cumsum(returns))


E = 1e-3
CROSS_MINUTES = WARMUP + 20
# The reference's minute returns repeat E * (1, -1, 1, -1) + 1e-5; the coin's E * (2, 0, 0, -2)
# + 2e-5, which is the reference's pattern plus E * (1, 1, -1, -1), uncorrelated with it.
_reference_close = patterned_closes((E, -E, E, -E), 1e-5, CROSS_MINUTES)
_coin_close = patterned_closes((2 * E, 0.0, 0.0, -2 * E), 2e-5, CROSS_MINUTES)
_cross_index = pd.date_range(START, periods=CROSS_MINUTES, freq="min", name="open_time")
CROSS_COIN = pd.DataFrame(
    {"high": _coin_close * 1.001, "low": _coin_close * 0.999, "close": _coin_close,
     "volume": 1.0 + np.arange(CROSS_MINUTES) % 3},
    index=_cross_index,
)  # fmt: skip
CROSS = compute_features(
    CROSS_COIN,
    "v2x",
    {
        "BTCUSDT": pd.DataFrame({"close": _reference_close}, index=_cross_index),
        "ETHUSDT": CROSS_COIN,  # the coin is ETHUSDT: it is one of its own references
    },
)


def test_reference_returns_by_hand() -> None:
    # Any 60 consecutive minutes hold 15 whole periods: the pattern cancels, the drift stays.
    assert len(CROSS) == 20
    np.testing.assert_allclose(CROSS["ref_btcusdt_logret_1h"], 60 * 1e-5, rtol=1e-6)
    np.testing.assert_allclose(CROSS["ref_btcusdt_logret_4h"], 240 * 1e-5, rtol=1e-6)
    np.testing.assert_allclose(CROSS["ref_btcusdt_logret_24h"], 1440 * 1e-5, rtol=1e-6)


def test_reference_volatility_by_hand() -> None:
    # 720 returns of E + 1e-5 and 720 of -E + 1e-5: population std E
    np.testing.assert_allclose(CROSS["ref_btcusdt_volatility_24h"], E, rtol=1e-6)


def test_the_coins_own_volatility_by_hand() -> None:
    # returns 2E, 0, 0, -2E (plus a constant): population std E sqrt((4 + 0 + 0 + 4) / 4)
    np.testing.assert_allclose(CROSS["volatility_24h"], math.sqrt(2) * E, rtol=1e-6)


def test_reference_correlation_by_hand() -> None:
    # cov(R + Q, R) = var R = E^2 (Q is uncorrelated with R), var(R + Q) = 2 E^2:
    # corr = E^2 / (sqrt(2) E * E) = 1 / sqrt(2)
    np.testing.assert_allclose(CROSS["ref_btcusdt_corr_24h"], 1 / math.sqrt(2), rtol=1e-6)


def test_a_coin_that_is_its_own_reference_gets_its_own_returns() -> None:
    for name in ("logret_1h", "logret_4h", "logret_24h"):
        np.testing.assert_array_equal(CROSS[f"ref_ethusdt_{name}"], CROSS[name])
    # the same window, summed from a different first minute: equal but for rounding
    np.testing.assert_allclose(CROSS["ref_ethusdt_volatility_24h"], CROSS["volatility_24h"], 1e-12)
    np.testing.assert_allclose(CROSS["ref_ethusdt_corr_24h"], 1.0, rtol=1e-9)


def test_a_reference_that_never_moved_has_correlation_zero() -> None:
    flat = pd.DataFrame({"close": np.full(CROSS_MINUTES, 5.0)}, index=_cross_index)

    frame = compute_features(CROSS_COIN, "v2x", {"BTCUSDT": flat, "ETHUSDT": CROSS_COIN})

    assert len(frame) == 20
    np.testing.assert_array_equal(frame["ref_btcusdt_corr_24h"], 0.0)
    np.testing.assert_array_equal(frame["ref_btcusdt_volatility_24h"], 0.0)
