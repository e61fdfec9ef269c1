"""The simulated exchange over real HTTP: Binance's klines semantics, errors and faults."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pricebot.archive import write_archive
from pricebot.errors import MalformedKlineError
from pricebot.klines import parse_kline
from pricebot_exchange.exchange import (
    RESTRICTED_MESSAGE,
    ExchangeConfig,
    RunningExchange,
    create_app,
    running_exchange,
    synthetic_klines,
)

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)  # 30 s into the 12:00 candle
NOW_MS = int(NOW.timestamp() * 1000)
CURRENT_MS = NOW_MS - 30_000  # open time of the still-open candle
MINUTE_MS = 60_000
Exchange = Callable[..., RunningExchange]


_client = httpx.Client(timeout=10)  # one client: a new one per request costs tens of ms


def get(url: str, **params: object) -> httpx.Response:
    return _client.get(url, params=params)


def klines(ex: RunningExchange, **params: object) -> httpx.Response:
    return get(f"{ex.url}/api/v3/klines", **{"symbol": "BTCUSDT", "interval": "1m", **params})


def expected(config: ExchangeConfig, symbol: str = "BTCUSDT") -> dict[int, list]:
    return {row[0]: row for row in synthetic_klines(config, symbol, 0, 2**62)}


# --- the market data --------------------------------------------------------------------------


def test_overlapping_pages_in_any_order_see_the_same_candles(exchange: Exchange) -> None:
    # Given an exchange with two days of history
    ex = exchange(now=NOW, history_days=2)
    truth = expected(ex.config)
    # When overlapping pages of different sizes are fetched in a shuffled order
    rng = random.Random(1)
    requests = [(NOW_MS - rng.randrange(2 * 1440) * MINUTE_MS, rng.randrange(1, 1001))
                for _ in range(25)]  # fmt: skip
    served: dict[int, list] = {}
    for start, limit in requests:
        for row in klines(ex, startTime=start, limit=limit).json():
            # Then a minute served twice is the same candle each time
            assert served.setdefault(row[0], row) == row
    # And every candle is the one the exchange's own generator says
    assert served
    assert all(truth[t] == row for t, row in served.items())


def test_the_newest_candle_is_still_open_and_moves_until_it_closes(exchange: Exchange) -> None:
    # Given an exchange whose clock is 30 s into a minute
    ex = exchange(now=NOW, history_days=1)
    before = klines(ex, limit=2).json()
    # Then the newest candle is the current minute's and closes in the future
    assert before[-1][0] == CURRENT_MS
    assert before[-1][6] > NOW_MS
    # When 25 s pass, the open candle has traded more; the closed one before it has not changed
    ex.config.now = NOW + timedelta(seconds=25)
    later = klines(ex, limit=2).json()
    assert later[0] == before[0]
    assert later[-1][0] == CURRENT_MS
    assert later[-1][5] != before[-1][5]  # volume grew
    # When the minute is over, the candle is final and the next one is open
    ex.config.now = NOW + timedelta(seconds=45)
    closed = klines(ex, startTime=CURRENT_MS, limit=2).json()
    assert closed[0] == expected(ExchangeConfig(now=NOW + timedelta(hours=1)))[CURRENT_MS]
    assert closed[1][0] == CURRENT_MS + MINUTE_MS


def test_unknown_symbol_is_400_invalid_symbol(exchange: Exchange) -> None:
    ex = exchange(now=NOW)
    response = klines(ex, symbol="NOPEUSDT")
    assert response.status_code == 400
    assert response.json() == {"code": -1121, "msg": "Invalid symbol."}


def test_without_limit_a_page_holds_500_candles_ending_with_the_open_one(
    exchange: Exchange,
) -> None:
    ex = exchange(now=NOW, history_days=2)
    rows = klines(ex).json()
    assert len(rows) == 500
    assert rows[-1][0] == CURRENT_MS
    assert [r[0] for r in rows] == list(
        range(CURRENT_MS - 499 * MINUTE_MS, CURRENT_MS + 1, MINUTE_MS)
    )


def test_start_time_gives_candles_opening_at_or_after_it(exchange: Exchange) -> None:
    ex = exchange(now=NOW, history_days=2)
    start = CURRENT_MS - 100 * MINUTE_MS
    # A start on the minute includes that minute
    assert klines(ex, startTime=start, limit=3).json()[0][0] == start
    # A start inside a minute begins with the next one
    assert klines(ex, startTime=start + 1, limit=3).json()[0][0] == start + MINUTE_MS
    # A start before the history begins is served from its first candle, up to the limit
    rows = klines(ex, startTime=0, limit=1000).json()
    assert len(rows) == 1000
    assert rows[0][0] == CURRENT_MS - 2 * 1440 * MINUTE_MS


def test_end_time_gives_the_newest_candles_opening_at_or_before_it(exchange: Exchange) -> None:
    ex = exchange(now=NOW, history_days=2)
    end = CURRENT_MS - 100 * MINUTE_MS
    rows = klines(ex, endTime=end + 59_999, limit=10).json()
    assert [r[0] for r in rows] == list(range(end - 9 * MINUTE_MS, end + 1, MINUTE_MS))


def test_start_and_end_time_bound_the_page(exchange: Exchange) -> None:
    ex = exchange(now=NOW, history_days=2)
    start = CURRENT_MS - 100 * MINUTE_MS
    rows = klines(ex, startTime=start, endTime=start + 4 * MINUTE_MS, limit=1000).json()
    assert [r[0] for r in rows] == [start + i * MINUTE_MS for i in range(5)]


def test_start_time_in_the_future_gives_an_empty_page(exchange: Exchange) -> None:
    ex = exchange(now=NOW)
    response = klines(ex, startTime=NOW_MS + 3_600_000)
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"limit": 1001}, -1130, "Data sent for parameter 'limit' is not valid."),
        ({"limit": 0}, -1130, "Data sent for parameter 'limit' is not valid."),
        ({"startTime": "yesterday"}, -1100, "Illegal characters found in parameter 'startTime'"),
        ({"symbol": ""}, -1102, "Mandatory parameter 'symbol' was not sent"),
        ({"symbol": "btcusdt"}, -1100, "Illegal characters found in parameter 'symbol'"),
        ({"interval": "7m"}, -1120, "Invalid interval."),
        ({"interval": "5m"}, -1120, "serves 1m only"),
        ({"startTime": 2_000, "endTime": 1_000}, -1023, "Start time is greater than end time."),
    ],
)
def test_bad_parameters_are_400_with_binances_code(
    exchange: Exchange, params: dict, code: int, message: str
) -> None:
    ex = exchange(now=NOW)
    response = klines(ex, **params)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert message in response.json()["msg"]


def test_ping_and_time(exchange: Exchange) -> None:
    ex = exchange(now=NOW)
    assert get(f"{ex.url}/api/v3/ping").json() == {}
    assert get(f"{ex.url}/api/v3/time").json() == {"serverTime": NOW_MS}


def test_exchange_info_lists_trading_symbols_and_filters_by_symbol(exchange: Exchange) -> None:
    ex = exchange(now=NOW, symbols=["BTCUSDT", "ETHUSDT", "ADAUSDT"])
    everything = get(f"{ex.url}/api/v3/exchangeInfo").json()
    assert [s["symbol"] for s in everything["symbols"]] == ["BTCUSDT", "ETHUSDT", "ADAUSDT"]
    assert {s["status"] for s in everything["symbols"]} == {"TRADING"}
    one = get(f"{ex.url}/api/v3/exchangeInfo", symbol="ETHUSDT").json()
    assert [(s["symbol"], s["baseAsset"], s["quoteAsset"]) for s in one["symbols"]] == [
        ("ETHUSDT", "ETH", "USDT")
    ]
    some = get(f"{ex.url}/api/v3/exchangeInfo", symbols='["ADAUSDT","BTCUSDT"]').json()
    assert [s["symbol"] for s in some["symbols"]] == ["ADAUSDT", "BTCUSDT"]
    unknown = get(f"{ex.url}/api/v3/exchangeInfo", symbol="NOPEUSDT")
    assert (unknown.status_code, unknown.json()["code"]) == (400, -1121)


def test_stats_count_requests_by_path_and_status(exchange: Exchange) -> None:
    ex = exchange(now=NOW)
    klines(ex, limit=5)
    klines(ex, limit=5)
    klines(ex, symbol="NOPEUSDT")
    get(f"{ex.url}/api/v3/ping")
    assert ex.stats.requests("/api/v3/klines", 200) == 2
    assert ex.stats.requests("/api/v3/klines", 400) == 1
    assert ex.stats.requests() == 4
    assert ex.stats.by_status() == {200: 3, 400: 1}
    assert ex.stats.candles == 10


def test_a_clock_outside_the_synthetic_span_is_refused_clearly() -> None:
    with pytest.raises(ValidationError, match=r"covers 2016-01-02\.\.2035-12-31"):
        ExchangeConfig(now=NOW, history_days=5000)


@pytest.fixture(scope="module")
def outage_exchange() -> Iterator[tuple[RunningExchange, list[list]]]:
    """One exchange (with an outage) shared by the property test's examples, and its candles."""
    outage = (NOW - timedelta(minutes=50), NOW - timedelta(minutes=20))
    config = ExchangeConfig(now=NOW, history_days=1, missing=[outage])
    with running_exchange(config) as ex:
        yield ex, synthetic_klines(config, "BTCUSDT", 0, 2**62)


