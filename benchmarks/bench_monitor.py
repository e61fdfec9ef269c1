"""The monitoring page: how soon a fresh browser sees the first chart, and the whole page.

A throw-away PostgreSQL holds one symbol's minute candles for a year (plus the features'
warm-up), its features, and a prediction logged every minute for the year by version 1, the
champion of a real MLflow tracking server (on the same PostgreSQL, like `pricebot up`); version
2 is registered but never served (choosing it replays it). `pricebot monitor` serves the page.

Each measurement is a fresh browser context (empty cache, no cookies) opening the page's address
for a range (``?symbol=...&start=...&end=...``), timed from navigation to

- ``first_chart``: the first chart drawn (Vega's canvas laid out), and
- ``page``: the script finished, the last line naming the range, every chart drawn.

Every repetition asks for a range one hour apart, so no run is served from the page's cache.
The same run measures the floor: a bare Streamlit page with one 2,000-point chart, opened the
same way, interleaved with the page's runs (the machine is shared: its load moves the floor);
and the floor with the page's controls (``floor_with_controls``: the same chart beside the
sidebar's selects and date and time inputs, which Streamlit's browser code loads on first use).

Figures: medians per range (``30d``, ``365d``), the floor, the ratios page/floor, the first open
after the server started (``first_open_after_start``), a replay of version 2 over 30 days, each
core query alone (``core_seconds``), rows per view, and the load average before and after.
Aims (issue 17, for an idle machine): the first chart within 1.5 s at 30 days, 3 s at a year.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
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
RANGES = {"30d": 30, "365d": 365}
REPEATS = 3
CHART = "[data-testid='stVegaLiteChart']"
#: The first ``count`` charts drawn (Vega's canvas or SVG laid out).
DRAWN = """(count) => {
    const charts = [...document.querySelectorAll("[data-testid='stVegaLiteChart']")];
    return charts.length >= count && charts.every((c, i) => {
        if (i >= count) return true;
        const drawing = c.querySelector("canvas.marks, svg.marks");
        return drawing && drawing.getBoundingClientRect().width > 0;
    });
}"""
#: At least ``count`` charts, every one drawn.
ALL_DRAWN = """(count) => {
    const charts = [...document.querySelectorAll("[data-testid='stVegaLiteChart']")];
    return charts.length >= count && charts.every(c => {
        const drawing = c.querySelector("canvas.marks, svg.marks");
        return drawing && drawing.getBoundingClientRect().width > 0;
    });
}"""

FLOOR_PAGE = """
import numpy as np
import pandas as pd
import streamlit as st

st.title("floor")
times = pd.date_range("2026-01-01", periods=2000, freq="h", tz="UTC")
frame = pd.DataFrame({"time": times, "close": np.cumsum(np.ones(2000))})
st.vega_lite_chart(spec={"datasets": {"p": frame}, "data": {"name": "p"}, "mark": "line",
                         "encoding": {"x": {"field": "time", "type": "temporal"},
                                      "y": {"field": "close", "type": "quantitative"}}})
st.caption("Range shown: floor")
"""
#: The page's sidebar controls, put before the floor's chart as the page puts them.
CONTROLS = """
from datetime import date, time, timedelta
import streamlit as st

sidebar = st.sidebar
sidebar.selectbox("Symbol", ["ETHUSDT"])
sidebar.selectbox("Target", ["ret24h"])
for label in ("Start", "End"):
    left, right = sidebar.columns(2)
    left.date_input(f"{label} date (UTC)", value=date(2026, 5, 1))
    right.time_input(f"{label} time (UTC)", value=time(0), step=timedelta(hours=1))
