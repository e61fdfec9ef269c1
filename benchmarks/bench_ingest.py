"""REST catch-up: 30 days of 1-minute candles for 10 symbols from the simulated exchange.

The exchange runs as its own process (as a real exchange is somewhere else: its CPU is not
ours), the database is a throw-away local PostgreSQL with fsync off. Before timing, one pass
fetches every page without writing (it warms the exchange's day cache, and its rate is the
ceiling HTTP + JSON sets on this machine). Figures: end-to-end candles/s, that ceiling and the
ratio of the two, klines requests against the minimum (ceil(candles / 1000) per symbol),
retries, wall time, and the CPU time of each process (ingest, PostgreSQL, exchange) with the
machine's load: on a shared machine the wall-clock rate says as much about the neighbours as
about the code, while the CPU seconds per candle do not.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from pricebot import db
from pricebot.binance import BinanceClient
from pricebot.ingest import catch_up
from pricebot.settings import Settings
from pricebot_local.localdb import LocalPostgres

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT",
           "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT"]  # fmt: skip
DAYS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_exchange(port: int) -> subprocess.Popen:
    command = [sys.executable, "-c", "from pricebot_cli import main; main()", "exchange",
               "--port", str(port),
               "--symbols", ",".join(SYMBOLS), "--history-days", str(DAYS + 1)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the exchange exited: {process.stderr.read().decode()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v3/ping", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the simulated exchange did not answer within 60 s")


def _cpu_seconds(pid: int, with_children: bool = False) -> float:
    """CPU time (user + system) of a process, plus its live and reaped children if asked."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        total += int(fields[13]) + int(fields[14])  # children reaped: cutime, cstime
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += round(_cpu_seconds(int(child)) * ticks)
    return total / ticks


def _postmaster_pid(postgres: LocalPostgres) -> int:
    return int((postgres.data_dir / "postmaster.pid").read_text().split()[0])


def _fetch_only(client: BinanceClient, start_ms: int, end_ms: int) -> int:
    """Every page a catch-up would fetch, validated by nobody and written nowhere."""
    candles = 0
    for symbol in SYMBOLS:
        cursor = start_ms
        while cursor <= end_ms:
            page = client.klines(symbol, cursor, end_ms)
            candles += len(page)
            if len(page) < 1000:
                break
            cursor = int(page[-1][0]) + 60_000
    return candles


def run() -> dict:
    root = Path(tempfile.mkdtemp(prefix="pricebot-bench-ingest-"))
    postgres = LocalPostgres(root / "data", port=_free_port(), durable=False)
    port = _free_port()
    exchange = _start_exchange(port)
    try:
        postgres.start()
        url = postgres.create_database("bench")
        db.upgrade(url)
        settings = Settings(
            _env_file=None,
            database_url=url,
            binance_url=f"http://127.0.0.1:{port}",
            lookback_days=DAYS,
        )
        load_before = os.getloadavg()
        with BinanceClient.from_settings(settings) as client:
            now_ms = client.server_time_ms()
            end_ms = now_ms - now_ms % 60_000 - 60_000
            start_ms = now_ms - now_ms % 60_000 - DAYS * 86_400_000
            started = time.perf_counter()
            fetched = _fetch_only(client, start_ms, end_ms)
            fetch_seconds = time.perf_counter() - started

        postmaster = _postmaster_pid(postgres)
        with BinanceClient.from_settings(settings) as client:
            db0, ex0 = _cpu_seconds(postmaster, True), _cpu_seconds(exchange.pid)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            with db.connect(url, autocommit=True) as conn:
                results = catch_up(conn, SYMBOLS, settings=settings, client=client)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            db_cpu = _cpu_seconds(postmaster, True) - db0
            exchange_cpu = _cpu_seconds(exchange.pid) - ex0
            requests, retries = client.requests, client.retries
            pauses = client.throttle_pauses

        with BinanceClient.from_settings(settings) as client:
            rerun0 = time.perf_counter()
            with db.connect(url, autocommit=True) as conn:
                rerun = catch_up(conn, SYMBOLS, settings=settings, client=client)
            rerun_seconds = time.perf_counter() - rerun0

        candles = sum(r.rows_written for r in results)
        with db.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM klines").fetchone()[0]
        minimum = sum(math.ceil(r.rows_written / 1000) for r in results)
        klines_requests = sum(r.requests for r in results)
        rate = candles / wall
        fetch_rate = fetched / fetch_seconds
        return {
            "symbols": len(SYMBOLS),
            "days": DAYS,
            "candles": candles,
            "candles_stored": stored,
            "wall_seconds": round(wall, 2),
            "candles_per_second": round(rate),
            "target_candles_per_second": 50_000,
            "meets_target": rate >= 50_000,
            "cpu_seconds": {
                "ingest": round(cpu, 2),
                "database": round(db_cpu, 2),
                "exchange": round(exchange_cpu, 2),
            },
            "candles_per_ingest_cpu_second": round(candles / cpu),
            "candles_per_cpu_second_all_three": round(candles / (cpu + db_cpu + exchange_cpu)),
            "fetch_only_candles_per_second": round(fetch_rate),
            "end_to_end_vs_fetch_only": round(rate / fetch_rate, 3),
            "klines_requests": klines_requests,
            "klines_requests_minimum": minimum,
            "requests_total": requests,
            "requests_overhead": "1 exchangeInfo + 1 server time per catch-up",
            "retries": retries,
            "throttle_pauses": pauses,
            "rerun_rows_written": sum(r.rows_written for r in rerun),
            "rerun_seconds": round(rerun_seconds, 3),
            "load_average_1m_before": round(load_before[0], 2),
            "cpus": os.cpu_count(),
        }
    finally:
        exchange.terminate()
        try:
            exchange.wait(timeout=10)
        except subprocess.TimeoutExpired:
            exchange.kill()
        postgres.stop()


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