@settings(max_examples=80, deadline=None)
@given(
    start=st.one_of(st.none(), st.integers(-3000, 100).map(lambda m: CURRENT_MS + m * 30_000)),
    span=st.one_of(st.none(), st.integers(-100, 3000).map(lambda m: m * 30_000)),
    limit=st.one_of(st.none(), st.integers(1, 1000)),
)
def test_any_page_is_the_matching_slice_of_the_exchanges_candles(
    outage_exchange: tuple[RunningExchange, list[list]],
    start: int | None,
    span: int | None,
    limit: int | None,
) -> None:
    # Given an exchange with an outage, and every candle it has
    ex, everything = outage_exchange
    end = None if span is None else (start or CURRENT_MS - 1000 * MINUTE_MS) + span
    # When any mix of startTime, endTime and limit is asked for
    params = {"startTime": start, "endTime": end, "limit": limit}
    page = klines(ex, **{k: v for k, v in params.items() if v is not None}).json()
    # Then the page is Binance's slice: open times within the bounds, the oldest `limit` from a
    # start, else the newest `limit`
    if start is not None and end is not None and start > end:
        assert page["code"] == -1023
        return
    wanted = [
        r for r in everything if (start is None or r[0] >= start) and (end is None or r[0] <= end)
    ]
    n = limit or 500
    assert page == (wanted[:n] if start is not None else wanted[-n:])


