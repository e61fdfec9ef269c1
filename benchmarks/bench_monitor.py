"""The monitoring page: time until the charts are drawn in the browser, and rows sent per view.

A throw-away PostgreSQL holds one symbol's minute candles for a year (plus the features'
warm-up), its features, and a prediction logged every minute for the year, scored. `pricebot
monitor` serves the page (registry: an empty SQLite MLflow store, so the page shows what was
served, "as logged"); Playwright with Debian's Chromium changes the start date and waits until
the page's last line names the new range and every chart has drawn itself.

Figures:
- ``browser_seconds``: per range (1 day, 30 days, 365 days), from pressing Enter on the new
  start date to every chart drawn; ``first_load_seconds``: opening the page (default: a week).
- ``rows_per_view``: per range, the rows each chart receives (what the data functions return).
- ``core_seconds``: per range, each core query alone (cold, in this process), and the replay of
  a model over the range (features loaded, subsampled, predicted, outcomes joined).
- ``aims``: <= 3 s at 30 days, <= 5 s at a year.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

SYMBOL = "ETHUSDT"
TARGET = "ret24h"
END = datetime(2026, 6, 1, tzinfo=UTC)
RANGES = {"1d": 1, "30d": 30, "365d": 365}
CHART = "[data-testid='stVegaLiteChart']"


def load_data(url: str) -> dict[str, float]:
    from pricebot.transform import update_features
    from tests.fixtures.monitoring_data import (
        log_predictions,
        minute_times,
        noisy_predictor,
        score_returns_in_sql,
        store_candles,
    )

    timings = {}
    started = time.perf_counter()
    candles = store_candles(url, SYMBOL, END - timedelta(days=365 + 26), END)
    timings["candles"] = candles
    timings["store_candles_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    update_features(url, [SYMBOL], full=True)
    timings["features_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    times = minute_times(END - timedelta(days=365), END)
    timings["predictions"] = log_predictions(url, SYMBOL, TARGET, times, noisy_predictor())
    timings["scored"] = score_returns_in_sql(url, SYMBOL)
    timings["log_predictions_s"] = round(time.perf_counter() - started, 1)
    with __import__("psycopg").connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return timings


def core_figures(url: str) -> tuple[dict, dict]:
    """Rows per view and seconds per query, per range, measured in this process."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from pricebot import monitoring
    from pricebot.db import connect
    from pricebot.features import feature_names
    from pricebot.targets import parse_target

    spec = parse_target(TARGET)
    names = feature_names()
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, len(names))), columns=names)
    model = LinearRegression().fit(x, x.to_numpy() @ rng.normal(0, 1e-3, len(names)))
    rows, seconds = {}, {}
    horizon = timedelta(minutes=spec.horizon_minutes)
    with connect(url) as conn:
        for label, days in RANGES.items():
            start, end = END - timedelta(days=days), END
            took: dict[str, float] = {}
            clock = time.perf_counter()

            def lap(name: str, took: dict[str, float] = took) -> None:
                nonlocal clock
                now = time.perf_counter()
                took[name] = round(now - clock, 3)
                clock = now

            prices = monitoring.price_series(conn, SYMBOL, start, end + horizon)
            lap("prices")
            points = monitoring.prediction_points(conn, SYMBOL, spec, start, end, "as logged")
            lap("logged_points")
            window = monitoring.default_window_minutes(start, end, spec.horizon_minutes)
            metrics = monitoring.rolling_metrics(points.frame, spec, window)
            lap("rolling_metrics")
            pools = monitoring.pool_curves(points.frame, spec, points.step_minutes)
            lap("pool_curves")
            timeline = monitoring.champion_timeline(conn, SYMBOL, TARGET, start, end)
            lap("champion_timeline")
            health = monitoring.data_health(url, SYMBOL, start, end)
            lap("data_health")
            replay = monitoring.replay_points(conn, SYMBOL, spec, model, "bench", start, end)
            lap("replay")
            frame = points.frame
            per_series = metrics.groupby(["metric", "series"]).size()
            rows[label] = {
                "step_minutes": points.step_minutes,
                "price_and_predictions": len(prices) + int(frame["predicted_price"].notna().sum()),
                "predicted_growth": int(frame[["prediction", "actual"]].notna().sum().sum()),
                "error_over_time": len(metrics),
                "error_over_time_per_series": int(per_series.max()) if len(per_series) else 0,
                "pool_value": len(pools.curve),
                "champion_timeline": len(timeline),
                "data_health": len(health.symbols) + len(health.gaps) + len(health.runs),
                "replay_points": len(replay),
            }
            seconds[label] = took
    return rows, seconds


