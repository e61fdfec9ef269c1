"""The one definition of every feature: candles in, one causal row per stored candle out.

Training, serving, monitoring and the ``features`` table all go through :func:`compute_features`,
so what a model was trained on is exactly what it is served with. Pure pandas/numpy: no
database, no settings.

Feature set ``v1``
------------------
Time is a regular 1-minute grid from the first to the last candle given. Every feature of the row
at open time ``t`` uses only candles with open time <= ``t`` (tests/unit/test_features.py perturbs
the future to prove it).

"Hourly" and "daily" series are defined causally at minute resolution: the hourly series seen at
minute ``t`` is ``close[t], close[t-60m], close[t-120m], ...`` and the daily one steps by 1440
minutes. So "the 7-period moving average of hourly closes" at ``t`` is
``mean(close[t - k*60m] for k in 0..6)``: a rolling hour that ends at ``t`` rather than a
calendar hour, which would either lag by up to 59 minutes or peek at the rest of the hour.

==========================  ===================================================================
``close_minmax_24h``        (close - min) / (max - min) of minute closes over the trailing 24 h
                            (1440 minutes including ``t``); 0.5 when the window is flat.
``ma_gap_h7_h25``           MA7 - MA25 of hourly closes, in price units; ``_rel``: divided by close
``ma_gap_h25_h99``          MA25 - MA99 of hourly closes; ``_rel``: divided by close
``ma_gap_d7_d25``           MA7 - MA25 of daily closes; ``_rel``: divided by close
``rsi_h14``                 Wilder's RSI(14) on hourly closes, 0..100 (50 when nothing moved)
``macd_h_line_rel``         MACD(12, 26) line of hourly closes (EMA12 - EMA26) / close
``macd_h_signal_rel``       its EMA9 signal / close
``macd_h_hist_rel``         (line - signal) / close
``bb_width_h20``            Bollinger band width (20, 2) of hourly closes: 4 * std / mean
                            (population std), i.e. (upper - lower) / middle
``logret_1h/4h/24h``        log(close[t] / close[t - 1h | 4h | 24h])
``volatility_24h``          std of 1-minute log returns over the trailing 24 h
``volume_z_24h``            z-score of log1p(volume) against its trailing 24 h mean and std
==========================  ===================================================================

The oscillators (RSI, MACD, Bollinger) use hourly closes rather than minute closes: the targets
are hours to a day ahead, and minute-resolution RSI/MACD is mostly bid-ask noise.

Gaps
----
Missing minutes stay missing (NaN on the grid); nothing is forward-filled or invented.

- Sampled windows (hourly/daily moving averages, Bollinger, log returns) need every sample they
  average: one missing sample makes the feature NaN at that minute.
- Dense minute windows (24 h min-max, volatility, volume z-score) use the candles present and need
  at least 90% of the window (:data:`DENSE_MIN_FRACTION`), so an odd missing minute does not wipe
  out a day of rows.
- The exponential averages (RSI, MACD) skip missing samples; their weights decay with elapsed
  time (pandas ``ignore_na=False``), so a long gap leaves almost nothing of the state before it.

A row is emitted only for a stored candle whose features are all finite and that has at least
:data:`WARMUP_MINUTES` of grid before it, so every emitted value has settled: the incremental
transform, which reads back at most ``WARMUP_MINUTES`` of history (for a few new minutes only the
thin subset :class:`FeatureSet` declares), reproduces a full recompute to far better than 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricebot.errors import FeatureInputError, UnknownFeatureSetError

HOUR = 60
DAY = 1440
MINUTE_NS = 60 * 10**9
DENSE_MIN_FRACTION = 0.9
#: Weights older than this many samples of the slowest EMA (Wilder's alpha = 1/14) are below
#: (13/14)**400 ~ 1e-13, so the EMAs do not depend on where the history was cut.
EMA_SETTLE_SAMPLES = 400

V1_NAMES: tuple[str, ...] = (
    "close_minmax_24h",
    "ma_gap_h7_h25",
    "ma_gap_h7_h25_rel",
    "ma_gap_h25_h99",
    "ma_gap_h25_h99_rel",
    "ma_gap_d7_d25",
    "ma_gap_d7_d25_rel",
    "rsi_h14",
    "macd_h_line_rel",
    "macd_h_signal_rel",
    "macd_h_hist_rel",
    "bb_width_h20",
    "logret_1h",
    "logret_4h",
    "logret_24h",
    "volatility_24h",
    "volume_z_24h",
)

#: Minutes of history a ``v1`` row needs before its own minute: the daily MA25 reaches back 24 days
#: (34,560 minutes); the hourly EMAs settle within 400 hours (24,000 minutes), which fits inside.
WARMUP_MINUTES = max((25 - 1) * DAY, EMA_SETTLE_SAMPLES * HOUR)


def _lagged_sum(x: np.ndarray, step: int, count: int) -> np.ndarray:
    """sum(x[t - k*step] for k < count); NaN where a sample is missing or before the start.

    The additions happen in the same order whatever the array's start, so a window's result is
    bit-for-bit the same in a full and in an incremental computation.
    """
    total = x.copy()
    for k in range(1, count):
        lag = k * step
        if lag >= len(x):
            break
        total[lag:] += x[:-lag]
    total[: min((count - 1) * step, len(x))] = np.nan
    return total


def _sampled_mean(x: np.ndarray, step: int, count: int) -> np.ndarray:
    return _lagged_sum(x, step, count) / count


def _sampled_std(x: np.ndarray, step: int, count: int, mean: np.ndarray) -> np.ndarray:
    """Population std of the ``count`` samples ``step`` apart (two-pass, exact per window)."""
    squares = (x - mean) ** 2
    for k in range(1, count):
        lag = k * step
        if lag >= len(x):
            break
        squares[lag:] += (x[:-lag] - mean[lag:]) ** 2
    squares[: min((count - 1) * step, len(x))] = np.nan
    return np.sqrt(squares / count)


def _lag(x: np.ndarray, lag: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if lag < len(x):
        out[lag:] = x[:-lag]
    return out


def _sampled_ewm(x: np.ndarray, step: int, alpha: float) -> np.ndarray:
    """The recursive EMA (adjust=False) of each sampled series ``x[t], x[t-step], ...``.

    The grid is folded into a (rows, step) matrix whose columns are the phases, so pandas runs
    one EMA per column; missing samples are skipped with time-based decay.
    """
    n = len(x)
    rows = -(-n // step)
    folded = np.full(rows * step, np.nan)
    folded[:n] = x
    frame = pd.DataFrame(folded.reshape(rows, step))
    smoothed = frame.ewm(alpha=alpha, adjust=False, ignore_na=False).mean().to_numpy()
    return smoothed.reshape(-1)[:n]


def _dense_window(values: np.ndarray, window: int) -> pd.core.window.Rolling:
    min_periods = math.ceil(window * DENSE_MIN_FRACTION)
    return pd.Series(values).rolling(window, min_periods=min_periods)


def _rsi(close: np.ndarray, step: int, period: int) -> np.ndarray:
    change = close - _lag(close, step)
    gain = np.where(np.isnan(change), np.nan, np.maximum(change, 0.0))
    loss = np.where(np.isnan(change), np.nan, np.maximum(-change, 0.0))
    avg_gain = _sampled_ewm(gain, step, 1.0 / period)
    avg_loss = _sampled_ewm(loss, step, 1.0 / period)
    moved = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(moved > 0, 100.0 * avg_gain / moved, 50.0 + 0.0 * moved)


def _v1(close: np.ndarray, volume: np.ndarray) -> dict[str, np.ndarray]:
    """The v1 columns on the regular minute grid (NaN where a window is incomplete)."""
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        window = _dense_window(close, DAY)
        low, high = window.min().to_numpy(), window.max().to_numpy()
        span = high - low
        out["close_minmax_24h"] = np.where(span > 0, (close - low) / span, 0.5 + 0.0 * span)

        h7, h25, h99 = (_sampled_mean(close, HOUR, n) for n in (7, 25, 99))
        d7, d25 = (_sampled_mean(close, DAY, n) for n in (7, 25))
        for name, gap in (
            ("ma_gap_h7_h25", h7 - h25),
            ("ma_gap_h25_h99", h25 - h99),
            ("ma_gap_d7_d25", d7 - d25),
        ):
            out[name] = gap
            out[f"{name}_rel"] = gap / close

        out["rsi_h14"] = _rsi(close, HOUR, 14)

        line = _sampled_ewm(close, HOUR, 2 / 13) - _sampled_ewm(close, HOUR, 2 / 27)
        # The EMAs carry their value over a missing sample; the signal must skip it, not
        # average the carried value in as if it had been observed.
        line[np.isnan(close)] = np.nan
        signal = _sampled_ewm(line, HOUR, 2 / 10)
        out["macd_h_line_rel"] = line / close
        out["macd_h_signal_rel"] = signal / close
        out["macd_h_hist_rel"] = (line - signal) / close

        mid = _sampled_mean(close, HOUR, 20)
        out["bb_width_h20"] = 4.0 * _sampled_std(close, HOUR, 20, mid) / mid

        log_close = np.log(close)
        for label, minutes in (("1h", HOUR), ("4h", 4 * HOUR), ("24h", DAY)):
            out[f"logret_{label}"] = log_close - _lag(log_close, minutes)
        minute_returns = log_close - _lag(log_close, 1)
        out["volatility_24h"] = _dense_window(minute_returns, DAY).std(ddof=0).to_numpy()

        log_volume = np.log1p(volume)
        volume_window = _dense_window(log_volume, DAY)
        mean, std = volume_window.mean().to_numpy(), volume_window.std(ddof=0).to_numpy()
        out["volume_z_24h"] = np.where(std > 0, (log_volume - mean) / std, 0.0 * std)
    return out


@dataclass(frozen=True)
class FeatureSet:
    """A versioned feature definition.

    ``names``: its columns; ``warmup_minutes``: the history a row depends on; ``inputs``: the
    candle columns it reads; ``build``: the function on the minute grid.

    ``dense_minutes`` and ``sample_step`` state which candles a row at ``t`` reads: every minute
    in ``[t - dense_minutes, t]``, and before that only the minutes ``t - k * sample_step``
    (back to ``t - warmup_minutes``). The incremental transform relies on it to read a few
    hundred candles instead of the whole warm-up when a few minutes are new; the unit tests
    check the claim by computing from exactly that thin history.
    """

    names: tuple[str, ...]
    warmup_minutes: int
    inputs: tuple[str, ...]
    build: Callable[..., dict[str, np.ndarray]]
    dense_minutes: int
    sample_step: int


_FEATURE_SETS: dict[str, FeatureSet] = {
    # Dense: the 24 h windows and the minute return at their oldest end (t - 1440 m). Sampled:
    # hourly MAs and EMAs, daily MAs (1440 is a multiple of 60), hourly and 4 h log returns.
    "v1": FeatureSet(
        V1_NAMES, WARMUP_MINUTES, ("close", "volume"), _v1, dense_minutes=DAY, sample_step=HOUR
    ),
}


def feature_set_definition(feature_set: str = "v1") -> FeatureSet:
    """The definition of ``feature_set`` (raises :class:`UnknownFeatureSetError`)."""
    return _feature_set(feature_set)


def _feature_set(feature_set: str) -> FeatureSet:
    try:
        return _FEATURE_SETS[feature_set]
    except KeyError:
        known = ", ".join(sorted(_FEATURE_SETS))
        raise UnknownFeatureSetError(
            f"Unknown feature set {feature_set!r}; this pricebot defines: {known}."
        ) from None


def feature_sets() -> list[str]:
    """The feature-set names this version defines."""
    return sorted(_FEATURE_SETS)


def feature_names(feature_set: str = "v1") -> list[str]:
    """The feature columns of ``feature_set``, in the order they are stored and served."""
    return list(_feature_set(feature_set).names)


def warmup_minutes(feature_set: str = "v1") -> int:
    """Minutes of history before a row that the row's features depend on."""
    return _feature_set(feature_set).warmup_minutes


