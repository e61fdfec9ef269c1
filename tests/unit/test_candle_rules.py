"""The candle rules in Python (pricebot.candle_rules.check_kline): each refusal names its rule,
and absurd input is refused as such, never as a bare ValueError or OverflowError."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricebot.candle_rules import RULES, check_kline
from pricebot.errors import MalformedKlineError

OPEN_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
NOW_MS = OPEN_MS + 3_600_000  # an hour later
ROW = [OPEN_MS, "50000.10", "50005.00", "49995.00", "50001.00", "12.34567890",
       OPEN_MS + 59_999, "617283.94500000", 123, "6.17283945", "308641.97250000", "0"]  # fmt: skip
FUTURE_MS = int(datetime(2060, 1, 1, tzinfo=UTC).timestamp() * 1000)


def changed(**fields: object) -> list:
    """ROW with fields replaced by index: changed(f5="-1") sets the volume."""
    row = list(ROW)
    for key, value in fields.items():
        row[int(key[1:])] = value
    return row


def refusal(row: object) -> MalformedKlineError:
    with pytest.raises(MalformedKlineError) as caught:
        check_kline(row, "BTCUSDT", now=NOW_MS)  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize(
    ("row", "rule", "words"),
    [
        (ROW[:11], "fields", "11 fields"),
        ([*ROW, "extra"], "fields", "13 fields"),
        ("not a row", "fields", "not a list of fields"),
        (changed(f0="12:00"), "fields", "not integers"),
        (changed(f8=12.5), "fields", "not integers"),
        (changed(f0=86_400_000, f6=86_459_999), "known-time", "before 2010-01-01"),
        (changed(f0=FUTURE_MS, f6=FUTURE_MS + 59_999), "not-in-the-future", "2060-01-01"),
        (changed(f0=OPEN_MS + 30_000, f6=OPEN_MS + 89_999), "on-a-minute", "not on a minute"),
        (changed(f6=OPEN_MS + 299_999), "one-minute", "is this a 1m kline"),
        (changed(f5="1e999999999"), "in-range", "volume='1e999999999' is out of range"),
        (changed(f1="1" * 25), "in-range", "open='1111"),
        (changed(f7="0." + "1" * 21), "in-range", "quote_volume"),
        (changed(f5="NaN"), "in-range", "volume='NaN' is not finite"),
        (changed(f2="Infinity"), "in-range", "high='Infinity' is not finite"),
        (changed(f8=10**15), "in-range", "trades=1000000000000000"),
        (changed(f11="x" * 100), "in-range", "ignore field is 100 characters"),
        (changed(f5="-12.3"), "non-negative", "negative volume=-12.3"),
        (changed(f10="-1"), "non-negative", "taker_buy_quote_volume=-1"),
        (changed(f8=-1), "non-negative", "trades=-1"),
        (changed(f1="0", f3="0"), "positive-prices", "not above zero"),
        (changed(f1="-5", f3="-5"), "positive-prices", "open -5"),
        (changed(f4="50005.01"), "ordered-prices", "prices out of order"),
    ],
)
def test_each_rule_is_refused_by_name(row: object, rule: str, words: str) -> None:
    # Given a row breaking one rule, When it is checked, Then the refusal names the rule
    error = refusal(row)
    assert error.rule == rule
    assert f"(rule {rule}: " in str(error)
    assert words in str(error)


def test_a_candle_still_open_at_now_plus_the_skew_is_not_closed() -> None:
    # Given a candle opened a minute before "now", closing after now plus two minutes' skew
    opened = NOW_MS + 120_000
    row = changed(f0=opened, f6=opened + 59_999)
    # Then it is refused as not closed (it opens within the skew, so not in the future)
    assert refusal(row).rule == "closed"


def test_the_first_rule_broken_is_the_one_named() -> None:
    # Given a row from the future whose volume is also negative
    row = changed(f0=FUTURE_MS, f6=FUTURE_MS + 59_999, f5="-1")
    # Then the time is what is reported (rules are checked in order)
    assert refusal(row).rule == "not-in-the-future"


@pytest.mark.parametrize("stamp", [10**30, -(10**30), 2**63, 10**19])
def test_an_overflowing_timestamp_is_refused_as_a_rule_not_a_crash(stamp: int) -> None:
    error = refusal(changed(f0=stamp, f6=stamp + 59_999))
    assert error.rule in ("known-time", "not-in-the-future")


def test_booleans_are_not_numbers() -> None:
    assert refusal(changed(f8=True)).rule == "fields"
    assert refusal(changed(f5=False)).rule == "fields"


def test_a_good_row_comes_back_as_the_exchange_sent_it() -> None:
    opened, closed, decimals, trades, ignore = check_kline(ROW, "BTCUSDT", now=NOW_MS)
    assert (opened, closed.microsecond) == (datetime(2026, 1, 1, tzinfo=UTC), 999_000)
    assert decimals == ("50000.10", "50005.00", "49995.00", "50001.00", "12.34567890",
                        "617283.94500000", "6.17283945", "308641.97250000")  # fmt: skip
    assert (trades, ignore) == (123, "0")


def test_microsecond_stamps_are_read_as_such() -> None:
    row = changed(f0=OPEN_MS * 1000, f6=OPEN_MS * 1000 + 59_999_999)
    opened, closed, *_ = check_kline(row, "BTCUSDT", now=NOW_MS)
    assert opened == datetime(2026, 1, 1, tzinfo=UTC)
    assert closed.microsecond == 999_999


def test_every_rule_has_a_summary_in_its_refusals() -> None:
    assert RULES[0] == "fields"
    assert RULES[-1] == "ordered-prices"


plain_numbers = st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False)


@given(value=plain_numbers, padding=st.sampled_from(["", " ", "  "]))
def test_the_fast_and_the_careful_path_agree(value: object, padding: str) -> None:
    # Given a volume as Binance writes it, and the same value padded (which takes the slow path)
    text = f"{value:f}"
    plain = check_kline(changed(f5=text), "BTCUSDT", now=NOW_MS)
    padded = check_kline(changed(f5=padding + text + padding), "BTCUSDT", now=NOW_MS)
    # Then both accept it with the same digits
    assert plain[2][4] == padded[2][4] == text
