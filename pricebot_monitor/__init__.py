"""The Streamlit monitoring page: widgets and charts over :mod:`pricebot.monitoring`."""
