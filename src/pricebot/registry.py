"""Registered-model naming shared by training, serving and monitoring."""

from __future__ import annotations

CHAMPION = "champion"
CHALLENGER = "challenger"


def model_name(symbol: str, target: str) -> str:
    """``pricebot-<symbol>-<target>`` in lower case, e.g. ``pricebot-btcusdt-ret24h``."""
    return f"pricebot-{symbol.lower()}-{target.lower()}"


def model_uri(symbol: str, target: str, alias: str = CHAMPION) -> str:
    return f"models:/{model_name(symbol, target)}@{alias}"
