"""parse_kline: every candle from REST or archive is checked here, so its verdicts are pinned."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pricebot.errors import MalformedKlineError
from pricebot.klines import parse_kline

OPEN_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
ROW = [OPEN_MS, "50000.10", "50005.00", "49995.00", "50001.00", "12.34567890",
       OPEN_MS + 59_999, "617283.94500000", 123, "6.17283945", "308641.97250000", "0"]  # fmt: skip


def with_field(index: int, value: object) -> list:
    row = list(ROW)
    row[index] = value
    return row


def test_a_good_row_keeps_the_exchanges_digits() -> None:
    parsed = parse_kline(ROW, "BTCUSDT", "rest")
    assert parsed[0] == "BTCUSDT"
    assert parsed[1] == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed[2:7] == ("50000.10", "50005.00", "49995.00", "50001.00", "12.34567890")
    assert parsed[8:] == ("617283.94500000", 123, "6.17283945", "308641.97250000", "0", "rest")


def test_padding_and_json_numbers_are_normalised_like_strings() -> None:
    parsed = parse_kline(with_field(1, " 50000.10 "), "BTCUSDT", "rest")
    assert parsed[2] == "50000.10"
    assert parse_kline(with_field(5, 12.5), "BTCUSDT", "rest")[6] == "12.5"


@pytest.mark.parametrize(
    ("index", "value", "name"),
    [(1, "abc", "open"), (2, "", "high"), (3, None, "low"), (4, "1.2.3", "close"),
     (5, "nan", "volume"), (7, "1\t2", "quote_volume"), (9, "+1", "taker_buy_base_volume"),
     (10, "1e5x", "taker_buy_quote_volume")],
)  # fmt: skip
def test_a_bad_number_is_refused_naming_the_field(index: int, value: object, name: str) -> None:
    with pytest.raises(MalformedKlineError, match=f"2026-01-01T00:00:00\\+00:00: {name}="):
        parse_kline(with_field(index, value), "BTCUSDT", "rest")


def test_prices_out_of_order_are_refused() -> None:
    with pytest.raises(MalformedKlineError, match="prices out of order"):
        parse_kline(with_field(4, "50005.01"), "BTCUSDT", "rest")


def test_prices_are_compared_exactly_beyond_float_precision() -> None:
    # low and open equal as floats, but low is larger in the digits: out of order
    row = with_field(3, "50000.100000000000001")
    with pytest.raises(MalformedKlineError, match="prices out of order"):
        parse_kline(row, "BTCUSDT", "rest")


def test_a_row_that_is_not_a_1m_kline_is_refused() -> None:
    with pytest.raises(MalformedKlineError, match="is this a 1m kline"):
        parse_kline(with_field(6, OPEN_MS + 299_999), "BTCUSDT", "rest")


def test_a_short_row_is_refused() -> None:
    with pytest.raises(MalformedKlineError, match="a kline has 12 fields"):
        parse_kline(ROW[:5], "BTCUSDT", "rest")
