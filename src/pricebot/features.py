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
the feature set's warm-up (:func:`warmup_minutes`; :data:`WARMUP_MINUTES` for ``v1``) of grid
before it, so every emitted value has settled: the incremental transform, which reads back at most
the warm-up of history (for a few new minutes only the thin subset :class:`FeatureSet` declares),
reproduces a full recompute to far better than 1e-9.

Feature set ``v2``
------------------
Every ``v2`` column is relative (a return, a ratio to price, a bounded oscillator), so it means
the same for a coin at 30,000 USD and one at 0.30 USD, and one model can be pooled over coins.
``v2`` keeps v1's relative columns, drops the three moving-average gaps in price units (their
``_rel`` versions stay) and MACD over close (PPO is the same line, over the slow EMA instead),
and adds the classic indicators, hourly return lags and the long daily averages. The v1 rules
above (rolling hours ending at ``t``, gaps, settled EMAs, finite rows after the warm-up) hold.

*Hourly bars.* The indicators that read highs, lows and volume (ADX, Aroon, stochastic, MFI, OBV,
Chaikin) use the hourly bar ending at ``t``: the candles in ``(t - 60 m, t]``, with close
``close[t]``, the highest high, the lowest low and the summed volume of the candles stored there.
A bar exists when ``close[t]`` is stored and at least 90% (54) of its 60 minutes are (the dense
rule); an indicator over N bars reads the bars ending at ``t, t - 1h, ..., t - (N-1)h`` (adjacent,
not overlapping) and needs every one of them (the sampled rule). At the last minute of a clock hour
the bar is that clock hour's candle.

==================================  =============================================================
``close_minmax_24h``                as in v1
``ma_gap_h7_h25_rel``               as in v1: (MA7 - MA25) / close of hourly closes
``ma_gap_h25_h99_rel``              as in v1
``ma_gap_d7_d25_rel``               as in v1
``ma_gap_d25_d99_rel``              (MA25 - MA99) / close of daily closes (99 daily samples)
``rsi_h14``                         as in v1
``bb_width_h20``                    as in v1
``logret_1h/4h/24h``                as in v1
``logret_1h_lag<k>h``               the 1-hour log return that ended ``k`` hours before ``t``:
                                    log(close[t - k h] / close[t - (k+1) h]) for ``k`` in
                                    :data:`V2_RETURN_LAGS_HOURS` (1 h ... 672 h = 4 weeks; 24, 168
                                    and 672 are the same hour a day, a week, four weeks ago)
``volatility_24h``                  as in v1
``volume_z_24h``                    as in v1
``obv_h24``                         OBV over 24 bars, normalised: sum(sign(C_k - C_{k-1}) * V_k) /
                                    sum(V_k), -1..1 (0 when nothing traded)
``cmf_h20``                         Chaikin A/D over 20 bars, normalised (Chaikin money flow):
                                    sum(MFM_k * V_k) / sum(V_k), MFM = ((C - L) - (H - C)) / (H - L)
                                    (0 for a bar with H = L), -1..1
``plus_di_h14``, ``minus_di_h14``   Wilder's +DI and -DI (14), 0..100: smoothed +DM / smoothed TR
``dx_h14``                          100 * abs(+DI - -DI) / (+DI + -DI) (0 when both are 0)
``adx_h14``                         Wilder's ADX(14): DX smoothed with the same Wilder average
``aroon_up_h25``                    100 * (25 - bars since the highest high) / 25 over the 26
                                    bars ``t .. t - 25h`` (the newest bar wins a tie)
``aroon_down_h25``                  the same for the lowest low
``stoch_k_h14``                     fast stochastic %K(14): 100 * (C - lowest low) /
                                    (highest high - lowest low) over 14 bars (50 when flat)
``stoch_d_h14``                     %D: mean of %K at ``t``, ``t - 1h``, ``t - 2h``
``mfi_h14``                         money flow index(14): 100 * positive / (positive + negative)
                                    flow of typical price (H + L + C) / 3 times volume, over 14
                                    bars (50 when the typical price never moved)
``trix_h15``                        TRIX(15): 100 * one-hour change of the triple EMA(15) of hourly
                                    closes, in percent
``ppo_h_line``                      PPO(12, 26): 100 * (EMA12 - EMA26) / EMA26 of hourly closes
``ppo_h_signal``, ``ppo_h_hist``    its EMA9, and line - signal
==================================  =============================================================

*Cumulative indicators.* OBV and Chaikin's A/D line are running sums from the first candle: their
level depends on where the stored history starts and drifts without bound, so no incremental
update could reproduce it and no model could compare it across coins or years. ``v2`` uses their
windowed, normalised form instead: the change of the line over a window divided by the volume
traded in that window. It is what the line's slope says (buying or selling pressure), depends on
the last 24 | 20 bars only, and is bounded.

