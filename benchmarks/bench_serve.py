"""The prediction service under load: latency, throughput, where the time goes, a hot swap.

Everything is real and local: a PostgreSQL of its own, an MLflow tracking server, two champion
models of the shape training registers (an XGBoost regressor inside pricebot's Forecaster pyfunc)
and `bentoml serve` started as `pricebot serve` starts it. The load generator (asyncio +
aiohttp) runs in this process, on the same two cores as the service: the figures are what a
client on the same machine sees, load generator included.

Figures:
- ``load``: per concurrency (1, 16, 64): requests/s, latency percentiles (ms), failures.
- ``stages``: mean time per request in feature lookup, model (memoised output) and logging,
  measured inside the service (Prometheus histograms), and their share of the mean latency
  at concurrency 1; ``model_call_ms`` is one real model invocation.
- ``swap``: the alias moved while 16 clients send requests: failed requests, seconds until the
  new version answers, the poll interval.
- ``cpu_ms_per_request`` (in each ``load`` entry): CPU time per request of the service and of
  the load generator: the figure that does not depend on what else the machine is running.
- ``memory``: resident memory of the service with two models loaded.
- ``logged``: every request answered is in the prediction log after a clean shutdown.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from pricebot_local.stack import free_port

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TARGET = "ret24h"
POLL_SECONDS = 2.0
DURATION = float(os.environ.get("PRICEBOT_BENCH_SECONDS", "8"))
CONCURRENCY = (1, 16, 64)


def register(tracking_uri: str, symbol: str, seed: int, alias: bool = True) -> str:
    """A model of the shape training registers: Forecaster(XGBRegressor), tags, alias."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from xgboost import XGBRegressor

    from pricebot.features import feature_names
    from pricebot.forecaster import Forecaster
    from pricebot.registry import model_name

    names = feature_names("v1")
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(4000, len(names))), columns=names)
    y = 0.001 * x.iloc[:, 0] + rng.normal(0, 0.01, len(x))
    estimator = XGBRegressor(n_estimators=300, max_depth=4, n_jobs=1).fit(x, y)
    forecaster = Forecaster(estimator, names, "regression")
    name = model_name(symbol, TARGET)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("bench-serve")
    with mlflow.start_run():
        mlflow.log_metrics({"mae": 0.01, "rmse": 0.02})
        mlflow.log_dict(
            dict(zip(names, estimator.feature_importances_.tolist(), strict=True)),
            "feature_importance.json",
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=forecaster,
            signature=infer_signature(x.iloc[:5], forecaster.predict(None, x.iloc[:5])),
            pip_requirements=["xgboost", "scikit-learn"],
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri)
    tags = {"symbol": symbol, "target": TARGET, "feature_set": "v1", "horizon_minutes": "1440"}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if alias:
        client.set_registered_model_alias(name, "champion", version)
    return version


def write_features(url: str, symbol: str, seed: int) -> None:
    import pandas as pd

    from pricebot.db import transaction
    from pricebot.features import feature_names
    from pricebot.transform import write_features as write

    names = feature_names("v1")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    index = pd.DatetimeIndex([now - timedelta(minutes=m) for m in range(30, -1, -1)])
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(len(index), len(names))), columns=names, index=index)
    frame.insert(0, "close", 100.0)
    with transaction(url) as conn:
        write(conn, symbol, "v1", frame)


async def load(url: str, concurrency: int, seconds: float, on_answer=None) -> dict[str, Any]:
    """``concurrency`` clients posting predictions back to back for ``seconds``."""
    import aiohttp

    latencies: list[float] = []
    failures: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(index: int) -> None:
            n = index
            while time.perf_counter() < stop_at:
                body = {"symbol": SYMBOLS[n % len(SYMBOLS)], "target": TARGET}
                n += 1
                started = time.perf_counter()
                try:
                    async with session.post(f"{url}/predict", json=body) as answer:
                        data = await answer.json()
                        status = answer.status
                except Exception as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures[str(status)] = failures.get(str(status), 0) + 1
                elif on_answer is not None:
                    on_answer(data)

        began = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "failed": sum(failures.values()),
        "failures": failures,
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 2),
            "p90": round(float(np.percentile(ms, 90)), 2),
            "p99": round(float(np.percentile(ms, 99)), 2),
            "max": round(float(ms.max()), 2),
            "mean": round(float(ms.mean()), 2),
        },
    }