def test_a_truncated_archive_is_refused_clearly(tmp_path: Path) -> None:
    first_ms = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp() * 1000)
    path = write_archive(tmp_path, "AVAXUSDT", date(2026, 2, 1), archive_rows(first_ms, 500, 1))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable zip archive"):
        create_app(ExchangeConfig(archives=[path]))


# --- faults -----------------------------------------------------------------------------------


def clear_of_a_minute_boundary(seconds: float = 5.0) -> None:
    """Weight is counted per wall-clock minute: start a weight test well inside one."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.05)


def test_every_answer_reports_the_used_weight(exchange: Exchange) -> None:
    ex = exchange(now=NOW)
    clear_of_a_minute_boundary()
    first = klines(ex, limit=1)
    second = klines(ex, symbol="NOPEUSDT")
    assert (
        int(second.headers["X-MBX-USED-WEIGHT-1M"])
        == int(first.headers["X-MBX-USED-WEIGHT-1M"]) + 2
    )


@pytest.mark.parametrize("mode", ["market", "random_walk", "swinging"])
def test_every_answer_names_the_simulated_market_and_its_mode(
    exchange: Exchange, mode: str
) -> None:
    ex = exchange(now=NOW, market=mode)
    answers = [klines(ex, limit=1), klines(ex, symbol="NOPEUSDT"), get(f"{ex.url}/api/v3/time")]
    assert [a.headers["X-Pricebot-Market"] for a in answers] == [f"simulated:{mode}"] * 3


def test_an_archive_replay_names_itself(exchange: Exchange, tmp_path: Path) -> None:
    first_ms = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp() * 1000)
    path = write_archive(tmp_path, "AVAXUSDT", date(2026, 2, 1), archive_rows(first_ms, 3, 1))
    ex = exchange(archives=[path])
    assert klines(ex, symbol="AVAXUSDT").headers["X-Pricebot-Market"] == "simulated:archive-replay"


def test_passing_for_binance_it_names_no_market(exchange: Exchange) -> None:
    ex = exchange(now=NOW, announce_market=False)
    assert "X-Pricebot-Market" not in klines(ex, limit=1).headers


def test_over_the_weight_limit_is_429_then_418_if_the_client_keeps_going(
    exchange: Exchange,
) -> None:
    # Given a limit of three klines requests a minute
    ex = exchange(now=NOW, weight_limit=6, retry_after_seconds=2)
    clear_of_a_minute_boundary()
    assert [klines(ex, limit=1).status_code for _ in range(3)] == [200, 200, 200]
    # When the client asks once more, it is told to wait
    limited = klines(ex, limit=1)
    assert limited.status_code == 429
    assert limited.json()["code"] == -1003
    assert limited.headers["Retry-After"] == "2"
    # When it ignores Retry-After, it is banned for longer
    banned = klines(ex, limit=1)
    assert banned.status_code == 418
    assert int(banned.headers["Retry-After"]) > 2


def test_after_retry_after_the_client_is_served_again(exchange: Exchange) -> None:
    ex = exchange(now=NOW, weight_limit=2, retry_after_seconds=1)
    clear_of_a_minute_boundary()
    assert klines(ex, limit=1).status_code == 200
    limited = klines(ex, limit=1)
    assert limited.status_code == 429
    time.sleep(float(limited.headers["Retry-After"]) + 0.1)
    assert klines(ex, limit=1).status_code == 200


def test_failure_rate_answers_roughly_that_share_with_5xx_repeatably(exchange: Exchange) -> None:
    # Given two exchanges with the same seed and a 30% failure rate
    def statuses() -> list[int]:
        ex = exchange(now=NOW, failure_rate=0.3, seed=5)
        return [get(f"{ex.url}/api/v3/ping").status_code for _ in range(300)]

    first, second = statuses(), statuses()
    # Then about 30% fail, with Binance's kinds of server error, the same ones each time
    failed = [s for s in first if s != 200]
    assert 0.2 < len(failed) / len(first) < 0.4
    assert set(failed) <= {500, 502, 503}
    assert first == second


def test_failures_can_be_switched_off_while_running(exchange: Exchange) -> None:
    ex = exchange(now=NOW, failure_rate=1.0)
    assert klines(ex, limit=1).status_code >= 500
    ex.config.failure_rate = 0.0
    assert klines(ex, limit=1).status_code == 200


def test_malformed_rate_spoils_one_row_of_a_page(exchange: Exchange) -> None:
    # Given an exchange that spoils every page
    ex = exchange(now=NOW - timedelta(minutes=5, seconds=30), malformed_rate=1.0)
    for _ in range(5):
        rows = klines(ex, limit=20).json()
        # Then exactly one row of each page is rejected by the kline parser
        bad = []
        for row in rows:
            try:
                parse_kline(row, "BTCUSDT", "rest")
            except MalformedKlineError as exc:
                bad.append(str(exc))
        assert len(bad) == 1
        assert re.search(r"is not a number|a kline has 12 fields", bad[0])


def test_restricted_location_is_451_with_binances_message(exchange: Exchange) -> None:
    ex = exchange(now=NOW, restricted=True)
    response = klines(ex, limit=1)
    assert response.status_code == 451
    assert response.json() == {"code": 0, "msg": RESTRICTED_MESSAGE}


def test_missing_ranges_have_no_candles_and_pages_skip_them(exchange: Exchange) -> None:
    # Given an outage of ten minutes an hour ago
    outage_start = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    ex = exchange(now=NOW, missing=[(outage_start, outage_start + timedelta(minutes=10))])
    start_ms = int(outage_start.timestamp() * 1000)
    # When a page starts before it
    rows = klines(ex, startTime=start_ms - 2 * MINUTE_MS, limit=5).json()
    # Then the outage's minutes are absent and the page continues after it
    assert [r[0] for r in rows] == [
        start_ms - 2 * MINUTE_MS,
        start_ms - MINUTE_MS,
        *(start_ms + (10 + i) * MINUTE_MS for i in range(3)),
    ]
    # And a page inside the outage begins where the candles resume
    inside = klines(ex, startTime=start_ms + 3 * MINUTE_MS, limit=1).json()
    assert inside[0][0] == start_ms + 10 * MINUTE_MS


# --- replay -----------------------------------------------------------------------------------


def archive_rows(first_ms: int, count: int, unit: int) -> list[list]:
    """Archive-style rows (timestamps in ``unit``: 1 for ms, 1000 for µs)."""
    rows = []
    for i in range(count):
        t = first_ms + i * MINUTE_MS
        price = f"{30 + i / 100:.4f}"
        high, low = f"{30.5 + i / 100:.4f}", f"{29.5 + i / 100:.4f}"
        close_time = (t + 59_999) * unit + (unit - 1)
        rows.append([t * unit, price, high, low, price, "12.50", close_time, "375.0000", 7, "6.25",
                     "187.5", 0])  # fmt: skip
    return rows


@pytest.mark.parametrize(("unit", "header"), [(1, True), (1000, False)])
def test_replays_an_archive_with_millisecond_timestamps(
    exchange: Exchange, tmp_path: Path, unit: int, header: bool
) -> None:
    # Given a small archive (futures-style header and ms, or spot-style µs timestamps)
    first_ms = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp() * 1000)
    path = write_archive(
        tmp_path, "AVAXUSDT", date(2026, 2, 1), archive_rows(first_ms, 30, unit), header=header
    )
    # When the exchange replays it
    ex = exchange(archives=[path])
    rows = klines(ex, symbol="AVAXUSDT", startTime=first_ms + 10 * MINUTE_MS, limit=5).json()
    # Then it serves the file's candles, in Binance's shape, with ms timestamps
    assert [r[0] for r in rows] == [first_ms + (10 + i) * MINUTE_MS for i in range(5)]
    assert rows[0][1:6] == ["30.1000", "30.6000", "29.6000", "30.1000", "12.50"]
    assert rows[0][6] == rows[0][0] + 59_999
    assert rows[0][8] == 7
    assert [s["symbol"] for s in get(f"{ex.url}/api/v3/exchangeInfo").json()["symbols"]] == [
        "AVAXUSDT"
    ]
    assert klines(ex, symbol="BTCUSDT").json()["code"] == -1121


def test_running_exchange_stops_serving_when_the_block_ends() -> None:
    with running_exchange(ExchangeConfig(now=NOW)) as ex:
        assert get(f"{ex.url}/api/v3/ping").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{ex.url}/api/v3/ping", timeout=2)


# --- the command ------------------------------------------------------------------------------


def test_the_command_serves_on_the_port_it_prints(tmp_path: Path) -> None:
    # Given `pricebot exchange` started on a free port
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "pricebot"),
            "exchange",
            "--port",
            "0",
            "--seed",
            "3",
            "--symbols",
            "BTCUSDT",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        start_new_session=True,
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        # When a client asks it for candles (it may still be binding its socket)
        for _ in range(100):
            try:
                response = httpx.get(
                    f"{url.group(0)}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"}
                )
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        # Then it answers with a page of candles
        assert response.status_code == 200
        assert len(response.json()) == 500
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def test_the_command_rejects_bad_options_clearly() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pricebot"), "exchange", "--failure-rate", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
    )
    assert result.returncode == 1
    assert "--failure-rate" in result.stderr
    assert "less than or equal to 1" in result.stderr
