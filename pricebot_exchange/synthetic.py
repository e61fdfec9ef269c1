"""A seeded synthetic price process: one-minute candles for the simulated exchange.

Every candle is a pure function of ``(seed, symbol, mode, minute)``: whichever pages are asked
for, in whatever order, the same minute always gets the same candle. The process is built so that
any day can be generated on its own, quickly, without replaying history from an origin:

* A **skeleton** per symbol, generated once over a fixed span of days (2016–2036) in a few
  vectorised passes: a daily log-volatility level (AR(1) over days), an hourly drift (AR(1) over
  hours) and, per day, the total of the day's noise returns. Its cumulative sum gives the log
  price at the start of every day, anchored at :data:`ANCHOR_DAY` to a plausible level per
  symbol.
* A **day block** of 1,440 minutes, seeded from ``(seed, symbol, day)``: Student-t innovations
  (heavy tails) scaled by a volatility that is the daily level plus a fast intraday log-volatility
  AR(1) (volatility clustering at the scale of tens of minutes; it runs over the previous day's
  innovations first, so it is continuous across midnight). The day's noise is then bridged to the
  skeleton's daily total (the difference spread over the minutes in proportion to their
  variance, which keeps the returns uncorrelated), so the block ends where the next day's
  block starts.

Volume and trade count grow with volatility and with the size of the minute's move; high and low
extend past open and close by an excursion proportional to volatility; prices are rounded to a
tick per symbol (two decimals for BTCUSDT, eight for very small coins).

**In ``market`` the drift is the one piece of predictable structure**, there on purpose: a latent
AR(1) at the hourly scale (half-life about a day, standard deviation 1.5% of the per-minute
volatility) adds to every minute's expected return. Trend features (moving-average gaps over
hours and days) can pick up a little of it, which is what lets the offline demo show a model
learning something real rather than nothing. It is weak: the correlation between one day's
return and the next is about 0.14 on average (0.03 to 0.28 across seeds and symbols over a
year; about 0 in ``random_walk``), invisible minute to minute. ``mode="random_walk"``
switches it off together with the volatility clustering: iid Student-t returns with constant
scale, in which no model can find skill (the honesty test).
Coins priced in millionths (SHIBUSDT, PEPEUSDT) move in whole ticks, which gives their minute
returns the negative lag-1 autocorrelation they have on the real exchange; the others' ticks
are far below their minute volatility.

``mode="swinging"`` exists **so the offline demo can show a promotion**: it is the ``market``
process plus a **swing**, trends of a few hours that reverse. The log price is displaced from
its path by a latent damped cycle (an AR(2) over hours with a period of
:data:`SWING_PERIOD_HOURS`, damping :data:`SWING_DAMPING` per hour and a standard deviation of
:data:`SWING_SD` minute volatilities, about 2% for BTCUSDT), interpolated per minute. A swing is
a level, not a return, so what goes up with it comes back down; where the price is in the
cycle shows in the v1 features of the last hours (``logret_1h``/``4h``, ``close_minmax_24h``,
RSI, MACD, the hourly moving-average gaps). It is far stronger and more regular than anything
in a real market (out-of-sample directional accuracy of about 0.75 at one hour, pool values
of +10% to +70% in two days): its one job is that, over the four weeks of rows the demo
backfills, a model *can* find skill that the baselines (one-hour momentum, the recent mean,
cash, buy-and-hold) do not have, and pass the same strict promotion gate as everywhere. Real
data or a random walk get the same gate and usually no promotion. Measured by
``benchmarks/bench_gate.py`` (the gate decides on a held-out window that neither tuning nor
selection saw, against every baseline and cash, with a bootstrap margin): promoted in 95% of
runs with the demo's 28 days of rows and 70% with 14, while none of 120 no-signal runs was.
A persistent drift instead (0.08 to 0.2 minute volatilities, half-life 2 to 24 h) was not
enough: the momentum baseline follows a drift as well as any model does, and a long-only pool
can at best tie cash over a falling fold.
All modes share all of the code below; only :class:`ProcessParams` differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

import numpy as np

MarketMode = Literal["market", "swinging", "random_walk"]

MINUTES_PER_DAY = 1440
MINUTE_MS = 60_000
DAY_MS = MINUTES_PER_DAY * MINUTE_MS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_DAY = (datetime(2016, 1, 1, tzinfo=UTC) - _EPOCH).days
LAST_DAY = (datetime(2036, 1, 1, tzinfo=UTC) - _EPOCH).days  # exclusive
ANCHOR_DAY = (datetime(2026, 1, 1, tzinfo=UTC) - _EPOCH).days
# The "swinging" market's swing (see the module docstring): a damped 6-hour cycle of the log
# price around its path, strong enough for a model to learn from the demo's four weeks of rows.
SWING_SD = 45.0  # stationary standard deviation, in minute volatilities
SWING_PERIOD_HOURS = 6.0
SWING_DAMPING = 0.9  # per hour, between shocks
STUDENT_NU = 5.0  # degrees of freedom of the minute innovations: finite variance, heavy tails


@dataclass(frozen=True)
class SymbolProfile:
    """What makes one symbol look like itself: price level, tick, lot, activity."""

    price: float  # price level on ANCHOR_DAY (2026-01-01)
    price_decimals: int
    volume_decimals: int
    sigma: float  # typical per-minute volatility of log returns
    volume: float  # typical base-asset volume per minute
    trades: float  # typical trades per minute


_KNOWN: dict[str, SymbolProfile] = {
    "BTCUSDT": SymbolProfile(87_000.0, 2, 5, 0.00045, 12.0, 1_500.0),
    "ETHUSDT": SymbolProfile(2_950.0, 2, 4, 0.00060, 250.0, 900.0),
    "BNBUSDT": SymbolProfile(860.0, 2, 3, 0.00055, 60.0, 250.0),
    "SOLUSDT": SymbolProfile(125.0, 2, 3, 0.00075, 1_400.0, 500.0),
    "XRPUSDT": SymbolProfile(1.85, 4, 1, 0.00070, 90_000.0, 350.0),
    "ADAUSDT": SymbolProfile(0.35, 5, 1, 0.00080, 150_000.0, 150.0),
    "DOGEUSDT": SymbolProfile(0.125, 5, 0, 0.00085, 900_000.0, 300.0),
    "AVAXUSDT": SymbolProfile(12.0, 2, 2, 0.00085, 4_000.0, 120.0),
    "DOTUSDT": SymbolProfile(1.8, 3, 2, 0.00085, 20_000.0, 90.0),
    "LINKUSDT": SymbolProfile(12.5, 2, 2, 0.00080, 5_000.0, 110.0),
    "LTCUSDT": SymbolProfile(77.0, 2, 3, 0.00070, 600.0, 90.0),
    "TRXUSDT": SymbolProfile(0.28, 5, 1, 0.00045, 400_000.0, 60.0),
    "SHIBUSDT": SymbolProfile(0.0000072, 8, 0, 0.00090, 9.0e9, 80.0),
    "PEPEUSDT": SymbolProfile(0.0000042, 8, 0, 0.00110, 3.0e10, 200.0),
}


def _decimals_for(price: float) -> int:
    """A tick that gives four to six significant digits, as Binance's price filters do."""
    return min(8, max(2, 4 - math.floor(math.log10(price))))