sidebar.selectbox("Model", ["live champion", "as logged"])
"""


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


def register_models(tracking_uri: str) -> dict[str, str]:
    """Version 1 (the champion, whose predictions the log holds) and version 2 (never served),
    each recording a training data end before the year shown, as the training job does."""
    from tests.fixtures.models import register_model

    trained_to = END - timedelta(days=400)
    first = register_model(tracking_uri, SYMBOL, TARGET, seed=1, training_end=trained_to)
    second = register_model(tracking_uri, SYMBOL, TARGET, seed=2, alias=None,
                            training_end=trained_to)  # fmt: skip
    return {"champion": first.version, "unserved": second.version}


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
            points = monitoring.prediction_points(
                conn, SYMBOL, spec, start, end, "as logged", training_end_of=lambda v: None
            )
            lap("logged_points_with_outcomes")
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
            lap("replay_with_outcomes")
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


def serve(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True, cwd=cwd,
    )  # fmt: skip
    return process


def wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"the page did not start; see {log}")
        time.sleep(0.2)


def open_fresh(browser, url: str, shot: Path | None = None, charts: int = 3) -> dict[str, float]:
    """A new browser context (empty cache) opening ``url``: seconds to the first chart and to
    the whole page. On a timeout the page is kept as a screenshot and text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = browser.new_context(viewport={"width": 1400, "height": 3400})
    page = context.new_page()
    try:
        began = time.perf_counter()
        page.goto(url, wait_until="commit", timeout=120_000)
        page.wait_for_function(DRAWN, arg=1, timeout=120_000, polling=50)
        first = time.perf_counter() - began
        page.get_by_text("Range shown").first.wait_for(timeout=120_000)
        page.wait_for_function(ALL_DRAWN, arg=charts, timeout=120_000, polling=50)
        whole = time.perf_counter() - began
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
        return {"first_chart": round(first, 2), "page": round(whole, 2),
                "charts": page.locator(CHART).count()}  # fmt: skip
    except PlaywrightTimeout:
        where = Path(tempfile.mkdtemp(prefix="pricebot-bench-monitor-failed-"))
        page.screenshot(path=str(where / "page.png"), full_page=True)
        (where / "page.txt").write_text(page.locator("body").inner_text())
        raise RuntimeError(f"the page was not drawn ({url}); see {where}") from None
    finally:
        context.close()


def address(page_url: str, days: int, shift_hours: int, model: str | None = None) -> str:
    end = END - timedelta(hours=shift_hours)
    start = end - timedelta(days=days)
    query = (f"?symbol={SYMBOL}&target={TARGET}&start={start:%Y-%m-%dT%H:%M}"
             f"&end={end:%Y-%m-%dT%H:%M}")  # fmt: skip
    return page_url + query + (f"&model={model}" if model else "")