*Warm-up.* The daily MA99 reads 99 daily samples, so a ``v2`` row needs 98 days of candles before
it (:data:`V2_WARMUP_MINUTES` = 141,120 minutes), against v1's 24. The four-week return lag (673
hours), and the EMAs (settled after :data:`EMA_SETTLE_SAMPLES` hourly samples; the doubly
smoothed ADX after :data:`ADX_SETTLE_BARS` bars) fit inside it. A newest minute reads every
minute of the last :data:`V2_DENSE_MINUTES` (19 days: the bars of the settled ADX) and the hourly
samples before that, about 29,000 candles (v1: 2,000); only the rows asked for are computed
(``compute_features(..., since=...)``), on the minutes of the hour they fall on.

*Gaps cost more.* With every daily sample needed, a missing minute of day removes the rows at the
same minute of day for the next 98 days (a 3-hour outage removes 1/8 of the rows for 98 days;
v1 loses them for 24 days); and an hour missing more than 6 of its minutes has no bar, so every
row for the next 26 hours (Aroon's window) is left out. The warm-up and the strictness are the
price of honest 99-day averages; ``pricebot gaps`` shows the holes, and a back-fill followed by
``transform --full`` recovers them.

Feature set ``v2x`` (cross-asset)
---------------------------------
``v2`` plus, for each reference coin R, five columns computed from R's stored candles on the same
minute grid (aligned on open time; a minute R lacks is missing, never filled from another one):

==================================  =============================================================
``ref_<r>_logret_1h/4h/24h``        log(R.close[t] / R.close[t - 1h | 4h | 24h])
``ref_<r>_volatility_24h``          std of R's 1-minute log returns over the trailing 24 h (dense)
``ref_<r>_corr_24h``                correlation of the coin's and R's 1-minute log returns over the
                                    trailing 24 h, on the minutes both have (dense; 0 when either
                                    did not move)
==================================  =============================================================

``v2x`` means the references :data:`V2X_REFERENCES` (BTCUSDT, ETHUSDT); ``v2x:SOLUSDT,ETHUSDT``
names others, in column order (:func:`cross_asset_feature_set` gives the canonical name;
``PRICEBOT_REFERENCE_SYMBOLS`` turns ``PRICEBOT_FEATURE_SET=v2x`` into it). The references are
part of the name because they are part of the definition: rows stored and models trained under
one list never meet another list's columns.

It is a feature set of its own, not part of ``v2``: ``v2`` needs nothing but the coin's own
candles, so it works for any symbol, even one whose references were never ingested, and the pair
``v2`` / ``v2x`` lets a user measure whether the references add anything.

A reference's own row carries its columns too, equal to its own returns (its correlation with
itself is 1): every symbol of a pool must have the same columns, and that is the truth about it.
A row at ``t`` needs R's candle at ``t`` (R's return ends there), so a coin's rows wait for its
references' candles; the transform reads R's candles up to the coin's newest and no further.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

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
#: ADX smooths twice with alpha = 1/14, so a sample n bars back still weighs about
#: n/14 * (13/14)**n: below 1e-13 from 450 bars on.
ADX_SETTLE_BARS = 450

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

#: Hours back at which ``v2`` repeats the 1-hour return: the last six hours, half a day, one to
#: three days, and one to four weeks (the same hour of the day and of the week).
V2_RETURN_LAGS_HOURS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 12, 24, 48, 72, 168, 336, 504, 672)

V2_NAMES: tuple[str, ...] = (
    "close_minmax_24h",
    "ma_gap_h7_h25_rel",
    "ma_gap_h25_h99_rel",
    "ma_gap_d7_d25_rel",
    "ma_gap_d25_d99_rel",
    "rsi_h14",
    "bb_width_h20",
    "logret_1h",
    "logret_4h",
    "logret_24h",
    *(f"logret_1h_lag{k}h" for k in V2_RETURN_LAGS_HOURS),
    "volatility_24h",
    "volume_z_24h",
    "obv_h24",
    "cmf_h20",
    "plus_di_h14",
    "minus_di_h14",
    "dx_h14",
    "adx_h14",
    "aroon_up_h25",
    "aroon_down_h25",
    "stoch_k_h14",
    "stoch_d_h14",
    "mfi_h14",
    "trix_h15",
    "ppo_h_line",
    "ppo_h_signal",
    "ppo_h_hist",
)

#: Minutes of history a ``v2`` row needs: the daily MA99 reaches back 98 days (141,120 minutes);
#: the four-week lag (673 h), the settled EMAs (400 h) and ADX (451 bars) fit inside.
V2_WARMUP_MINUTES = max(
    (99 - 1) * DAY,
    (max(V2_RETURN_LAGS_HOURS) + 1) * HOUR,
    EMA_SETTLE_SAMPLES * HOUR,
    (ADX_SETTLE_BARS + 1) * HOUR,
)
#: Every minute a ``v2`` row reads: the hourly bars of the settled ADX (the oldest bar's previous
#: bar included), which also covers the 26 bars of Aroon and v1's 24 h windows.
V2_DENSE_MINUTES = (ADX_SETTLE_BARS + 2) * HOUR