def stage_totals(url: str) -> dict[str, tuple[float, float]]:
    """(sum seconds, count) per stage from the service's /metrics; ``server`` is BentoML's own
    duration of /predict requests (from the ASGI app's first byte in to its last byte out)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name not in (
            "pricebot_stage_seconds",
            "bentoml_service_request_duration_seconds",
        ):
            continue
        for sample in family.samples:
            if family.name.startswith("bentoml"):
                if sample.labels.get("endpoint") != "/predict":
                    continue
                stage = "server"
            else:
                stage = sample.labels.get("stage")
            entry = totals.setdefault(stage, [0.0, 0.0])
            if sample.name.endswith("_sum"):
                entry[0] += sample.value
            elif sample.name.endswith("_count"):
                entry[1] += sample.value
    return {k: (v[0], v[1]) for k, v in totals.items()}


def stage_means(before: dict, after: dict) -> dict[str, float]:
    """Mean milliseconds per observation of each stage between two scrapes."""
    means = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = (total - total0) / (count - count0) * 1000
    return means


def _model_call_ms(url: str) -> float:
    """Mean time of a real model invocation over the service's life so far."""
    total, count = stage_totals(url).get("model_call", (0.0, 0.0))
    return total / count * 1000 if count else float("nan")


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by the service's processes and by this one.

    On a shared machine latency and throughput move with the neighbours' load; CPU time per
    request does not, and 1000 / (service ms per request) is the requests/s one core sustains.
    """
    import psutil

    parent = psutil.Process(pid)
    processes = [parent, *parent.children(recursive=True)]
    service = sum(p.cpu_times().user + p.cpu_times().system for p in processes)
    me = psutil.Process().cpu_times()
    return {"service": service, "load_generator": me.user + me.system}


def rss_mb(pid: int) -> dict[str, float]:
    import psutil

    parent = psutil.Process(pid)
    processes = [parent, *parent.children(recursive=True)]
    sizes = {p.pid: p.memory_info().rss / 2**20 for p in processes}
    return {
        "service_tree_mb": round(sum(sizes.values()), 1),
        "largest_process_mb": round(max(sizes.values()), 1),
        "processes": len(processes),
    }


def run() -> dict[str, Any]:
    from pricebot import db
    from pricebot_local.localdb import LocalPostgres
    from pricebot_local.localmlflow import start_server, wait_healthy
    from pricebot_service.cli import service_command, service_env

    figures: dict[str, Any] = {"symbols": SYMBOLS, "poll_seconds": POLL_SECONDS}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        postgres = LocalPostgres(root / "pg", port=free_port(), durable=False)
        postgres.start()
        mlflow_process = service = None
        try:
            url = postgres.create_database("pricebot")
            db.upgrade(url)
            mlflow_port = free_port()
            mlflow_process = start_server(
                postgres.create_database("mlflow"), root / "artifacts", mlflow_port, root / "ml.log"
            )
            tracking_uri = f"http://127.0.0.1:{mlflow_port}"
            wait_healthy(tracking_uri, timeout=120, process=mlflow_process)
            for seed, symbol in enumerate(SYMBOLS, start=1):
                register(tracking_uri, symbol, seed)
                write_features(url, symbol, seed)

            port = free_port()
            env = service_env(
                {
                    "PRICEBOT_DATABASE_URL": url,
                    "MLFLOW_TRACKING_URI": tracking_uri,
                    "PRICEBOT_SYMBOLS": ",".join(SYMBOLS),
                    "PRICEBOT_TARGETS": TARGET,
                    "PRICEBOT_ALIAS_POLL_SECONDS": str(POLL_SECONDS),
                    "BENTOML_HOME": str(root / "bentoml"),
                    "PRICEBOT_HOME": str(root / "home"),
                }
            )
            started = time.perf_counter()
            with open(root / "service.log", "ab") as log:
                service = subprocess.Popen(
                    service_command(port), stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,
                )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, service)
            figures["seconds_to_ready"] = round(time.perf_counter() - started, 1)
            figures["memory"] = rss_mb(service.pid)

            answered = 0

            def count(_: dict) -> None:
                nonlocal answered
                answered += 1

            asyncio.run(load(base, 4, 2.0, count))  # warm-up
            figures["load"] = []
            stages: dict[str, float] = {}
            for concurrency in CONCURRENCY:
                before = stage_totals(base)
                cpu_before = cpu_seconds(service.pid)
                result = asyncio.run(load(base, concurrency, DURATION, count))
                cpu_after = cpu_seconds(service.pid)
                means = stage_means(before, stage_totals(base))
                result["cpu_ms_per_request"] = {
                    side: round((cpu_after[side] - cpu_before[side]) / result["requests"] * 1000, 3)
                    for side in ("service", "load_generator")
                }
                result["server_side_mean_ms"] = round(means.get("server", float("nan")), 3)
                figures["load"].append(result)
                if concurrency == 1:
                    stages = means
            mean_c1 = figures["load"][0]["latency_ms"]["mean"]
            figures["stages"] = {
                "mean_ms_at_concurrency_1": {k: round(v, 4) for k, v in stages.items()},
                "share_of_server_time_at_concurrency_1": {
                    k: round(stages.get(k, 0.0) / stages["server"], 4)
                    for k in ("features", "model", "log")
                    if stages.get("server")
                },
                "share_of_latency_at_concurrency_1": {
                    k: round(stages.get(k, 0.0) / mean_c1, 4) for k in ("features", "model", "log")
                },
                "model_call_ms": round(_model_call_ms(base), 2),
                "note": "model = memoised output per (version, feature row); model_call = a real "
                "pyfunc invocation (once per symbol per new row or version)",
            }

            figures["swap"] = _swap_under_load(base, tracking_uri, count)
            figures["memory_after_swap"] = rss_mb(service.pid)

            os.killpg(service.pid, signal.SIGTERM)
            figures["exit_code"] = service.wait(timeout=60)
            with db.connect(url) as conn:
                rows = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
            figures["logged"] = {"answered": answered, "rows_in_log": rows}
        finally:
            if service is not None and service.poll() is None:
                os.killpg(service.pid, signal.SIGKILL)
            if mlflow_process is not None:
                os.killpg(mlflow_process.pid, signal.SIGTERM)
                mlflow_process.wait(timeout=30)
            postgres.stop()
    figures["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return figures


def _wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the service exited before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the service was not ready within 180 s")


def _swap_under_load(base: str, tracking_uri: str, count) -> dict[str, Any]:
    """Move BTCUSDT's alias while 16 clients send requests; when does the new version answer?"""
    from mlflow import MlflowClient

    from pricebot.registry import model_name

    new_version = register(tracking_uri, SYMBOLS[0], seed=99, alias=False)
    moved_at: list[float] = []
    first_new: list[float] = []

    def watch(data: dict) -> None:
        count(data)
        if (
            moved_at
            and not first_new
            and data.get("model_version") == new_version
            and data.get("symbol") == SYMBOLS[0]
        ):
            first_new.append(time.perf_counter())

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(load(base, 16, DURATION + POLL_SECONDS + 4, watch))
        await asyncio.sleep(2.0)
        client = MlflowClient(tracking_uri)
        await asyncio.to_thread(
            client.set_registered_model_alias, model_name(SYMBOLS[0], TARGET), "champion",
            new_version,
        )  # fmt: skip
        moved_at.append(time.perf_counter())
        return await task

    result = asyncio.run(scenario())
    return {
        "requests": result["requests"],
        "failed_requests": result["failed"],
        "seconds_until_new_version_answers": (
            round(first_new[0] - moved_at[0], 2) if first_new else None
        ),
        "poll_seconds": POLL_SECONDS,
        "latency_ms_during_swap": result["latency_ms"],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
