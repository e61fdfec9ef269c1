"""The synthetic price process: deterministic, consistent candles that look like a market."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pricebot_exchange.synthetic import (
    ANCHOR_DAY,
    MINUTES_PER_DAY,
    SyntheticMarket,
    ar1,
    day_rows,
)

DAYS = 60  # 86,400 minutes: enough for the statistical checks to be far from their thresholds
FIRST = ANCHOR_DAY + 20


def returns(market: SyntheticMarket, days: int = DAYS) -> np.ndarray:
    closes = market.closes(FIRST * MINUTES_PER_DAY, (FIRST + days) * MINUTES_PER_DAY)
    return np.diff(np.log(closes))


def autocorrelation(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))


def test_ar1_matches_the_recursion() -> None:
    # Given innovations and a coefficient close to one (long chunks)
    e = np.random.default_rng(0).standard_normal(5_000)
    phi = math.exp(-1 / 300)
    # When the vectorised AR(1) runs
    fast = ar1(e, phi, start=0.7)
    # Then it equals x[t] = phi * x[t-1] + e[t] computed one step at a time
    slow, previous = np.empty_like(e), 0.7
    for t, value in enumerate(e):
        previous = phi * previous + value
        slow[t] = previous
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)


def test_a_day_is_the_same_whoever_generates_it_and_when() -> None:
    # Given two independent market objects with the same seed, symbol and mode
    first, second = SyntheticMarket(3, "ETHUSDT"), SyntheticMarket(3, "ETHUSDT")
    # When they generate the same day, in a different order relative to other days
    second.day(FIRST + 5)
    a, b = first.day(FIRST), second.day(FIRST)
    # Then the candles are identical
    for name in ("open", "high", "low", "close", "volume", "trades", "taker_base"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_another_seed_gives_another_market() -> None:
    a = SyntheticMarket(3, "ETHUSDT").day(FIRST)
    b = SyntheticMarket(4, "ETHUSDT").day(FIRST)
    assert not np.array_equal(a.close, b.close)


@pytest.mark.parametrize("mode", ["market", "swinging"])
def test_each_candle_opens_at_the_previous_close_across_midnight(mode: str) -> None:
    # Given consecutive days of one symbol
    market = SyntheticMarket(7, "BTCUSDT", mode)  # type: ignore[arg-type]
    days = [market.day(FIRST + i) for i in range(3)]
    # Then within and across days the open is the previous minute's close
    opens = np.concatenate([d.open for d in days])
    closes = np.concatenate([d.close for d in days])
    np.testing.assert_array_equal(opens[1:], closes[:-1])


@pytest.mark.parametrize("mode", ["market", "random_walk"])
def test_high_and_low_bound_open_and_close(mode: str) -> None:
    market = SyntheticMarket(7, "ADAUSDT", mode)  # type: ignore[arg-type]
    for i in range(10):
        d = market.day(FIRST + i)
        assert np.all(d.low >= 1)
        assert np.all(d.low <= np.minimum(d.open, d.close))
        assert np.all(d.high >= np.maximum(d.open, d.close))
        assert np.all(d.taker_base <= d.volume)
        assert np.all(d.trades >= 1)


@pytest.mark.parametrize(("symbol", "decimals"), [("BTCUSDT", 2), ("ADAUSDT", 5), ("SHIBUSDT", 8)])
def test_prices_are_strings_with_the_symbols_decimals(symbol: str, decimals: int) -> None:
    # Given a day of candles formatted for the wire
    market = SyntheticMarket(7, symbol)
    blob, offsets = day_rows(market, market.day(FIRST))
    # When the first row is read back
    import json

    row = json.loads(blob[offsets[0] : offsets[1] - 1])
    # Then the prices are strings with exactly the symbol's number of decimals
    assert len(row) == 12
    for price in row[1:5]:
        assert isinstance(price, str)
        assert len(price.split(".")[1]) == decimals
    assert row[6] == row[0] + 59_999


def test_starting_levels_are_plausible_per_symbol() -> None:
    btc = SyntheticMarket(7, "BTCUSDT").day(ANCHOR_DAY).close[0] / 100
    ada = SyntheticMarket(7, "ADAUSDT").day(ANCHOR_DAY).close[0] / 100_000
    assert 20_000 < btc < 300_000
    assert 0.05 < ada < 2


def test_market_returns_have_heavier_tails_than_normal() -> None:
    r = returns(SyntheticMarket(11, "BTCUSDT"))
    z = r - r.mean()
    kurtosis = float(np.mean(z**4) / np.mean(z**2) ** 2)
    assert kurtosis > 3 * 1.5  # a normal has 3


def test_market_volatility_clusters() -> None:
    # Absolute returns are positively autocorrelated at one minute and at half an hour
    r = np.abs(returns(SyntheticMarket(11, "BTCUSDT")))
    noise = 4 / math.sqrt(len(r))
    assert autocorrelation(r, 1) > 10 * noise
    assert autocorrelation(r, 30) > 5 * noise


def test_market_volume_moves_with_volatility() -> None:
    market = SyntheticMarket(11, "ETHUSDT")
    days = [market.day(FIRST + i) for i in range(DAYS // 2)]
    volume = np.concatenate([d.volume for d in days]).astype(float)
    size = np.abs(np.concatenate([d.log_close - d.log_open for d in days]))
    assert np.corrcoef(np.log(volume), np.log(size + 1e-12))[0, 1] > 0.2


def test_random_walk_returns_have_no_lag_one_autocorrelation() -> None:
    r = returns(SyntheticMarket(11, "BTCUSDT", "random_walk"))
    assert abs(autocorrelation(r, 1)) < 4 / math.sqrt(len(r))


def test_random_walk_volatility_does_not_cluster() -> None:
    r = np.abs(returns(SyntheticMarket(11, "BTCUSDT", "random_walk")))
    assert abs(autocorrelation(r, 30)) < 4 / math.sqrt(len(r))


def test_market_drift_lets_the_past_day_say_a_little_about_the_next() -> None:
    # Given a year of hourly closes for a few symbols, in both modes
    def next_day_correlation(mode: str) -> float:
        values = []
        for symbol in ("BTCUSDT", "ETHUSDT", "ADAUSDT"):
            market = SyntheticMarket(5, symbol, mode)  # type: ignore[arg-type]
            start = (ANCHOR_DAY - 365) * MINUTES_PER_DAY
            hourly = np.log(market.closes(start, start + 365 * MINUTES_PER_DAY))[::60]
            past, future = hourly[24:-24] - hourly[:-48], hourly[48:] - hourly[24:-24]
            values.append(np.corrcoef(past, future)[0, 1])
        return float(np.mean(values))

    # Then the market's latent drift shows as a weak momentum the random walk does not have
    market, walk = next_day_correlation("market"), next_day_correlation("random_walk")
    assert 0.05 < market < 0.4
    assert abs(walk) < 0.08


def test_swinging_swings_reverse_where_market_and_random_walk_do_not() -> None:
    # Given 60 days of hourly log returns of one symbol in each mode
    def correlation_with_three_hours_later(mode: str) -> float:
        market = SyntheticMarket(7, "BTCUSDT", mode)  # type: ignore[arg-type]
        start = FIRST * MINUTES_PER_DAY
        hourly = np.diff(np.log(market.closes(start, start + DAYS * MINUTES_PER_DAY))[::60])
        return float(np.corrcoef(hourly[:-3], hourly[3:])[0, 1])

    # Then the swinging market's 6-hour swing turns an hour's move around three hours later,
    # strongly; the other modes' hourly returns are (nearly) unrelated three hours apart
    assert correlation_with_three_hours_later("swinging") < -0.3
    assert abs(correlation_with_three_hours_later("market")) < 0.1
    assert abs(correlation_with_three_hours_later("random_walk")) < 0.1


@pytest.mark.parametrize("symbol", ["BTCUSDT", "DOGEUSDT", "SHIBUSDT"])
def test_wire_rows_carry_exactly_the_generated_ticks(symbol: str) -> None:
    # Given a day of candles and its formatted rows (DOGE and SHIB volumes have no decimals)
    import json
    from decimal import Decimal

    market = SyntheticMarket(2, symbol)
    block = market.day(FIRST)
    blob, offsets = day_rows(market, block)
    rows = json.loads(b"[" + blob[:-1] + b"]")
    # Then every price and volume reads back as the generated integer ticks and lots
    assert len(rows) == MINUTES_PER_DAY
    assert offsets[-1] == len(blob)
    price, lot = market.price_scale, market.volume_scale
    for k in (0, 1, 777, MINUTES_PER_DAY - 1):
        row = rows[k]
        ticks = [int(block.open[k]), int(block.high[k]), int(block.low[k]), int(block.close[k])]
        assert [Decimal(v) * price for v in row[1:5]] == ticks
        assert Decimal(row[5]) * lot == int(block.volume[k])
        assert Decimal(row[9]) * lot == int(block.taker_base[k])
        assert row[8] == int(block.trades[k])
        assert row[0] == (FIRST * MINUTES_PER_DAY + k) * 60_000