#: The references the bare name ``v2x`` means. Fixed forever: stored rows and models depend on it.
V2X_REFERENCES: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
#: Per reference coin, in column order (prefixed ``ref_<symbol>_``).
REFERENCE_FEATURES: tuple[str, ...] = (
    "logret_1h",
    "logret_4h",
    "logret_24h",
    "volatility_24h",
    "corr_24h",
)
#: Minutes of a reference's history a row reads: the 24 h windows and the close 24 h back.
REFERENCE_MINUTES = DAY + 1


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


def _sampled_extreme(x: np.ndarray, step: int, count: int, pick: np.ufunc) -> np.ndarray:
    """max or min (``np.maximum`` / ``np.minimum``) of the ``count`` samples; NaN if one is."""
    best = x.copy()
    for k in range(1, count):
        best = pick(best, _lag(x, k * step))
    return best


def _lag(x: np.ndarray, lag: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if lag < len(x):
        out[lag:] = x[:-lag]
    return out


def _window_reduce(x: np.ndarray, width: int, op: np.ufunc) -> np.ndarray:
    """op over ``x[t - width + 1 .. t]`` for every ``t`` (NaN where the window starts before 0).

    Built from blocks of 1, 2, 4, ... minutes, so it costs about 2 * log2(width) array passes,
    and each window is combined in the same order whatever the array's start: bit-for-bit the
    same in a full and in an incremental computation (this matters for sums).
    """
    blocks = [x]  # blocks[j][t] = op over the 2**j minutes ending at t
    while 2 ** len(blocks) <= width:
        half = 2 ** (len(blocks) - 1)
        blocks.append(op(blocks[-1], _lag(blocks[-1], half)))
    # width in binary: the largest block ends at t, each smaller one where the last one began.
    result, covered = np.full_like(x, np.nan), 0
    for j in range(len(blocks) - 1, -1, -1):
        if width - covered >= 2**j:
            part = _lag(blocks[j], covered) if covered else blocks[j]
            result = part.copy() if covered == 0 else op(result, part)
            covered += 2**j
    result[: min(width - 1, len(x))] = np.nan
    return result


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


def _observed_ewm(x: np.ndarray, step: int, alpha: float) -> np.ndarray:
    """:func:`_sampled_ewm`, NaN where ``x`` is missing.

    The EMA carries its value over a missing sample; a second EMA fed from it must skip that
    sample, not average the carried value in as if it had been observed.
    """
    smoothed = _sampled_ewm(x, step, alpha)
    smoothed[np.isnan(x)] = np.nan
    return smoothed


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


# --- the v1 columns, as parts v2 reuses ------------------------------------------------------


def _range_position_24h(close: np.ndarray) -> np.ndarray:
    window = _dense_window(close, DAY)
    low, high = window.min().to_numpy(), window.max().to_numpy()
    span = high - low
    return np.where(span > 0, (close - low) / span, 0.5 + 0.0 * span)


def _bollinger_width(close: np.ndarray, hour: int = HOUR) -> np.ndarray:
    mid = _sampled_mean(close, hour, 20)
    return 4.0 * _sampled_std(close, hour, 20, mid) / mid


def _log_returns(log_close: np.ndarray, hour: int = HOUR) -> dict[str, np.ndarray]:
    return {
        f"logret_{label}": log_close - _lag(log_close, hours * hour)
        for label, hours in (("1h", 1), ("4h", 4), ("24h", 24))
    }


def _minute_volatility(minute_returns: np.ndarray) -> np.ndarray:
    return _dense_window(minute_returns, DAY).std(ddof=0).to_numpy()


def _volume_z(volume: np.ndarray) -> np.ndarray:
    log_volume = np.log1p(volume)
    volume_window = _dense_window(log_volume, DAY)
    mean, std = volume_window.mean().to_numpy(), volume_window.std(ddof=0).to_numpy()
    return np.where(std > 0, (log_volume - mean) / std, 0.0 * std)


def _v1(close: np.ndarray, volume: np.ndarray) -> dict[str, np.ndarray]:
    """The v1 columns on the regular minute grid (NaN where a window is incomplete)."""
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["close_minmax_24h"] = _range_position_24h(close)

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

        out["bb_width_h20"] = _bollinger_width(close)

        log_close = np.log(close)
        out.update(_log_returns(log_close))
        minute_returns = log_close - _lag(log_close, 1)
        out["volatility_24h"] = _minute_volatility(minute_returns)
        out["volume_z_24h"] = _volume_z(volume)
    return out


def _v1_at(
    grid: Mapping[str, np.ndarray],
    references: Mapping[str, pd.DataFrame],
    start_ns: int,
    wanted: np.ndarray,
) -> dict[str, np.ndarray]:
    return {name: values[wanted] for name, values in _v1(grid["close"], grid["volume"]).items()}


# --- v2: hourly bars and the classic indicators ------------------------------------------------


@dataclass(frozen=True)
class _Bars:
    """The hourly bar ending at each minute (NaN where it does not exist)."""

    close: np.ndarray
    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray


def _hour_bars(close: np.ndarray, high: np.ndarray, low: np.ndarray, volume: np.ndarray) -> _Bars:
    present = np.isfinite(close)
    stored = _window_reduce(present.astype(float), HOUR, np.add)
    exists = present & (stored >= math.ceil(HOUR * DENSE_MIN_FRACTION))
    traded = _window_reduce(np.where(present, volume, 0.0), HOUR, np.add)

    def only_existing(values: np.ndarray) -> np.ndarray:
        return np.where(exists, values, np.nan)

    return _Bars(
        close=only_existing(close),
        high=only_existing(_window_reduce(high, HOUR, np.fmax)),
        low=only_existing(_window_reduce(low, HOUR, np.fmin)),
        volume=only_existing(traded),
    )


def _ratio(numerator: np.ndarray, denominator: np.ndarray, otherwise: float) -> np.ndarray:
    """numerator / denominator, ``otherwise`` where the denominator is 0, NaN where either is."""
    return np.where(denominator != 0, numerator / denominator, otherwise + 0.0 * numerator)


def _volume_flows(bars: _Bars, hour: int) -> dict[str, np.ndarray]:
    """The windowed, volume-normalised OBV and Chaikin A/D (see the module docstring)."""
    direction = np.sign(bars.close - _lag(bars.close, hour))
    obv_change = _lagged_sum(direction * bars.volume, hour, 24)
    span = bars.high - bars.low
    multiplier = _ratio((bars.close - bars.low) - (bars.high - bars.close), span, 0.0)
    ad_change = _lagged_sum(multiplier * bars.volume, hour, 20)
    return {
        "obv_h24": _ratio(obv_change, _lagged_sum(bars.volume, hour, 24), 0.0),
        "cmf_h20": _ratio(ad_change, _lagged_sum(bars.volume, hour, 20), 0.0),
    }


def _directional(bars: _Bars, hour: int, period: int = 14) -> dict[str, np.ndarray]:
    """Wilder's +DI, -DI, DX and ADX on hourly bars (his sums are EMAs with alpha = 1/period)."""
    up = bars.high - _lag(bars.high, hour)
    down = _lag(bars.low, hour) - bars.low
    previous_close = _lag(bars.close, hour)
    true_range = np.maximum(bars.high, previous_close) - np.minimum(bars.low, previous_close)
    observed = np.isfinite(up) & np.isfinite(down) & np.isfinite(true_range)

    def moves(gain: np.ndarray, other: np.ndarray) -> np.ndarray:
        return np.where(observed, np.where((gain > other) & (gain > 0), gain, 0.0), np.nan)

    alpha = 1.0 / period
    smoothed_range = _observed_ewm(np.where(observed, true_range, np.nan), hour, alpha)
    plus = 100.0 * _ratio(_observed_ewm(moves(up, down), hour, alpha), smoothed_range, 0.0)
    minus = 100.0 * _ratio(_observed_ewm(moves(down, up), hour, alpha), smoothed_range, 0.0)
    dx = 100.0 * _ratio(np.abs(plus - minus), plus + minus, 0.0)
    return {
        "plus_di_h14": plus,
        "minus_di_h14": minus,
        "dx_h14": dx,
        "adx_h14": _observed_ewm(dx, hour, alpha),
    }


def _bars_since(x: np.ndarray, hour: int, count: int, newer_is_better: Callable) -> np.ndarray:
    """Bars back (0 = the bar at t) to the best of ``count`` bars; the newest wins a tie."""
    best, since = x.copy(), np.zeros_like(x)
    missing = np.isnan(x)
    for k in range(1, count):
        older = _lag(x, k * hour)
        better = newer_is_better(older, best)
        best = np.where(better, older, best)
        since = np.where(better, float(k), since)
        missing |= np.isnan(older)
    since[missing] = np.nan
    return since


def _aroon(bars: _Bars, hour: int, period: int = 25) -> dict[str, np.ndarray]:
    up = _bars_since(bars.high, hour, period + 1, np.greater)
    down = _bars_since(bars.low, hour, period + 1, np.less)
    return {
        "aroon_up_h25": 100.0 * (period - up) / period,
        "aroon_down_h25": 100.0 * (period - down) / period,
    }


def _stochastic(bars: _Bars, hour: int, period: int = 14) -> dict[str, np.ndarray]:
    highest = _sampled_extreme(bars.high, hour, period, np.maximum)
    lowest = _sampled_extreme(bars.low, hour, period, np.minimum)
    k = 100.0 * _ratio(bars.close - lowest, highest - lowest, 0.5)
    return {"stoch_k_h14": k, "stoch_d_h14": _sampled_mean(k, hour, 3)}


def _money_flow(bars: _Bars, hour: int, period: int = 14) -> np.ndarray:
    typical = (bars.high + bars.low + bars.close) / 3.0
    flow = typical * bars.volume
    previous = _lag(typical, hour)
    moved = np.isfinite(flow) & np.isfinite(previous)
    positive = np.where(moved, np.where(typical > previous, flow, 0.0), np.nan)
    negative = np.where(moved, np.where(typical < previous, flow, 0.0), np.nan)
    positive_sum = _lagged_sum(positive, hour, period)
    return 100.0 * _ratio(positive_sum, positive_sum + _lagged_sum(negative, hour, period), 0.5)


def _trix(close: np.ndarray, hour: int, period: int = 15) -> np.ndarray:
    alpha = 2.0 / (period + 1)
    triple = close
    for _ in range(3):
        triple = _observed_ewm(triple, hour, alpha)
    return 100.0 * (triple / _lag(triple, hour) - 1.0)


def _ppo(close: np.ndarray, hour: int) -> dict[str, np.ndarray]:
    slow = _sampled_ewm(close, hour, 2 / 27)
    line = 100.0 * (_sampled_ewm(close, hour, 2 / 13) - slow) / slow
    line[np.isnan(close)] = np.nan
    signal = _sampled_ewm(line, hour, 2 / 10)
    return {"ppo_h_line": line, "ppo_h_signal": signal, "ppo_h_hist": line - signal}


def _v2_sampled(close: np.ndarray, hour: int) -> dict[str, np.ndarray]:
    """The v2 columns that read nothing but hourly (and daily) samples of the close.

    ``hour`` is how far apart two samples an hour apart lie on the grid given: 60 on the minute
    grid, or the number of phases on a grid of only some phases (see :func:`_phase_grid`).
    """
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        hourly = {n: _sampled_mean(close, hour, n) for n in (7, 25, 99)}
        daily = {n: _sampled_mean(close, 24 * hour, n) for n in (7, 25, 99)}
        out["ma_gap_h7_h25_rel"] = (hourly[7] - hourly[25]) / close
        out["ma_gap_h25_h99_rel"] = (hourly[25] - hourly[99]) / close
        out["ma_gap_d7_d25_rel"] = (daily[7] - daily[25]) / close
        out["ma_gap_d25_d99_rel"] = (daily[25] - daily[99]) / close
        out["rsi_h14"] = _rsi(close, hour, 14)
        out["bb_width_h20"] = _bollinger_width(close, hour)
        out.update(_log_returns(np.log(close), hour))
        for k in V2_RETURN_LAGS_HOURS:
            out[f"logret_1h_lag{k}h"] = _lag(out["logret_1h"], k * hour)
        out["trix_h15"] = _trix(close, hour)
        out.update(_ppo(close, hour))
    return out


def _v2_minutes(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The v2 columns over dense 24 h windows of minutes."""
    close = columns["close"]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_close = np.log(close)
        return {
            "close_minmax_24h": _range_position_24h(close),
            "volatility_24h": _minute_volatility(log_close - _lag(log_close, 1)),
            "volume_z_24h": _volume_z(columns["volume"]),
        }


def _bar_indicators(bars: _Bars, hour: int) -> dict[str, np.ndarray]:
    """The v2 columns of hourly bars; ``hour`` as in :func:`_v2_sampled`."""
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        out.update(_volume_flows(bars, hour))
        out.update(_directional(bars, hour))
        out.update(_aroon(bars, hour))
        out.update(_stochastic(bars, hour))
        out["mfi_h14"] = _money_flow(bars, hour)
    return out


def _phases(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The minute phases of ``positions`` and where each position lies on their phase grid."""
    phases = np.unique(positions % HOUR)
    rank = np.zeros(HOUR, dtype=np.int64)
    rank[phases] = np.arange(len(phases))
    return phases, (positions // HOUR) * len(phases) + rank[positions % HOUR]


def _v2_at(
    grid: Mapping[str, np.ndarray],
    references: Mapping[str, pd.DataFrame],
    start_ns: int,
    wanted: np.ndarray,
    order: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """The v2 (and, for references ``order``, v2x) columns at the grid positions ``wanted``.

    Each part is computed on only what the rows wanted read: the hourly samples of the close on
    their phases (minutes of the hour); every minute from :data:`V2_DENSE_MINUTES` before the
    first of them (the 24 h windows, the references); and the hourly bars of those minutes on
    their phases again. Nothing in a sampled part mixes phases, so a phase computed alone is
    bit-for-bit what it is with all 60; for a full recompute every phase is wanted.
    """
    if len(wanted) == 0:
        names = V2_NAMES + tuple(c for r in order for c in _reference_columns(r))
        return {name: np.array([], dtype=float) for name in names}
    phases, on_phases = _phases(wanted)
    sampled = _v2_sampled(_phase_grid(grid["close"], phases), len(phases))
    out = {name: values[on_phases] for name, values in sampled.items()}

    start = max(0, int(wanted[0]) - V2_DENSE_MINUTES)
    recent = {column: values[start:] for column, values in grid.items()}
    at = wanted - start
    out.update({name: values[at] for name, values in _v2_minutes(recent).items()})

    bars = _hour_bars(recent["close"], recent["high"], recent["low"], recent["volume"])
    bar_phases, on_bar_phases = _phases(at)
    folded = _Bars(
        *(_phase_grid(getattr(bars, f), bar_phases) for f in ("close", "high", "low", "volume"))
    )
    indicators = _bar_indicators(folded, len(bar_phases))
    out.update({name: values[on_bar_phases] for name, values in indicators.items()})

    # The references' columns read REFERENCE_MINUTES: a shorter stretch still.
    if order:
        first = max(0, int(wanted[0]) - REFERENCE_MINUTES - 1)
        close = grid["close"][first:]
        grids = _reference_grids(order, references, start_ns + first * MINUTE_NS, len(close))
        for reference in order:
            features = _reference_features(close, grids[reference]["close"], reference)
            out.update({name: values[wanted - first] for name, values in features.items()})
    return out


def _phase_grid(values: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """``values[p + 60 j]`` for the minute phases ``p`` given, hour by hour: one hour apart on
    the minute grid is ``len(phases)`` apart on this one (with every phase it is the grid)."""
    rows = -(-len(values) // HOUR)
    padded = np.full(rows * HOUR, np.nan)
    padded[: len(values)] = values
    return padded.reshape(rows, HOUR)[:, phases].reshape(-1)


# --- v2x: the reference coins ------------------------------------------------------------------


def _reference_columns(reference: str) -> tuple[str, ...]:
    return tuple(f"ref_{reference.lower()}_{name}" for name in REFERENCE_FEATURES)


def _reference_features(
    own_close: np.ndarray, reference_close: np.ndarray, reference: str
) -> dict[str, np.ndarray]:
    names = dict(zip(REFERENCE_FEATURES, _reference_columns(reference), strict=True))
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        log_reference = np.log(reference_close)
        for label, values in _log_returns(log_reference).items():
            out[names[label]] = values
        reference_returns = log_reference - _lag(log_reference, 1)
        out[names["volatility_24h"]] = _minute_volatility(reference_returns)

        log_own = np.log(own_close)
        own_returns = log_own - _lag(log_own, 1)
        both = np.isfinite(own_returns) & np.isfinite(reference_returns)
        x = pd.Series(np.where(both, own_returns, np.nan))
        y = pd.Series(np.where(both, reference_returns, np.nan))
        min_periods = math.ceil(DAY * DENSE_MIN_FRACTION)
        x_window = x.rolling(DAY, min_periods=min_periods)
        corr = x_window.corr(y).to_numpy()
        x_std = x_window.std(ddof=0).to_numpy()
        y_std = y.rolling(DAY, min_periods=min_periods).std(ddof=0).to_numpy()
        moved = (x_std > 0) & (y_std > 0)
        enough = np.isfinite(x_std) & np.isfinite(y_std)  # at least 90% of the pairs
        out[names["corr_24h"]] = np.where(
            moved, np.clip(corr, -1.0, 1.0), np.where(enough, 0.0, np.nan)
        )
    return out


# --- definitions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSet:
    """A versioned feature definition.

    ``names``: its columns; ``warmup_minutes``: the history a row depends on; ``inputs``: the
    candle columns it reads.

    ``evaluate(grid, references, start_ns, wanted)``: the features at the minute positions
    ``wanted`` of the grid (the input columns, one value per minute from ``start_ns``, NaN where
    no candle is), NaN where a window is incomplete; ``references`` are the reference coins'
    candles as given to :func:`compute_features`. ``v1`` computes the whole grid and picks the
    rows; ``v2`` computes only what the rows wanted read (see :func:`_v2_at`), which for a newest
    minute is one phase of the close and a few weeks of minutes instead of the whole warm-up.

    ``dense_minutes`` and ``sample_step`` state which candles a row at ``t`` reads: every minute
    in ``[t - dense_minutes, t]``, and before that only the minutes ``t - k * sample_step``
    (back to ``t - warmup_minutes``). The incremental transform relies on it to read a few
    thousand candles instead of the whole warm-up when a few minutes are new; the unit tests
    check the claim by computing from exactly that thin history.

    ``references``: other symbols whose candles (columns ``reference_inputs``) the rows read,
    every minute in ``[t - reference_minutes, t]`` and nothing older or newer.
    """

    names: tuple[str, ...]
    warmup_minutes: int
    inputs: tuple[str, ...]
    dense_minutes: int
    sample_step: int
    evaluate: Callable[
        [Mapping[str, np.ndarray], Mapping[str, pd.DataFrame], int, np.ndarray],
        dict[str, np.ndarray],
    ]
    references: tuple[str, ...] = ()
    reference_inputs: tuple[str, ...] = ()
    reference_minutes: int = 0


_FEATURE_SETS: dict[str, FeatureSet] = {
    # Dense: the 24 h windows and the minute return at their oldest end (t - 1440 m). Sampled:
    # hourly MAs and EMAs, daily MAs (1440 is a multiple of 60), hourly and 4 h log returns.
    "v1": FeatureSet(
        V1_NAMES,
        WARMUP_MINUTES,
        ("close", "volume"),
        dense_minutes=DAY,
        sample_step=HOUR,
        evaluate=_v1_at,
    ),
    # Dense: the hourly bars of the settled ADX. Sampled: hourly closes (EMAs, MAs, lags) and
    # daily ones, every one a multiple of 60 minutes back.
    "v2": FeatureSet(
        V2_NAMES,
        V2_WARMUP_MINUTES,
        ("high", "low", "close", "volume"),
        dense_minutes=V2_DENSE_MINUTES,
        sample_step=HOUR,
        evaluate=_v2_at,
    ),
}
CROSS_ASSET_BASE = "v2x"


def cross_asset_feature_set(references: Sequence[str]) -> str:
    """The canonical name of ``v2x`` over ``references`` (``v2x`` for :data:`V2X_REFERENCES`)."""
    references = tuple(references)
    _check_references(references, f"{CROSS_ASSET_BASE}:{','.join(references)}")
    if references == V2X_REFERENCES:
        return CROSS_ASSET_BASE
    return f"{CROSS_ASSET_BASE}:{','.join(references)}"


def _check_references(references: tuple[str, ...], name: str) -> None:
    bad = [r for r in references if not (r.isalnum() and r.isupper())]
    if not references or bad or len(set(references)) != len(references):
        raise UnknownFeatureSetError(
            f"Feature set {name!r}: the references must be distinct upper-case symbols, e.g. "
            f"'{CROSS_ASSET_BASE}:BTCUSDT,SOLUSDT' (got {list(references)})."
        )


@lru_cache(maxsize=64)
def _cross_asset(references: tuple[str, ...]) -> FeatureSet:
    base = _FEATURE_SETS["v2"]
    names = base.names + tuple(c for r in references for c in _reference_columns(r))

    def evaluate(
        grid: Mapping[str, np.ndarray],
        candles: Mapping[str, pd.DataFrame],
        start_ns: int,
        wanted: np.ndarray,
    ) -> dict[str, np.ndarray]:
        return _v2_at(grid, candles, start_ns, wanted, references)

    return FeatureSet(
        names,
        base.warmup_minutes,
        base.inputs,
        dense_minutes=base.dense_minutes,
        sample_step=base.sample_step,
        evaluate=evaluate,
        references=references,
        reference_inputs=("close",),
        reference_minutes=REFERENCE_MINUTES,
    )


def feature_set_definition(feature_set: str = "v1") -> FeatureSet:
    """The definition of ``feature_set`` (raises :class:`UnknownFeatureSetError`)."""
    return _feature_set(feature_set)


def _feature_set(feature_set: str) -> FeatureSet:
    known = _FEATURE_SETS.get(feature_set)
    if known is not None:
        return known
    if feature_set == CROSS_ASSET_BASE:
        return _cross_asset(V2X_REFERENCES)
    if feature_set.startswith(f"{CROSS_ASSET_BASE}:"):
        references = tuple(feature_set.split(":", 1)[1].split(","))
        canonical = cross_asset_feature_set(references)
        if canonical != feature_set:
            raise UnknownFeatureSetError(
                f"Feature set {feature_set!r} is the default; call it {canonical!r}."
            )
        return _cross_asset(references)
    names = ", ".join(feature_sets())
    raise UnknownFeatureSetError(
        f"Unknown feature set {feature_set!r}; this pricebot defines: {names} "
        f"(and {CROSS_ASSET_BASE}:<SYMBOL>,<SYMBOL>... for other reference coins)."
    )


def feature_sets() -> list[str]:
    """The feature-set names this version defines (``v2x`` also takes other references)."""
    return sorted([*_FEATURE_SETS, CROSS_ASSET_BASE])


def feature_names(feature_set: str = "v1") -> list[str]:
    """The feature columns of ``feature_set``, in the order they are stored and served."""
    return list(_feature_set(feature_set).names)


def warmup_minutes(feature_set: str = "v1") -> int:
    """Minutes of history before a row that the row's features depend on."""
    return _feature_set(feature_set).warmup_minutes


def input_columns(feature_set: str = "v1") -> list[str]:
    """The candle columns the feature set reads (the transform loads only these)."""
    return list(_feature_set(feature_set).inputs)


def reference_symbols(feature_set: str = "v1") -> list[str]:
    """The other symbols whose candles the feature set reads (none for ``v1`` and ``v2``)."""
    return list(_feature_set(feature_set).references)


def _check_candles(
    candles: pd.DataFrame, inputs: tuple[str, ...], what: str = "candles"
) -> pd.DatetimeIndex:
    missing = [c for c in inputs if c not in candles.columns]
    if missing:
        raise FeatureInputError(
            f"{what} lack column(s) {missing}; expected a frame like pricebot.candles.load_candles"
            " returns (index open_time, columns open high low close volume ...)."
        )
    index = candles.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise FeatureInputError(
            f"{what} need a timezone-aware DatetimeIndex of open times (UTC); got "
            f"{type(index).__name__}{'' if getattr(index, 'tz', None) else ' without a timezone'}."
        )
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise FeatureInputError(
            f"{what}: open times must be strictly increasing (sort and de-duplicate them first)."
        )
    index = index.tz_convert("UTC").as_unit("ns")
    off_minute = np.flatnonzero(index.asi8 % MINUTE_NS)
    if len(off_minute):
        raise FeatureInputError(
            f"{what}: open time {index[off_minute[0]].isoformat()} is not on a minute; "
            "the features need 1m candles."
        )
    return index


_PRICES = ("open", "high", "low", "close")


def _on_grid(
    candles: pd.DataFrame,
    columns: tuple[str, ...],
    positions: np.ndarray,
    size: int,
    what: str,
) -> dict[str, np.ndarray]:
    """``columns`` of ``candles`` laid on the minute grid (NaN where no candle is)."""
    grid: dict[str, np.ndarray] = {}
    for column in columns:
        values = candles[column].to_numpy(dtype=float)
        if column in _PRICES and not np.all(values > 0):
            raise FeatureInputError(
                f"{what}: {column} prices must be positive numbers (got zero, negative or NaN)."
            )
        grid[column] = np.full(size, np.nan)
        grid[column][positions] = values
    return grid


def _reference_grids(
    order: tuple[str, ...],
    references: Mapping[str, pd.DataFrame],
    start_ns: int,
    size: int,
) -> dict[str, dict[str, np.ndarray]]:
    """Each reference's close on the grid of ``size`` minutes from ``start_ns``."""
    grids: dict[str, dict[str, np.ndarray]] = {}
    for reference in order:
        candles = references[reference]
        what = f"reference {reference} candles"
        if len(candles) == 0:
            grids[reference] = {"close": np.full(size, np.nan)}
            continue
        stamps = _check_candles(candles, ("close",), what).asi8
        positions = (stamps - start_ns) // MINUTE_NS
        # Candles after the coin's last minute are its future, before the grid of no use.
        inside = (positions >= 0) & (positions < size)
        grids[reference] = _on_grid(candles.loc[inside], ("close",), positions[inside], size, what)
    return grids


def compute_features(
    candles: pd.DataFrame,
    feature_set: str = "v1",
    references: Mapping[str, pd.DataFrame] | None = None,
    since: datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Features of every stored candle whose windows are complete.

    ``candles``: index open_time (tz-aware), columns at least :func:`input_columns` (as
    :func:`pricebot.candles.load_candles` returns). ``references``: for a cross-asset set, each
    of :func:`reference_symbols`' candles in the same form (their own rows included when the coin
    is one of them); candles newer than the coin's last are ignored. ``since``: only rows at or
    after it are wanted (the incremental transform's new minutes), which lets ``v2`` compute
    only what those rows read. The result is indexed by open_time (UTC) with column ``close``
    followed by :func:`feature_names` (float64); rows without a full window or with a non-finite
    feature are left out, never filled.
    """
    definition = _feature_set(feature_set)
    names, warmup = definition.names, definition.warmup_minutes
    columns = ["close", *names]
    if len(candles) == 0:
        empty = pd.DatetimeIndex([], tz="UTC", name="open_time")
        return pd.DataFrame({c: np.array([], dtype=float) for c in columns}, index=empty)
    index = _check_candles(candles, definition.inputs)
    for reference in definition.references:
        if reference not in (references or {}):
            raise FeatureInputError(
                f"feature set {feature_set!r} reads the candles of {reference}: pass them as "
                f"references={{{reference!r}: <its candles>}} (pricebot.cross_asset loads them)."
            )

    stamps = index.asi8
    positions = (stamps - stamps[0]) // MINUTE_NS
    size = int(positions[-1]) + 1
    grid = _on_grid(candles, definition.inputs, positions, size, "candles")
    close = grid["close"]
    first = 0
    if since is not None:
        if pd.Timestamp(since).tz is None:
            raise FeatureInputError(
                f"since must be a timezone-aware moment (UTC), got {since!r}; "
                "e.g. datetime(2026, 1, 1, tzinfo=UTC)."
            )
        since_ns = pd.Timestamp(since).tz_convert("UTC").as_unit("ns").value
        first = max(0, -(-(since_ns - int(stamps[0])) // MINUTE_NS))
    # The minutes that may become rows: stored, wanted, past the warm-up.
    wanted = np.arange(min(max(first, warmup), size), size)
    wanted = wanted[np.isfinite(close[wanted])]

    values = definition.evaluate(grid, references or {}, int(stamps[0]), wanted)
    keep = np.ones(len(wanted), dtype=bool)
    for name in names:
        keep &= np.isfinite(values[name])
    rows = wanted[keep]

    # One float64 block, column-major: close then the features. Callers that want the raw
    # matrix (the binary COPY writer) get it from frame.to_numpy() without a copy.
    block = np.empty((len(names) + 1, len(rows)))
    block[0] = close[rows]
    for i, name in enumerate(names, start=1):
        block[i] = values[name][keep]
    open_time = pd.DatetimeIndex(
        (stamps[0] + rows.astype(np.int64) * MINUTE_NS).view("datetime64[ns]"), name="open_time"
    ).tz_localize("UTC")
    frame = pd.DataFrame(block.T, index=open_time, columns=["close", *names], copy=False)
    return frame
