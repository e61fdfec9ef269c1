"""The simulated exchange: how fast it generates and serves candles.

* ``generate_year_seconds``: one year of one symbol's synthetic candles (numbers only).
* Serving 30 days of 10 symbols (432k candles) in pages of 1,000 over real HTTP with one
  persistent client, as the ingestion does: ``cold`` (each day generated and formatted on first
  request), ``cold_separate_process`` (the same with ``pricebot exchange`` in its own process),
  ``prewarmed`` (``running_exchange(prewarm=True)``, as the ingestion benchmark should
  start it) and ``parallel_prewarmed`` (four clients in threads). The client parses every page's
  JSON, so this is the ceiling an ingestion run sees from the exchange side.
* ``static_page``: the same loop against a server returning one fixed 1,000-candle page: the
  limit of uvicorn (h11) + httpx + JSON parsing on this machine, measured in the same run.
  ``prewarmed_vs_static`` is the ratio: how close the exchange gets to that limit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.util import free_port
from pricebot_exchange.exchange import ExchangeConfig, running_exchange
from pricebot_exchange.synthetic import ANCHOR_DAY, MINUTES_PER_DAY, SyntheticMarket

SYMBOLS = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT",
           "AVAXUSDT", "DOTUSDT", "LINKUSDT"]  # fmt: skip
DAYS = 30
ROUNDS = 3
NOW = datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC)


def _static_page_server(page: bytes) -> Starlette:
    async def klines(request: Request) -> Response:
        return Response(page, media_type="application/json")

    return Starlette(routes=[Route("/api/v3/klines", klines)])


def _fetch_symbol(url: str, symbol: str, client: httpx.Client) -> tuple[int, int]:
    start = int((NOW - timedelta(days=DAYS)).timestamp() * 1000)
    pages = candles = 0
    while True:
        page = client.get(
            f"{url}/api/v3/klines",
            params={"symbol": symbol, "interval": "1m", "startTime": start, "limit": 1000},
        )
        page.raise_for_status()
        rows = page.json()
        pages, candles = pages + 1, candles + len(rows)
        if len(rows) < 1000 or pages * 1000 >= DAYS * MINUTES_PER_DAY:
            return pages, candles
        start = rows[-1][0] + 60_000


def _serve(url: str, workers: int) -> dict[str, float]:
    started = time.perf_counter()
    clients = [httpx.Client(timeout=30) for _ in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            pool.map(
                lambda i: _fetch_symbol(url, SYMBOLS[i], clients[i % workers]), range(len(SYMBOLS))
            )
        )
    seconds = time.perf_counter() - started
    for client in clients:
        client.close()
    pages = sum(p for p, _ in results)
    candles = sum(c for _, c in results)
    return {
        "seconds": round(seconds, 3),
        "pages": pages,
        "candles": candles,
        "pages_per_second": round(pages / seconds, 1),
        "candles_per_second": round(candles / seconds),
    }


def run() -> dict:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    market = SyntheticMarket(99, "BTCUSDT")
    skeleton = time.perf_counter() - started
    started = time.perf_counter()
    for day in range(ANCHOR_DAY - 365, ANCHOR_DAY):
        market.day(day)
    year = time.perf_counter() - started
    figures: dict = {
        "skeleton_seconds": round(skeleton, 3),
        "generate_year_seconds": round(year, 3),
        "generate_year_minutes": 365 * MINUTES_PER_DAY,
    }
    # Cold: a fresh seed each round, so nothing is cached. The machine is shared, so every
    # figure is the best of ROUNDS, and the exchange and the static page alternate.
    cold = []
    for round_ in range(ROUNDS):
        config = ExchangeConfig(seed=100 + round_, symbols=SYMBOLS, history_days=DAYS, now=NOW)
        with running_exchange(config) as ex:
            cold.append(_serve(ex.url, 1))
    figures["cold"] = _best(cold)
    # The same, with the exchange in its own process (`pricebot exchange`): it then formats on
    # the other core while the client parses, as when ingestion and exchange run side by side.
    cold_process = []
    for round_ in range(ROUNDS):
        with _exchange_process(seed=200 + round_) as url:
            cold_process.append(_serve(url, 1))
    figures["cold_separate_process"] = _best(cold_process)
    config = ExchangeConfig(seed=2, symbols=SYMBOLS, history_days=DAYS, now=NOW)
    started = time.perf_counter()
    with running_exchange(config, prewarm=True) as ex:
        figures["prewarm_seconds"] = round(time.perf_counter() - started, 3)
        page = httpx.get(
            f"{ex.url}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m", "limit": 1000}
        ).content
        with _serve_app(_static_page_server(page)) as static_url:
            prewarmed, parallel, static = [], [], []
            for _ in range(ROUNDS):
                prewarmed.append(_serve(ex.url, 1))
                static.append(_serve(static_url, 1))
                parallel.append(_serve(ex.url, 4))
        figures["requests_served"] = ex.stats.requests()
    figures["prewarmed"] = _best(prewarmed)
    figures["parallel_prewarmed"] = _best(parallel)
    figures["static_page"] = _best(static)
    figures["prewarmed_vs_static"] = round(
        figures["prewarmed"]["candles_per_second"] / figures["static_page"]["candles_per_second"], 2
    )
    figures["cold_vs_static"] = round(
        figures["cold"]["candles_per_second"] / figures["static_page"]["candles_per_second"], 2
    )
    figures["target_candles_per_second"] = 50_000
    # Other work on a shared machine slows everything here alike; the load says how much.
    figures["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
    return figures


@contextmanager
def _exchange_process(seed: int) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "pricebot_cli", "exchange", "--port", str(port),
               "--seed", str(seed), "--symbols", ",".join(SYMBOLS), "--history-days", str(DAYS),
               "--now", NOW.isoformat()]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/api/v3/ping", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pricebot exchange did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    return max(runs, key=lambda r: r["candles_per_second"]) | {"rounds": len(runs)}


@contextmanager
def _serve_app(app: Starlette) -> Iterator[str]:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
