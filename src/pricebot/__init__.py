"""pricebot: crypto price prediction from Binance candles to a served, monitored model."""

__version__ = "0.1.0"