def browser_figures(url: str, home: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from pricebot_local.browser import chromium_launch_options
    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "PRICEBOT_DATABASE_URL": url, "PRICEBOT_SYMBOLS": SYMBOL,
           "PRICEBOT_TARGETS": TARGET,
           "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}  # fmt: skip
    log = (home / "monitor.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pricebot_cli", "monitor", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=home,
    )  # fmt: skip
    page_url = f"http://127.0.0.1:{port}"
    figures: dict = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{page_url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the page did not start; see {home / 'monitor.log'}")
            time.sleep(0.3)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(**chromium_launch_options())
            page = browser.new_page(viewport={"width": 1400, "height": 3400})
            began = time.perf_counter()
            page.goto(page_url, timeout=120_000)
            drawn(page, "Range shown")
            figures["first_load_seconds"] = round(time.perf_counter() - began, 2)
            seconds = {}
            for label, days in (("30d", 30), ("365d", 365), ("1d", 1)):
                start = END - timedelta(days=days)
                type_date(page, "Start date (UTC)", start)
                began = time.perf_counter()
                page.locator("h1").first.click()  # leaving the field commits the date
                drawn(page, f"Range shown: {start:%Y-%m-%d} 01:00")
                seconds[label] = round(time.perf_counter() - began, 2)
                page.screenshot(path=str(home / f"monitor-{label}.png"), full_page=True)
            figures["browser_seconds"] = seconds
            figures["charts_drawn"] = page.locator(CHART).count()
            browser.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
    return figures


def type_date(page, label: str, day: datetime) -> None:
    """Type into Streamlit's date field segment by segment (year, month, day)."""
    for part, text in (("year", f"{day.year}"), ("month", f"{day.month:02d}"),
                       ("day", f"{day.day:02d}")):  # fmt: skip
        page.get_by_role("spinbutton", name=f"{part}, {label}").click()
        page.keyboard.type(text)


def drawn(page, caption: str) -> None:
    """The page's last line names the range (the script has finished) and every chart has
    drawn itself (Vega's SVG), at least three of them (a day just ended has no outcomes yet, so
    no error or pool chart). On a timeout the page is kept as a screenshot and text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(caption).first.wait_for(timeout=120_000)
        page.wait_for_function(
            f"""() => {{
                const charts = [...document.querySelectorAll("{CHART}")];
                return charts.length >= 3 && charts.every(c => {{
                    const drawing = c.querySelector("svg.marks, canvas.marks, svg, canvas");
                    return drawing && drawing.getBoundingClientRect().width > 0;
                }});
            }}""",
            timeout=120_000,
        )
    except PlaywrightTimeout:
        where = Path(tempfile.mkdtemp(prefix="pricebot-bench-monitor-failed-"))
        page.screenshot(path=str(where / "page.png"), full_page=True)
        (where / "page.txt").write_text(page.locator("body").inner_text())
        raise RuntimeError(f"the page was not drawn ({caption!r}); see {where}") from None


def run() -> dict:
    from pricebot import db
    from pricebot_local.localdb import LocalPostgres
    from tests.conftest import free_port

    root = Path(tempfile.mkdtemp(prefix="pricebot-bench-monitor-"))
    server = LocalPostgres(root / "pg", port=free_port(), durable=False)
    server.start()
    try:
        url = server.create_database("bench")
        db.upgrade(url)
        figures: dict = {"data": load_data(url)}
        print(f"   data: {figures['data']}", flush=True)
        figures["rows_per_view"], figures["core_seconds"] = core_figures(url)
        figures.update(browser_figures(url, root))
        figures["aims"] = {"30d_seconds": 3.0, "365d_seconds": 5.0}
        figures["screenshots"] = str(root)
        figures["load_average"] = os.getloadavg()
        return figures
    finally:
        server.stop()
        shutil.rmtree(root / "pg", ignore_errors=True)  # a year of minutes: keep only the shots


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2, default=str))
