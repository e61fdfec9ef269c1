"""Cached reads for the page: each a thin wrapper around :mod:`pricebot.monitoring`.

Arguments are plain values (URLs, strings, datetimes) so Streamlit can key the cache on them;
a database or tracking URI is an argument too, so two pages on two databases never mix.
Time-to-live: a minute for what grows with every new candle, longer for what rarely changes.
Every cache is bounded in entries too (``max_entries``): a page open for days, or many users
trying many ranges, keeps at most that many results per function in memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from pricebot import errors, monitoring
from pricebot.db import connect
from pricebot.targets import parse_target

LIVE_TTL = 60  # seconds: new candles arrive every minute
REGISTRY_TTL = 30  # an alias move shows within half a minute
MODEL_TTL = 3600  # a registered version never changes
SMALL_ENTRIES = 64  # lists and spans: a few kB each
FRAME_ENTRIES = 32  # a range's points or prices: at most a few thousand rows each
MODEL_ENTRIES = 8  # loaded models: up to tens of MB each


@st.cache_data(ttl=LIVE_TTL, max_entries=SMALL_ENTRIES, show_spinner=False)
def symbols(url: str, configured: tuple[str, ...]) -> list[str]:
    with connect(url) as conn:
        return monitoring.symbol_choices(conn, configured)


@st.cache_data(ttl=LIVE_TTL, max_entries=SMALL_ENTRIES, show_spinner=False)
def targets(url: str, symbol: str, configured: tuple[str, ...]) -> list[str]:
    with connect(url) as conn:
        return monitoring.target_choices(conn, symbol, configured)


@st.cache_data(ttl=LIVE_TTL, max_entries=SMALL_ENTRIES, show_spinner=False)
def candle_span(url: str, symbol: str) -> tuple[datetime, datetime] | None:
    with connect(url) as conn:
        return monitoring.candle_span(conn, symbol)


@st.cache_data(ttl=REGISTRY_TTL, max_entries=SMALL_ENTRIES, show_spinner=False)
def model_choices(uri: str | None, symbol: str, target: str) -> monitoring.ModelChoices:
    return monitoring.model_choices(uri, symbol, target)


@st.cache_data(ttl=LIVE_TTL, max_entries=FRAME_ENTRIES, show_spinner="Reading prices…")
def prices(url: str, symbol: str, start: datetime, end: datetime) -> pd.DataFrame:
    with connect(url) as conn:
        return monitoring.price_series(conn, symbol, start, end)


@st.cache_resource(ttl=MODEL_TTL, max_entries=MODEL_ENTRIES, show_spinner="Loading the model…")
def _model(uri: str | None, symbol: str, target: str, version: str) -> Any:
    return monitoring.load_version(uri, symbol, target, version)


@st.cache_data(ttl=REGISTRY_TTL, max_entries=SMALL_ENTRIES, show_spinner=False)
def training_end(
    uri: str | None, version: str, _choices: monitoring.ModelChoices, name: str
) -> datetime | None:
    """``name`` stands for ``_choices`` in the cache key. A registry that cannot answer leaves
    the end unknown (and the page says so) rather than hiding the predictions."""
    try:
        return monitoring.training_end(uri, _choices, version)
    except errors.TrackingUnavailableError:
        return None


@st.cache_data(ttl=LIVE_TTL, max_entries=FRAME_ENTRIES, show_spinner="Reading predictions…")
def points(
    url: str,
    uri: str | None,
    symbol: str,
    target: str,
    start: datetime,
    end: datetime,
    model: str,
    _choices: monitoring.ModelChoices | None,
    choices_key: tuple | None,
    max_gap_minutes: int,
) -> monitoring.Points:
    """``choices_key`` stands for ``_choices`` (not hashed) in the cache key."""

    def end_of(version: str) -> datetime | None:
        if _choices is None:
            return None
        return training_end(uri, version, _choices, _choices.name)

    with connect(url) as conn:
        return monitoring.prediction_points(
            conn, symbol, parse_target(target), start, end, model,
            uri=uri, choices=_choices, loader=_model, training_end_of=end_of,
            max_gap_minutes=max_gap_minutes,
        )  # fmt: skip


@st.cache_data(ttl=LIVE_TTL, max_entries=FRAME_ENTRIES, show_spinner=False)
def timeline(url: str, symbol: str, target: str, start: datetime, end: datetime) -> pd.DataFrame:
    with connect(url) as conn:
        return monitoring.champion_timeline(conn, symbol, target, start, end)


@st.cache_data(ttl=LIVE_TTL, max_entries=FRAME_ENTRIES, show_spinner=False)
def health(
    url: str, symbol: str, start: datetime, end: datetime, feature_set: str, stale_minutes: float
) -> monitoring.Health:
    return monitoring.data_health(
        url, symbol, start, end, feature_set=feature_set, stale_after_minutes=stale_minutes
    )
