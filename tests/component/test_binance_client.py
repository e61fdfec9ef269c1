"""The Binance REST client against the simulated exchange over real HTTP: retries, rate limits,
typed errors. Pauses go through an injected ``sleep`` that records them (and really waits only
where the exchange's clock must move on, e.g. a Retry-After it enforces)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from pricebot.binance import MIRROR_URL, BinanceClient
from pricebot.errors import (
    RateLimitBanError,
    RestrictedLocationError,
    RetriesExhaustedError,
    SymbolNotListedError,
)
from pricebot_exchange.exchange import RunningExchange, synthetic_klines

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
MINUTE_MS = 60_000
START_MS = NOW_MS - NOW_MS % MINUTE_MS - 12_000 * MINUTE_MS


class Pauses:
    """An injectable sleep: records every pause; really sleeps those of at least ``wait_from``."""

    def __init__(self, wait_from: float = float("inf")) -> None:
        self.seconds: list[float] = []
        self.wait_from = wait_from
        self.hooks: list[Callable[[], None]] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        for hook in self.hooks:
            hook()
        if seconds >= self.wait_from:
            time.sleep(seconds)


def client_for(ex: RunningExchange, pauses: Pauses, **options: float) -> BinanceClient:
    defaults = {"timeout": 5.0, "max_retries": 5, "backoff_base": 0.01, "backoff_cap": 0.05}
    return BinanceClient(ex.url, sleep=pauses, **{**defaults, **options})


def pages(client: BinanceClient, n: int, limit: int = 1000) -> list[list]:
    rows: list[list] = []
    for i in range(n):
        rows += client.klines("BTCUSDT", START_MS + i * limit * MINUTE_MS, NOW_MS, limit=limit)
    return rows


@pytest.fixture
def market(exchange: Callable[..., RunningExchange]) -> RunningExchange:
    return exchange(now=NOW, history_days=10, symbols=["BTCUSDT", "ETHUSDT"])


def test_klines_come_back_exactly_as_the_exchange_serves_them(market: RunningExchange) -> None:
    # Given a quiet exchange
    with client_for(market, Pauses()) as client:
        # When two pages are fetched
        rows = pages(client, 2)
    # Then they are the exchange's rows, strings and all, with no retry
    end_ms = START_MS + 1999 * MINUTE_MS
    assert rows == synthetic_klines(market.config, "BTCUSDT", START_MS, end_ms)
    assert client.retries == 0
    assert client.requests == 2


def test_429_waits_exactly_the_retry_after_then_succeeds(market: RunningExchange) -> None:
    # Given an exchange that allows 10 weight a minute (5 klines calls) and asks 1 s of patience
    market.config.weight_limit = 10
    market.config.retry_after_seconds = 1
    pauses = Pauses(wait_from=0)
    with client_for(market, pauses, weight_limit=10_000) as client:
        # When the client makes a sixth call
        rows = pages(client, 6)
    # Then it was told 429, slept exactly the Retry-After, and the retry succeeded
    assert market.stats.requests("/api/v3/klines", 429) == 1
    assert pauses.seconds == [1.0]
    assert client.retries == 1
    assert len(rows) == 6000


def test_418_after_ignoring_retry_after_is_also_waited_out(market: RunningExchange) -> None:
    # Given a client whose first pause is cut short (a clock that lies), so it comes back early
    market.config.weight_limit = 10
    market.config.retry_after_seconds = 1
    pauses = Pauses(wait_from=2.0)
    with client_for(market, pauses, weight_limit=10_000) as client:
        # When it goes past the weight limit
        rows = pages(client, 6)
    # Then the exchange banned it (418 with a longer Retry-After) and it waited exactly that
    assert market.stats.requests("/api/v3/klines", 429) == 1
    assert market.stats.requests("/api/v3/klines", 418) == 1
    assert pauses.seconds == [1.0, 4.0]
    assert client.retries == 2
    assert len(rows) == 6000


def test_5xx_storm_is_retried_with_capped_backoff(market: RunningExchange) -> None:
    # Given an exchange failing 40% of requests with 500/502/503
    market.config.failure_rate = 0.4
    pauses = Pauses()
    with client_for(market, pauses, max_retries=10, backoff_base=0.01, backoff_cap=0.05) as c:
        # When ten pages are fetched
        rows = pages(c, 10)
    # Then every page arrived intact, each failure cost one retry, and no wait passed the cap
    failures = sum(market.stats.requests("/api/v3/klines", s) for s in (500, 502, 503))
    assert failures > 0
    assert c.retries == failures == len(pauses.seconds)
    assert all(0 < p <= 0.05 for p in pauses.seconds)
    assert rows == synthetic_klines(market.config, "BTCUSDT", START_MS, START_MS + 9999 * 60_000)


def test_retries_exhausted_raises_saying_what_to_do(market: RunningExchange) -> None:
    # Given an exchange that answers every request with a server error
    market.config.failure_rate = 1.0
    client = client_for(market, Pauses(), max_retries=3)
    # When a page is asked for
    with client, pytest.raises(RetriesExhaustedError) as caught:
        client.klines("BTCUSDT", START_MS, NOW_MS)
    # Then it tried 1 + 3 times and the message says so and what to do
    assert market.stats.requests("/api/v3/klines") == 4
    assert "failed 4 times" in str(caught.value)
    assert "run again" in str(caught.value)
    assert "PRICEBOT_MAX_RETRIES" in str(caught.value)


def test_a_timeout_is_retried_and_the_call_succeeds_once_the_exchange_is_fast(
    market: RunningExchange,
) -> None:
    # Given an exchange slower (300 ms) than the client's timeout (100 ms)
    market.config.latency_ms = 300
    pauses = Pauses()
    pauses.hooks.append(lambda: setattr(market.config, "latency_ms", 0.0))  # recovers
    with client_for(market, pauses, timeout=0.1) as client:
        # When a page is asked for
        rows = client.klines("BTCUSDT", START_MS, NOW_MS, limit=10)
    # Then the timed-out attempt was retried once and the answer is the exchange's
    assert client.retries == 1
    assert rows == synthetic_klines(market.config, "BTCUSDT", START_MS, START_MS + 9 * 60_000)


def test_timeouts_until_the_budget_is_spent_name_the_timeout(market: RunningExchange) -> None:
    # Given an exchange that stays slower than the client's timeout
    market.config.latency_ms = 300
    client = client_for(market, Pauses(), timeout=0.1, max_retries=2)
    # When a page is asked for
    with client, pytest.raises(RetriesExhaustedError) as caught:
        client.klines("BTCUSDT", START_MS, NOW_MS)
    # Then the error says the exchange did not answer within the timeout
    assert "failed 3 times" in str(caught.value)
    assert "within 0.1s" in str(caught.value)
    assert "PRICEBOT_HTTP_TIMEOUT_SECONDS" in str(caught.value)


def test_451_points_at_the_market_data_mirror(market: RunningExchange) -> None:
    # Given an exchange refusing this location
    market.config.restricted = True
    client = client_for(market, Pauses())
    # When anything is asked
    with client, pytest.raises(RestrictedLocationError) as caught:
        client.klines("BTCUSDT", START_MS, NOW_MS)
    # Then it is not retried and the message names the setting and the mirror
    assert client.retries == 0
    assert f"PRICEBOT_BINANCE_URL={MIRROR_URL}" in str(caught.value)
    assert "restricted location" in str(caught.value)


def test_unknown_symbols_are_named(market: RunningExchange) -> None:
    # Given an exchange listing BTCUSDT and ETHUSDT
    client = client_for(market, Pauses())
    # When a list with two unknown symbols is checked
    with client, pytest.raises(SymbolNotListedError) as caught:
        client.check_symbols(["BTCUSDT", "NOPEUSDT", "ETHUSDT", "BTCUSDX"])
    # Then exactly the unknown ones are named, with what to do
    assert caught.value.symbols == ["NOPEUSDT", "BTCUSDX"]
    assert "NOPEUSDT, BTCUSDX" in str(caught.value)
    assert "PRICEBOT_SYMBOLS" in str(caught.value)


def test_known_symbols_pass_the_check(market: RunningExchange) -> None:
    # Given an exchange listing BTCUSDT and ETHUSDT
    with client_for(market, Pauses()) as client:
        # When both are checked, Then no error is raised and one request was enough
        client.check_symbols(["BTCUSDT", "ETHUSDT"])
    assert market.stats.requests("/api/v3/exchangeInfo") == 1


def test_klines_for_an_unknown_symbol_raise_unknown_symbol(market: RunningExchange) -> None:
    client = client_for(market, Pauses())
    with client, pytest.raises(SymbolNotListedError) as caught:
        client.klines("NOPEUSDT", START_MS, NOW_MS)
    assert caught.value.symbols == ["NOPEUSDT"]


def test_client_slows_down_before_the_weight_limit(market: RunningExchange) -> None:
    # Given an exchange allowing 200 weight a minute and a client told to stay under 25% of it
    market.config.weight_limit = 200
    weights_at_pause: list[int | None] = []
    pauses = Pauses()
    with client_for(market, pauses, weight_limit=200, weight_headroom=0.25) as client:
        pauses.hooks.append(lambda: weights_at_pause.append(client.used_weight))
        # When it makes 30 klines calls (weight 2 each)
        pages(client, 30, limit=10)
    # Then it paused once the next call would pass 50, for at most a minute, and never got a 429
    assert weights_at_pause[0] is not None
    assert 48 <= weights_at_pause[0] <= 50
    assert client.throttle_pauses == len(pauses.seconds) >= 1
    assert all(0 < p <= 60.05 for p in pauses.seconds)
    assert client.retries == 0
    assert market.stats.requests(status=429) == 0


def test_a_retry_after_longer_than_allowed_stops_with_a_message(market: RunningExchange) -> None:
    # Given an exchange asking for 1 s of patience and a client allowed to wait only 0.5 s
    market.config.weight_limit = 4
    market.config.retry_after_seconds = 1
    pauses = Pauses()
    client = client_for(market, pauses, weight_limit=10_000, max_retry_after=0.5)
    # When the client goes past the weight limit
    with client, pytest.raises(RateLimitBanError) as caught:
        pages(client, 3, limit=10)
    # Then it stops at once, without waiting, saying when to come back and what to change
    assert pauses.seconds == []
    assert "rate limited (429) this client for 1s" in str(caught.value)
    assert "PRICEBOT_MAX_RETRY_AFTER_SECONDS" in str(caught.value)


def test_a_ban_longer_than_allowed_says_until_when_on_the_clients_clock(
    market: RunningExchange,
) -> None:
    # Given an exchange banning for two minutes of its clock, and a client whose clock is fixed
    market.config.banned_until = NOW + timedelta(minutes=2)
    pauses = Pauses()
    client = client_for(market, pauses, max_retry_after=60, clock=lambda: 1_000_000.0)
    # When it asks for a page
    with client, pytest.raises(RateLimitBanError) as caught:
        client.klines("BTCUSDT", START_MS, NOW_MS)
    # Then it stops at once, with the status and the ban's end on its own clock
    assert pauses.seconds == []
    assert caught.value.status == 418
    assert caught.value.until == datetime.fromtimestamp(1_000_120, UTC)
    assert "banned (418) this client for 120s" in str(caught.value)
    assert market.stats.requests("/api/v3/klines") == 1


def test_a_retry_after_that_would_outlast_the_deadline_is_not_waited(
    market: RunningExchange,
) -> None:
    # Given a 30 s ban, a client willing to wait 60 s, but with only 10 s left before its deadline
    market.config.banned_until = NOW + timedelta(seconds=30)
    pauses = Pauses()
    client = client_for(market, pauses, max_retry_after=60, clock=lambda: 500.0, deadline=510.0)
    # When it asks for a page, Then it does not wait: the run would be killed mid-wait
    with client, pytest.raises(RateLimitBanError, match="or the time the run has left"):
        client.klines("BTCUSDT", START_MS, NOW_MS)
    assert pauses.seconds == []
