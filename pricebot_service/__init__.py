"""The BentoML prediction service (an adapter over pricebot.serving)."""