def browser_figures(url: str, tracking_uri: str, versions: dict[str, str], home: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from pricebot_local.browser import chromium_launch_options
    from pricebot_monitor.cli import monitor_command
    from tests.conftest import free_port

    env = {**os.environ, "PRICEBOT_DATABASE_URL": url, "PRICEBOT_SYMBOLS": SYMBOL,
           "PRICEBOT_TARGETS": TARGET, "MLFLOW_TRACKING_URI": tracking_uri}  # fmt: skip
    port = free_port()
    page_url = f"http://127.0.0.1:{port}"
    floors = {"floor": FLOOR_PAGE, "floor_with_controls": CONTROLS + FLOOR_PAGE}
    floor_ports = {name: free_port() for name in floors}
    floor_urls = {name: f"http://127.0.0.1:{p}" for name, p in floor_ports.items()}
    for name, script in floors.items():
        (home / f"{name}.py").write_text(script)
    started = time.perf_counter()
    page_process = serve(
        [sys.executable, "-m", "pricebot_cli", "monitor", "--port", str(port)],
        env, home / "monitor.log", home,
    )  # fmt: skip
    floor_processes = {
        name: serve([sys.executable, "-m", "streamlit", "run", str(home / f"{name}.py"),
                     *monitor_command(floor_ports[name])[4:]], env, home / f"{name}.log", home)
        for name in floors
    }  # fmt: skip
    figures: dict = {}
    try:
        wait_healthy(page_url, page_process, home / "monitor.log")
        figures["server_start_to_health_s"] = round(time.perf_counter() - started, 2)
        for name, process in floor_processes.items():
            wait_healthy(floor_urls[name], process, home / f"{name}.log")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(**chromium_launch_options())
            # The first visitor right after the server answered (imports still warming up).
            figures["first_open_after_start"] = open_fresh(browser, address(page_url, 30, 99))
            for floor_url in floor_urls.values():  # each floor server's own first run
                open_fresh(browser, floor_url, charts=1)
            runs: dict[str, list[dict]] = {label: [] for label in RANGES}
            floor: dict[str, list[dict]] = {name: [] for name in floors}
            for repeat in range(REPEATS):
                for label, days in RANGES.items():
                    shot = home / f"monitor-{label}.png" if repeat == 0 else None
                    runs[label].append(open_fresh(browser, address(page_url, days, repeat), shot))
                    for name, floor_url in floor_urls.items():
                        floor[name].append(open_fresh(browser, floor_url, charts=1))
            figures["replay_30d"] = open_fresh(
                browser, address(page_url, 30, 50, versions["unserved"]), home / "replay.png"
            )
            browser.close()
    finally:
        for process in (page_process, *floor_processes.values()):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    for name, results in floor.items():
        figures[name] = {"first_chart_median": statistics.median(r["first_chart"] for r in results),
                         "page_median": statistics.median(r["page"] for r in results),
                         "runs": results}  # fmt: skip
    floor_first = figures["floor"]["first_chart_median"]
    floor_page = figures["floor"]["page_median"]
    controls_first = figures["floor_with_controls"]["first_chart_median"]
    for label, results in runs.items():
        first = statistics.median(r["first_chart"] for r in results)
        whole = statistics.median(r["page"] for r in results)
        figures[label] = {
            "first_chart_median": first,
            "page_median": whole,
            "first_chart_over_floor": round(first / floor_first, 2),
            "first_chart_over_floor_with_controls": round(first / controls_first, 2),
            "page_over_floor": round(whole / floor_page, 2),
            "runs": results,
        }
    return figures


def run() -> dict:
    from pricebot import db
    from pricebot_local.localdb import LocalPostgres
    from pricebot_local.localmlflow import start_server
    from pricebot_local.localmlflow import wait_healthy as mlflow_healthy
    from tests.conftest import free_port

    root = Path(tempfile.mkdtemp(prefix="pricebot-bench-monitor-"))
    server = LocalPostgres(root / "pg", port=free_port(), durable=False)
    server.start()
    mlflow = None
    try:
        url = server.create_database("bench")
        db.upgrade(url)
        figures: dict = {"data": load_data(url)}
        print(f"   data: {figures['data']}", flush=True)
        mlflow_port = free_port()
        mlflow = start_server(server.create_database("mlflow"), root / "artifacts", mlflow_port,
                              root / "mlflow.log")  # fmt: skip
        tracking_uri = f"http://127.0.0.1:{mlflow_port}"
        mlflow_healthy(tracking_uri, timeout=120, process=mlflow)
        versions = register_models(tracking_uri)
        figures["rows_per_view"], figures["core_seconds"] = core_figures(url)
        figures["load_average_before"] = os.getloadavg()
        figures.update(browser_figures(url, tracking_uri, versions, root))
        figures["load_average_after"] = os.getloadavg()
        figures["aims"] = {"30d_first_chart_s": 1.5, "365d_first_chart_s": 3.0}
        figures["screenshots"] = str(root)
        return figures
    finally:
        if mlflow is not None:
            os.killpg(mlflow.pid, signal.SIGTERM)
            mlflow.wait(timeout=30)
        server.stop()
        shutil.rmtree(root / "pg", ignore_errors=True)  # a year of minutes: keep only the shots


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2, default=str))