def input_columns(feature_set: str = "v1") -> list[str]:
    """The candle columns the feature set reads (the transform loads only these)."""
    return list(_feature_set(feature_set).inputs)


def _check_candles(candles: pd.DataFrame, inputs: tuple[str, ...]) -> pd.DatetimeIndex:
    missing = [c for c in inputs if c not in candles.columns]
    if missing:
        raise FeatureInputError(
            f"candles lack column(s) {missing}; expected a frame like pricebot.candles.load_candles"
            " returns (index open_time, columns open high low close volume ...)."
        )
    index = candles.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise FeatureInputError(
            "candles need a timezone-aware DatetimeIndex of open times (UTC); got "
            f"{type(index).__name__}{'' if getattr(index, 'tz', None) else ' without a timezone'}."
        )
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise FeatureInputError(
            "candle open times must be strictly increasing (sort and de-duplicate them first)."
        )
    index = index.tz_convert("UTC").as_unit("ns")
    off_minute = np.flatnonzero(index.asi8 % MINUTE_NS)
    if len(off_minute):
        raise FeatureInputError(
            f"candle open time {index[off_minute[0]].isoformat()} is not on a minute; "
            "the features need 1m candles."
        )
    return index


def compute_features(candles: pd.DataFrame, feature_set: str = "v1") -> pd.DataFrame:
    """Features of every stored candle whose windows are complete.

    ``candles``: index open_time (tz-aware), columns at least ``close`` and ``volume`` (as
    :func:`pricebot.candles.load_candles` returns). The result is indexed by open_time (UTC) with
    column ``close`` followed by :func:`feature_names` (float64); rows without a full window or
    with a non-finite feature are left out, never filled.
    """
    definition = _feature_set(feature_set)
    names, warmup = definition.names, definition.warmup_minutes
    columns = ["close", *names]
    if len(candles) == 0:
        empty = pd.DatetimeIndex([], tz="UTC", name="open_time")
        return pd.DataFrame({c: np.array([], dtype=float) for c in columns}, index=empty)
    index = _check_candles(candles, definition.inputs)

    stamps = index.asi8
    positions = (stamps - stamps[0]) // MINUTE_NS
    size = int(positions[-1]) + 1
    close = np.full(size, np.nan)
    volume = np.full(size, np.nan)
    close[positions] = candles["close"].to_numpy(dtype=float)
    volume[positions] = candles["volume"].to_numpy(dtype=float)
    if not np.all(close[positions] > 0):
        raise FeatureInputError(
            "candle closes must be positive numbers (got zero, negative or NaN)."
        )

    values = definition.build(close, volume)
    keep = np.isfinite(close)
    for name in names:
        keep &= np.isfinite(values[name])
    keep[: min(warmup, size)] = False
    rows = np.flatnonzero(keep)

    # One float64 block, column-major: close then the features. Callers that want the raw
    # matrix (the binary COPY writer) get it from frame.to_numpy() without a copy.
    block = np.empty((len(names) + 1, len(rows)))
    block[0] = close[rows]
    for i, name in enumerate(names, start=1):
        block[i] = values[name][rows]
    open_time = pd.DatetimeIndex(
        (stamps[0] + rows.astype(np.int64) * MINUTE_NS).view("datetime64[ns]"), name="open_time"
    ).tz_localize("UTC")
    frame = pd.DataFrame(block.T, index=open_time, columns=["close", *names], copy=False)
    return frame