def _key(*parts: str) -> int:
    """A stable 64-bit integer for seeding (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=256)
def symbol_profile(symbol: str) -> SymbolProfile:
    """The profile of a known symbol, or a plausible one derived from the name."""
    if symbol in _KNOWN:
        return _KNOWN[symbol]
    rng = np.random.default_rng(_key("profile", symbol))
    price = float(10 ** rng.uniform(-3, 3))
    sigma = float(rng.uniform(0.0006, 0.0011))
    decimals = _decimals_for(price)
    notional = float(10 ** rng.uniform(3.5, 5))  # quote currency traded per minute
    return SymbolProfile(price, decimals, max(0, 6 - decimals), sigma, notional / price, 100.0)


@dataclass(frozen=True)
class ProcessParams:
    """The knobs that distinguish a market from an iid random walk."""

    daily_vol_phi: float  # AR(1) coefficient of the daily log-volatility level
    daily_vol_sd: float  # its stationary standard deviation
    fast_vol_phi: float  # AR(1) coefficient (per minute) of the intraday log-volatility
    fast_vol_sd: float  # its stationary standard deviation
    drift_phi: float  # AR(1) coefficient (per hour) of the latent drift
    drift_sd: float  # its stationary standard deviation, in units of the minute volatility
    volume_vol_beta: float  # elasticity of volume to volatility
    # The swing, a level added to the log price (it comes back, unlike the drift): an AR(1)
    # over hours with coefficient swing_phi, or with swing_period_hours > 0 a damped cycle of
    # that period (AR(2)) with damping swing_phi per hour; swing_sd = 0 means none.
    swing_phi: float = 0.0
    swing_sd: float = 0.0  # its standard deviation, in units of the minute volatility
    swing_period_hours: float = 0.0


PARAMS: dict[str, ProcessParams] = {
    "market": ProcessParams(
        daily_vol_phi=0.9,
        daily_vol_sd=0.3,
        fast_vol_phi=math.exp(-1 / 45),
        fast_vol_sd=0.45,
        drift_phi=0.5 ** (1 / 24),
        drift_sd=0.015,
        volume_vol_beta=1.0,
    ),
    "random_walk": ProcessParams(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}
PARAMS["swinging"] = dataclasses.replace(
    PARAMS["market"],
    swing_phi=SWING_DAMPING,
    swing_sd=SWING_SD,
    swing_period_hours=SWING_PERIOD_HOURS,
)


def ar1(innovations: np.ndarray, phi: float, start: float = 0.0) -> np.ndarray:
    """x[t] = phi * x[t-1] + e[t] (x[-1] = start), without a Python loop over elements.

    Within a chunk x[t] = phi**t * (phi * start + cumsum(e[s] * phi**-s)); chunks are short
    enough that phi**-s stays small (no overflow, no lost precision), so the loop runs over
    chunks only.
    """
    if not 0.0 <= phi < 1.0:
        raise ValueError(f"ar1 needs a stationary coefficient 0 <= phi < 1, got {phi}")
    n = len(innovations)
    if phi == 0.0 or n == 0:
        return innovations.astype(float, copy=True)
    chunk = int(max(1, min(n, 10.0 / -math.log(phi))))
    steps = np.arange(chunk)
    powers, inverse = phi**steps, phi ** (-steps.astype(float))
    out = np.empty(n)
    previous = start
    for first in range(0, n, chunk):
        segment = innovations[first : first + chunk]
        m = len(segment)
        block = powers[:m] * (phi * previous + np.cumsum(segment * inverse[:m]))
        out[first : first + m] = block
        previous = block[-1]
    return out


def _damped_cycle(innovations: np.ndarray, damping: float, period: float) -> np.ndarray:
    """AR(2) x[t] = 2 r cos(w) x[t-1] - r^2 x[t-2] + e[t]: a noisy oscillation of ``period``
    steps whose amplitude decays by ``r = damping`` per step between shocks."""
    a1, a2 = 2.0 * damping * math.cos(2.0 * math.pi / period), -damping * damping
    out = np.empty(len(innovations))
    x1 = x2 = 0.0
    for t, e in enumerate(innovations.tolist()):
        x1, x2 = a1 * x1 + a2 * x2 + e, x1
        out[t] = x1
    return out


def _stationary_innovations(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    return rng.standard_normal(n) * sd * math.sqrt(1.0 - phi * phi)


@dataclass
class DayBlock:
    """The 1,440 closed candles of one UTC day, as integer ticks and floats."""

    day: int
    log_open: np.ndarray
    log_close: np.ndarray
    sigma: np.ndarray
    open: np.ndarray  # ticks (int64)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # lots (int64)
    quote_volume: np.ndarray  # float
    trades: np.ndarray  # int64
    taker_base: np.ndarray  # lots (int64)
    taker_quote: np.ndarray  # float


class SyntheticMarket:
    """The candles of one symbol under one seed and mode (a deterministic function of minute)."""

    def __init__(self, seed: int, symbol: str, mode: MarketMode = "market") -> None:
        if mode not in PARAMS:
            raise ValueError(f"unknown market mode {mode!r}; use one of {sorted(PARAMS)}")
        self.seed, self.symbol, self.mode = seed, symbol, mode
        self.profile = symbol_profile(symbol)
        self.params = PARAMS[mode]
        self.price_scale = 10**self.profile.price_decimals
        self.volume_scale = 10**self.profile.volume_decimals
        self._build_skeleton()

    def _rng(self, *parts: object) -> np.random.Generator:
        return np.random.default_rng(
            [self.seed & 0xFFFFFFFF, _key(self.symbol), *(int(p) & 0xFFFFFFFF for p in parts)]
        )

    def _build_skeleton(self) -> None:
        p, prof = self.params, self.profile
        days = LAST_DAY - FIRST_DAY + 1  # one extra day so day d can interpolate to d + 1
        rng = self._rng(1)
        self._daily_vol = ar1(
            _stationary_innovations(rng, days, p.daily_vol_phi, p.daily_vol_sd), p.daily_vol_phi
        )
        hours = days * 24 + 1
        rng = self._rng(2)
        drift = ar1(_stationary_innovations(rng, hours, p.drift_phi, p.drift_sd), p.drift_phi)
        self._drift = drift * prof.sigma
        # A transient swing of the log price around its path (a level, not a return: it comes
        # back), hourly values interpolated per minute; zero unless the mode has one.
        if p.swing_sd > 0.0:
            rng = self._rng(6)
            if p.swing_period_hours > 0.0:
                swing = _damped_cycle(rng.standard_normal(hours), p.swing_phi, p.swing_period_hours)
                swing *= p.swing_sd / swing.std()
            else:
                innovations = _stationary_innovations(rng, hours, p.swing_phi, p.swing_sd)
                swing = ar1(innovations, p.swing_phi)
            self._swing = swing * prof.sigma
        else:
            self._swing = np.zeros(hours)
        # Drift summed over each day's minutes under linear interpolation between hourly values:
        # minutes 60i..60i+59 sum to 60 a_i + (a_{i+1} - a_i) * 59 / 2.
        a = self._drift
        per_hour = 60.0 * a[:-1] + (a[1:] - a[:-1]) * 59.0 / 2.0
        drift_per_day = per_hour.reshape(days, 24).sum(axis=1)
        # Expected variance of a day's noise given its volatility level (fast part averaged out).
        level = 0.5 * (self._daily_vol[:-1] + self._daily_vol[1:])
        variance = MINUTES_PER_DAY * prof.sigma**2 * np.exp(2 * level - 2 * p.daily_vol_sd**2)
        rng = self._rng(3)
        noise_total = rng.standard_normal(days - 1) * np.sqrt(variance)
        self._noise_total = noise_total
        steps = drift_per_day[:-1] + noise_total
        cumulative = np.concatenate([[0.0], np.cumsum(steps)])
        self._day_start = math.log(prof.price) + cumulative - cumulative[ANCHOR_DAY - FIRST_DAY]

    def _check_day(self, day: int) -> int:
        if not FIRST_DAY < day < LAST_DAY:
            raise ValueError(
                f"the synthetic market covers 2016-01-02..2035-12-31; day {day} is outside it"
            )
        return day - FIRST_DAY

    def _fast_innovations(self, day: int) -> np.ndarray:
        p = self.params
        return _stationary_innovations(
            self._rng(4, day), MINUTES_PER_DAY, p.fast_vol_phi, p.fast_vol_sd
        )

    def day(self, day: int) -> DayBlock:
        """Generate the closed candles of ``day`` (days since 1970-01-01, UTC)."""
        i, p, prof = self._check_day(day), self.params, self.profile
        frac = np.arange(MINUTES_PER_DAY) / MINUTES_PER_DAY
        slow = self._daily_vol[i] + (self._daily_vol[i + 1] - self._daily_vol[i]) * frac
        if p.fast_vol_phi:
            burn_in = np.concatenate([self._fast_innovations(day - 1), self._fast_innovations(day)])
            fast = ar1(burn_in, p.fast_vol_phi)[MINUTES_PER_DAY:]
        else:
            fast = np.zeros(MINUTES_PER_DAY)
        log_vol = slow + fast
        sigma = prof.sigma * np.exp(log_vol - (p.daily_vol_sd**2 + p.fast_vol_sd**2))

        rng = self._rng(5, day)
        t = rng.standard_t(STUDENT_NU, MINUTES_PER_DAY) / math.sqrt(STUDENT_NU / (STUDENT_NU - 2))
        noise = sigma * t
        weights = sigma**2 / np.sum(sigma**2)
        noise -= (noise.sum() - self._noise_total[i]) * weights  # bridge to the skeleton

        hour0 = i * 24
        hourly = self._drift[hour0 : hour0 + 25]
        minute_in_hour = np.arange(MINUTES_PER_DAY) % 60 / 60.0
        h = np.arange(MINUTES_PER_DAY) // 60
        drift = hourly[h] + (hourly[h + 1] - hourly[h]) * minute_in_hour

        # The swing at each minute's close (minute k closes k + 1 minutes into the day); the
        # next day starts from the swing's value at midnight, so days join seamlessly.
        swing = np.interp(
            np.arange(1, MINUTES_PER_DAY + 1) / 60.0,
            np.arange(25.0),
            self._swing[hour0 : hour0 + 25],
        )
        log_close = self._day_start[i] + np.cumsum(drift + noise) + swing
        log_open = np.concatenate([[self._day_start[i] + self._swing[hour0]], log_close[:-1]])
        open_ = self._ticks(log_open)
        close = self._ticks(log_close)
        upper = np.abs(rng.standard_normal(MINUTES_PER_DAY)) * sigma * 0.6
        lower = np.abs(rng.standard_normal(MINUTES_PER_DAY)) * sigma * 0.6
        high = np.maximum(
            self._ticks(np.maximum(log_open, log_close) + upper), np.maximum(open_, close)
        )
        low = np.minimum(
            self._ticks(np.minimum(log_open, log_close) - lower), np.minimum(open_, close)
        )

        activity = np.exp(p.volume_vol_beta * log_vol + 0.35 * rng.standard_normal(MINUTES_PER_DAY))
        activity *= 0.6 + 0.4 * np.abs(t)
        volume_units = prof.volume * activity
        volume = np.maximum(np.rint(volume_units * self.volume_scale).astype(np.int64), 1)
        trades = np.maximum(
            np.rint(prof.trades * activity * np.exp(0.2 * rng.standard_normal(MINUTES_PER_DAY))),
            1,
        ).astype(np.int64)
        buy_share = np.clip(
            0.5 + 0.2 * np.tanh(noise / sigma) + 0.05 * rng.standard_normal(MINUTES_PER_DAY),
            0.02,
            0.98,
        )
        taker_base = np.rint(volume * buy_share).astype(np.int64)
        mid = np.exp(0.5 * (log_open + log_close))
        return DayBlock(
            day=day,
            log_open=log_open,
            log_close=log_close,
            sigma=sigma,
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=volume,
            quote_volume=volume / self.volume_scale * mid,
            trades=trades,
            taker_base=taker_base,
            taker_quote=taker_base / self.volume_scale * mid,
        )

    def _ticks(self, log_price: np.ndarray) -> np.ndarray:
        return np.maximum(np.rint(np.exp(log_price) * self.price_scale).astype(np.int64), 1)

    def closes(self, first_minute: int, last_minute: int) -> np.ndarray:
        """Close prices (floats) of minutes ``first_minute..last_minute - 1`` (for analysis)."""
        days = range(first_minute // MINUTES_PER_DAY, (last_minute - 1) // MINUTES_PER_DAY + 1)
        closes = np.concatenate([self.day(d).close for d in days]) / self.price_scale
        offset = first_minute - days[0] * MINUTES_PER_DAY
        return closes[offset : offset + last_minute - first_minute]


def format_ticks(values: np.ndarray, decimals: int) -> list[str]:
    """Integer ticks as fixed-point strings (``123456, 2 -> "1234.56"``), exactly."""
    if decimals == 0:
        return [str(v) for v in values.tolist()]
    whole, part = np.divmod(values, 10**decimals)
    return [f"{w}.{f:0{decimals}d}" for w, f in zip(whole.tolist(), part.tolist(), strict=True)]


def day_rows(market: SyntheticMarket, block: DayBlock) -> tuple[bytes, np.ndarray]:
    """The day's candles as JSON rows joined by commas, plus each row's byte offset.

    Row ``k`` is ``blob[offsets[k]:offsets[k + 1] - 1]`` (the ``- 1`` drops its comma), so a page
    is a slice and a join: no per-request formatting.
    """
    prof = market.profile
    open_ms = (block.day * MINUTES_PER_DAY + np.arange(MINUTES_PER_DAY)) * MINUTE_MS
    quote = np.rint(block.quote_volume * 1e8).astype(np.int64)
    taker_quote = np.rint(block.taker_quote * 1e8).astype(np.int64)
    fields: list[tuple[np.ndarray, int | None]] = [
        (open_ms, None),
        (block.open, prof.price_decimals),
        (block.high, prof.price_decimals),
        (block.low, prof.price_decimals),
        (block.close, prof.price_decimals),
        (block.volume, prof.volume_decimals),
        (open_ms + MINUTE_MS - 1, None),
        (quote, 8),
        (block.trades, None),
        (block.taker_base, prof.volume_decimals),
        (taker_quote, 8),
    ]
    # One %-format per row over integer columns (fixed point as whole.fraction): about twice as
    # fast as formatting each value on its own, which is what a cold day cache costs.
    parts, columns = [], []
    for values, decimals in fields:
        if decimals is None:
            parts.append("%d")
            columns.append(values.tolist())
        elif decimals == 0:
            parts.append('"%d"')
            columns.append(values.tolist())
        else:
            whole, fraction = np.divmod(values, 10**decimals)
            parts.append(f'"%d.%0{decimals}d"')
            columns += [whole.tolist(), fraction.tolist()]
    template = "[" + ",".join(parts) + ',"0"],'
    rows = list(map(template.__mod__, zip(*columns, strict=True)))
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return "".join(rows).encode(), offsets


def partial_row(market: SyntheticMarket, block: DayBlock, minute: int, elapsed: float) -> list:
    """The still-open candle of ``minute``, ``elapsed`` (0..1) of the way through.

    It moves from its open towards the final close as the minute passes and its volume grows;
    at ``elapsed=1`` it would be the closed candle. A deterministic function of
    ``(minute, elapsed)``, like everything else here.
    """
    k = minute - block.day * MINUTES_PER_DAY
    prof, f = market.profile, min(max(elapsed, 0.0), 1.0)
    log_open = float(block.log_open[k])
    log_now = log_open + f * (float(block.log_close[k]) - log_open)
    open_, final_open, final_close = (int(block.open[k]), int(block.open[k]), int(block.close[k]))
    close = max(round(math.exp(log_now) * market.price_scale), 1)
    # The wicks grow towards the final candle's as the minute goes on.
    up = int(block.high[k]) - max(final_open, final_close)
    down = min(final_open, final_close) - int(block.low[k])
    high = max(open_, close) + round(up * math.sqrt(f))
    low = max(min(open_, close) - round(down * math.sqrt(f)), 1)
    volume = round(float(block.volume[k]) * f)
    taker = round(float(block.taker_base[k]) * f)
    mid = math.exp(0.5 * (log_open + log_now))
    prices = format_ticks(np.array([open_, high, low, close]), prof.price_decimals)
    volumes = format_ticks(np.array([volume, taker]), prof.volume_decimals)
    open_ms = minute * MINUTE_MS
    return [
        open_ms,
        *prices,
        volumes[0],
        open_ms + MINUTE_MS - 1,
        f"{volume / market.volume_scale * mid:.8f}",
        round(float(block.trades[k]) * f),
        volumes[1],
        f"{taker / market.volume_scale * mid:.8f}",
        "0",
    ]


@lru_cache(maxsize=64)  # a skeleton is about 1.6 MB
def market_for(seed: int, symbol: str, mode: MarketMode) -> SyntheticMarket:
    """The (cached) market of one symbol: its skeleton is built once per process."""
    return SyntheticMarket(seed, symbol, mode)
