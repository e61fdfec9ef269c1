"""The monitoring page in-process with Streamlit's AppTest: widgets, and every fault as a
message on the page (never a traceback).

The page reads a real PostgreSQL (``database_url``) and, where a model matters, the session's
MLflow server; "unreachable" is a port nobody listens on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import free_port
from tests.fixtures.monitoring_data import log_predictions, minute_times, store_candles

APP = Path(__file__).resolve().parents[2] / "pricebot_monitor" / "app.py"
END = datetime(2026, 3, 4, tzinfo=UTC)
START = END - timedelta(days=2)


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., AppTest]]:
    """Factory: the page against ``database_url`` and ``tracking`` (unreachable by default)."""
    from pricebot.settings import get_settings

    def open_page(
        database_url: str,
        tracking: str | None = None,
        targets: str = "ret24h",
        env: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ):
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PRICEBOT_DATABASE_URL", database_url)
        monkeypatch.setenv("PRICEBOT_TARGETS", targets)
        monkeypatch.setenv("PRICEBOT_SYMBOLS", "BTCUSDT,ETHUSDT")
        monkeypatch.setenv("PRICEBOT_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking or f"http://127.0.0.1:{free_port()}")
        get_settings.cache_clear()
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(query or {})
        return at.run()

    yield open_page
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="module")
def market(postgres) -> str:
    """Two days of ETHUSDT candles with a prediction logged every 5 minutes (shared, read-only)."""
    from pricebot.db import connect

    url = postgres.create_database("monitoring_app_market", template="pricebot_template")
    store_candles(url, "ETHUSDT", START, END)
    store_candles(url, "XRPUSDT", END - timedelta(hours=2), END)
    times = minute_times(START, END - timedelta(days=1), every=5)
    log_predictions(url, "ETHUSDT", "ret24h", times, lambda i: 0.001 * (i % 3 - 1))
    with connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM predictions").fetchone()[0] == len(times)
    return url


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def widget(elements, label: str):
    return next(e for e in elements if e.label == label)


def test_symbols_are_the_configured_ones_then_those_with_data(page, market: str) -> None:
    at = page(market)

    assert not at.exception
    assert widget(at.selectbox, "Symbol").options == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
    assert widget(at.selectbox, "Target").options == ["ret24h"]


def test_choosing_a_symbol_draws_its_price_and_logged_predictions(page, market: str) -> None:
    at = page(market)

    widget(at.selectbox, "Symbol").select("ETHUSDT").run()

    assert not at.exception
    assert any("ETHUSDT ret24h" in s.value for s in at.subheader)
    assert "as logged" in texts(at.caption).lower()
    assert charts(at) >= 4  # price, growth, errors, pool value (+ timeline, health)
    # The default range is the last week of stored candles, in UTC.
    assert widget(at.date_input, "End date (UTC)").value == END.date()


def test_an_end_before_the_start_is_an_error_message_not_a_chart(page, market: str) -> None:
    at = page(market)
    widget(at.selectbox, "Symbol").select("ETHUSDT").run()

    widget(at.date_input, "End date (UTC)").set_value(date(2026, 2, 1)).run()

    assert not at.exception
    assert "must be after the start" in texts(at.error)
    assert charts(at) == 0


def test_a_range_without_candles_says_where_the_data_is(page, market: str) -> None:
    at = page(market)
    widget(at.selectbox, "Symbol").select("ETHUSDT").run()

    widget(at.date_input, "Start date (UTC)").set_value(date(2026, 1, 1))
    widget(at.date_input, "End date (UTC)").set_value(date(2026, 1, 5)).run()

    assert not at.exception
    info = texts(at.info)
    assert "No candles for ETHUSDT between 2026-01-01" in info
    assert "stored candles run from 2026-03-02" in info


def test_an_unreachable_tracking_server_is_a_warning_and_prices_still_draw(
    page, market: str
) -> None:
    at = page(market)
    widget(at.selectbox, "Symbol").select("ETHUSDT").run()

    assert not at.exception
    assert "MLflow tracking server" in texts(at.warning)
    assert "unreachable" in texts(at.warning)
    assert widget(at.selectbox, "Model").options == ["as logged (what was served)"]
    assert charts(at) >= 1


def test_an_unreachable_database_is_an_error_message(page) -> None:
    at = page(f"postgresql://pricebot@127.0.0.1:{free_port()}/pricebot")

    assert not at.exception
    assert "database is unreachable" in texts(at.error)
    assert "PRICEBOT_DATABASE_URL" in texts(at.error)
    assert charts(at) == 0


def test_a_symbol_with_no_model_says_how_to_train_one(page, market: str, tracking_uri: str) -> None:
    at = page(market, tracking_uri)

    widget(at.selectbox, "Symbol").select("XRPUSDT").run()

    assert not at.exception
    assert "No model is registered for XRPUSDT ret24h yet" in texts(at.info)
    assert "pricebot train --symbol XRPUSDT" in texts(at.info)
    assert not at.warning


def test_a_registered_model_offers_the_live_champion_first_then_every_version(
    page, database_url: str, tracking_uri: str, registered_model
) -> None:
    store_candles(database_url, "ADAUSDT", END - timedelta(hours=1), END)
    first = registered_model("ADAUSDT", "ret17m", seed=1, alias=None)
    second = registered_model("ADAUSDT", "ret17m", seed=2)
    at = page(database_url, tracking_uri, targets="ret17m")

    widget(at.selectbox, "Symbol").select("ADAUSDT").run()

    assert not at.exception
    model = widget(at.selectbox, "Model")
    assert model.value == "champion"
    assert model.options == [
        f"live champion (version {second.version})",
        "as logged (what was served)",
        f"version {second.version}",
        f"version {first.version}",
    ]


def test_a_replay_over_its_training_rows_says_they_are_in_sample_and_left_out(
    page, database_url: str, tracking_uri: str, registered_model
) -> None:
    # Given a day of candles and features, and a version trained on the first half of it
    from tests.fixtures.models import write_feature_rows

    start = END - timedelta(days=1)
    store_candles(database_url, "SOLUSDT", start - timedelta(hours=3), END)
    write_feature_rows(database_url, "SOLUSDT", minute_times(start, END - timedelta(hours=1)))
    model = registered_model("SOLUSDT", "ret19m", seed=4, training_end=start + timedelta(hours=12))
    at = page(database_url, tracking_uri, targets="ret19m")

    # When the user looks at that version over the day
    widget(at.selectbox, "Symbol").select("SOLUSDT").run()
    widget(at.date_input, "Start date (UTC)").set_value(start.date())
    widget(at.time_input, "Start time (UTC)").set_value(start.time()).run()
    widget(at.selectbox, "Model").set_value(model.version).run()

    # Then the page says which points are in-sample, and that the figures leave them out
    assert not at.exception
    captions = texts(at.caption)
    assert "Replay" in captions
    assert "In-sample" in captions
    assert f"version {model.version} to {start + timedelta(hours=12):%Y-%m-%d %H:%M} UTC" in (
        captions
    )
    assert "in-sample points (trained on) are left out" in captions


def test_a_range_longer_than_the_cap_is_refused_with_what_to_change(page, market: str) -> None:
    # Given a page capped at one day
    at = page(market, env={"PRICEBOT_MONITOR_MAX_RANGE_DAYS": "1"})
    widget(at.selectbox, "Symbol").select("ETHUSDT").run()

    # When the user asks for two days
    widget(at.date_input, "Start date (UTC)").set_value(START.date())
    widget(at.date_input, "End date (UTC)").set_value(END.date()).run()

    # Then nothing is queried or drawn, and the message says the cap, the setting and the fix
    assert not at.exception
    message = texts(at.error)
    assert "the page draws at most 1 days (PRICEBOT_MONITOR_MAX_RANGE_DAYS)" in message
    assert f"Move the start to {END - timedelta(days=1):%Y-%m-%d} " in message
    assert "UTC or later, or raise the setting" in message
    assert charts(at) == 0


def test_every_cache_of_the_page_is_bounded_in_entries() -> None:
    import ast

    sources = sorted((APP.parent).glob("*.py"))
    caches = []
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name.endswith(("cache_data", "cache_resource")):
                keywords = {k.arg for k in node.keywords}
                caches.append((source.name, node.lineno, "max_entries" in keywords))

    assert caches, "no st.cache_data / st.cache_resource found: has the page moved?"
    assert [c for c in caches if not c[2]] == []


def test_an_address_naming_a_symbol_and_range_opens_the_page_on_them(page, market: str) -> None:
    # Given a link to ETHUSDT over one day
    query = {"symbol": "ETHUSDT", "target": "ret24h", "start": "2026-03-02T06:00",
             "end": "2026-03-03T06:00", "model": "as logged"}  # fmt: skip

    # When the page opens from it
    at = page(market, query=query)

    # Then that is what it shows, and the address keeps naming what is shown
    assert not at.exception
    assert widget(at.selectbox, "Symbol").value == "ETHUSDT"
    assert widget(at.date_input, "Start date (UTC)").value == date(2026, 3, 2)
    assert widget(at.time_input, "Start time (UTC)").value.hour == 6
    assert "Range shown: 2026-03-02 06:00 to 2026-03-03 06:00 UTC" in texts(at.caption)
    widget(at.date_input, "End date (UTC)").set_value(date(2026, 3, 4)).run()
    assert at.query_params["end"] == "2026-03-04T06:00"
