"""The monitoring page in a real browser: `pricebot monitor` (started from another working
directory) on a real PostgreSQL and MLflow, driven by Playwright with Debian's Chromium.

Data: 30 days of LTCUSDT minute candles, their features (the core's transform), a registered
champion, and one day of served predictions in the log. The test chooses the symbol, a range and
a version to replay, waits for the charts and keeps a screenshot under test-output/monitoring/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.fixtures.monitoring_data import (
    log_predictions,
    minute_times,
    noisy_predictor,
    score_returns_in_sql,
    store_candles,
)

pytestmark = [pytest.mark.system, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output" / "monitoring"
SYMBOL = "LTCUSDT"  # only this module uses it: the MLflow server is shared
END = datetime(2026, 6, 1, tzinfo=UTC)
CHART = "[data-testid='stVegaLiteChart']"


@pytest.fixture
def monitor(
    database_url: str, tracking_uri: str, registered_model, tmp_path: Path
) -> Iterator[str]:
    """A running `pricebot monitor` over a database with data and a registered champion."""
    from pricebot.transform import update_features

    store_candles(database_url, SYMBOL, END - timedelta(days=30), END)
    update_features(database_url, [SYMBOL])
    model = registered_model(SYMBOL, "ret24h", seed=11)
    served = minute_times(END - timedelta(days=3), END - timedelta(days=2))
    log_predictions(database_url, SYMBOL, "ret24h", served, noisy_predictor(),
                    version=model.version)  # fmt: skip
    score_returns_in_sql(database_url, SYMBOL)

    port = free_port()
    env = {**os.environ, "PRICEBOT_DATABASE_URL": database_url, "MLFLOW_TRACKING_URI": tracking_uri,
           "PRICEBOT_SYMBOLS": f"BTCUSDT,{SYMBOL}", "PRICEBOT_TARGETS": "ret24h"}  # fmt: skip
    log = (tmp_path / "monitor.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pricebot_cli", "monitor", "--port", str(port)],
        cwd=tmp_path,  # not the checkout: the command finds the page by itself
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "monitor.log").read_text()
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the page never answered its health check"
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def choose(page, label: str, option: str) -> None:
    page.locator("[data-testid='stSelectbox']").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def type_date(page, label: str, day: datetime) -> None:
    """Type into Streamlit's date field segment by segment, then leave it (which commits)."""
    for part, text in (("year", f"{day.year}"), ("month", f"{day.month:02d}"),
                       ("day", f"{day.day:02d}")):  # fmt: skip
        page.get_by_role("spinbutton", name=f"{part}, {label}").click()
        page.keyboard.type(text)
    page.locator("h1").first.click()


def wait_until_drawn(page, charts: int) -> None:
    """At least ``charts`` charts, each with its drawing (Vega's SVG) laid out, and the script
    finished."""
    page.wait_for_function(
        f"""() => {{
            const charts = [...document.querySelectorAll("{CHART}")];
            return charts.length >= {charts} && charts.every(c => {{
                const drawing = c.querySelector("svg.marks, canvas.marks, svg, canvas");
                return drawing && drawing.getBoundingClientRect().height > 0;
            }});
        }}""",
        timeout=60_000,
    )
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=60_000)


def test_choosing_a_symbol_range_and_version_draws_every_view(monitor: str) -> None:
    from playwright.sync_api import sync_playwright

    from pricebot_local.browser import chromium_launch_options

    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / "monitoring-browser.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**chromium_launch_options())
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 3400})
            page.goto(monitor, timeout=60_000)
            page.get_by_text("Symbol", exact=True).first.wait_for(timeout=60_000)

            # When the user picks the symbol, what was served, and a five-day range
            choose(page, "Symbol", SYMBOL)
            page.get_by_text(f"{SYMBOL} ret24h: price and predictions").wait_for()
            wait_until_drawn(page, 5)
            choose(page, "Model", "as logged (what was served)")
            page.get_by_text("Served predictions, as logged.").wait_for()
            start = END - timedelta(days=5)
            type_date(page, "Start date (UTC)", start)
            page.get_by_text(f"Range shown: {start:%Y-%m-%d} 01:00").wait_for()
            wait_until_drawn(page, 6)
            served = page.locator("[data-testid='stMain']").inner_text()

            # ... and then version 1, served on only one day of the five: it is replayed
            choose(page, "Model", "version 1")
            page.get_by_text("Replay: replay of version 1").wait_for()
            wait_until_drawn(page, 6)
            replayed = page.locator("[data-testid='stMain']").inner_text()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    # Then every view is drawn, and the replay says it is one
    assert "LTCUSDT ret24h: price and predictions" in served
    assert "Served predictions, as logged." in served
    assert "Replay: replay of version 1 (computed now from stored features)" in replayed
    assert "choose 'as logged' to see them" in replayed
    assert "Not what was served" in replayed
    for view in ("Error over time", "Pool value after fees", "Which version was champion",
                 "Data health"):  # fmt: skip
        assert view in replayed
    assert "Traceback" not in served + replayed
    assert shot.stat().st_size > 50_000
