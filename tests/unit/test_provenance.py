"""Market names and classes (pricebot.provenance): what a set of markets counts as."""

from __future__ import annotations

import pytest

from pricebot import provenance
from pricebot.errors import UnknownMarketError
from pricebot_exchange.synthetic import MarketMode


@pytest.mark.parametrize(
    ("markets", "expected"),
    [
        ({"binance"}, "real"),
        ({"binance-vision"}, "real"),
        ({"binance", "binance-vision"}, "real"),
        ({"simulated:swinging"}, "simulated:swinging"),
        ({"simulated:archive-replay"}, "simulated:archive-replay"),
        ({"binance", "simulated:market"}, "mixed"),
        ({"simulated:market", "simulated:random_walk"}, "mixed"),
        (set(), "unrecorded"),
    ],
)
def test_market_class_of_a_set_of_markets(markets: set[str], expected: str) -> None:
    assert provenance.market_class(markets) == expected


@pytest.mark.parametrize(
    ("market", "simulated"),
    [("binance", False), ("binance-vision", False), ("simulated:market", True)],
)
def test_is_simulated(market: str, simulated: bool) -> None:
    assert provenance.is_simulated(market) is simulated


def test_an_unknown_market_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(UnknownMarketError, match="unknown market 'kraken'") as caught:
        provenance.check_market("kraken")
    assert "binance-vision" in str(caught.value)
    assert "simulated:swinging" in str(caught.value)


def test_an_unknown_simulated_mode_is_refused() -> None:
    with pytest.raises(UnknownMarketError, match="simulated:sideways"):
        provenance.simulated("sideways")


def test_a_server_that_says_nothing_is_binance() -> None:
    assert provenance.market_from_header(None) == "binance"
    assert provenance.market_from_header(" ") == "binance"


def test_a_server_that_names_its_market_is_taken_at_its_word() -> None:
    assert provenance.market_from_header("simulated:random_walk") == "simulated:random_walk"


def test_every_mode_of_the_simulated_exchange_is_a_known_market() -> None:
    # Given the synthetic market's modes (and archive replay), Then each names a market
    for mode in (*MarketMode.__args__, "archive-replay"):
        assert provenance.simulated(mode) == f"simulated:{mode}"


def test_a_market_is_described_for_a_person() -> None:
    assert provenance.describe("binance") == "binance (the Binance REST API)"
    assert provenance.describe("simulated:archive-replay") == (
        "simulated:archive-replay (the simulated exchange, archive replay mode)"
    )
