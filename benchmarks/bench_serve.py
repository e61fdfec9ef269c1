"""The prediction service against the HTTP floor and `mlflow models serve`, side by side.

Everything is real and local: a PostgreSQL of its own, an MLflow tracking server, champion models
of the shape training registers (an XGBoost regressor inside pricebot's Forecaster pyfunc) for
100 symbols, and `bentoml serve` started as `pricebot serve` starts it, with an API key (as
deployed). Beside it, in the same run and on the same two cores:

- ``floor``: a bare uvicorn + Starlette JSON endpoint (``benchmarks/serve_floor.py``), one
  worker: what any Python JSON API costs here;
- ``mlflow_serve``: ``mlflow models serve`` of the same registered model, sent the features.

The load generator is ``hey`` (``apt-get install -y hey``), 127.0.0.1 only. Each endpoint gets a
warm-up, then ``ROUNDS`` rounds of ``REQUESTS`` requests at 16 concurrent, the endpoints
interleaved round by round so that the neighbours' load on this shared machine hits all of them
alike; the figures are the median over rounds. Aims (issue 17): pricebot ``/predict`` at least
0.5x the floor's requests/s with a p99 at most 3x the floor's; ``/predict_batch`` of 100 symbols
at most 5x the time of one ``/predict`` (both sequential, concurrency 1).

Also measured: CPU time per request of each server (the figure that does not move with the
neighbours' load), where the time goes inside the service (Prometheus histograms), a hot swap
under load (failed requests, seconds until the new version answers), memory, and that every
answer is in the prediction log after a clean shutdown.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from pricebot_local.stack import free_port

SYMBOLS = ["BTCUSDT", "ETHUSDT", *(f"S{i:03d}USDT" for i in range(98))]  # 100 served symbols
LOADED = SYMBOLS[:2]  # what /predict is asked for under load
TARGET = "ret24h"
KEY = "bench-serve-key"
CONCURRENCY = 16
REQUESTS = int(os.environ.get("PRICEBOT_BENCH_REQUESTS", "3000"))
ROUNDS = int(os.environ.get("PRICEBOT_BENCH_ROUNDS", "3"))
SEQUENTIAL = 300  # requests per sequential (concurrency 1) measurement
POLL_SECONDS = 30.0  # the production default: 100 alias look-ups per worker per poll


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
    for key, value in _tags(symbol).items():
        client.set_model_version_tag(name, version, key, value)
    if alias:
        client.set_registered_model_alias(name, "champion", version)
    return version


def register_copy(tracking_uri: str, source_name: str, version: str, symbol: str) -> None:
    """Another symbol's champion made from the same artifact (a registration, not a training)."""
    from mlflow import MlflowClient

    from pricebot.registry import model_name

    client = MlflowClient(tracking_uri)
    original = client.get_model_version(source_name, version)
    name = model_name(symbol, TARGET)
    client.create_registered_model(name)
    copy = client.create_model_version(
        name,
        source=original.source,
        run_id=original.run_id,
        tags=_tags(symbol),
        model_id=original.model_id or original.source.removeprefix("models:/"),
    )
    client.set_registered_model_alias(name, "champion", copy.version)


def _tags(symbol: str) -> dict[str, str]:
    return {"symbol": symbol, "target": TARGET, "feature_set": "v1", "horizon_minutes": "1440"}


def write_features(url: str, symbols: list[str]) -> np.ndarray:
    """Recent feature rows for every symbol; returns BTCUSDT's newest values."""
    import pandas as pd

    from pricebot.db import transaction
    from pricebot.features import feature_names
    from pricebot.transform import write_features as write

    names = feature_names("v1")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    index = pd.DatetimeIndex([now - timedelta(minutes=m) for m in range(30, -1, -1)])
    newest = None
    with transaction(url) as conn:
        for seed, symbol in enumerate(symbols):
            rng = np.random.default_rng(seed)
            values = rng.normal(size=(len(index), len(names)))
            frame = pd.DataFrame(values, columns=names, index=index)
            frame.insert(0, "close", 100.0)
            write(conn, symbol, "v1", frame)
            if newest is None:
                newest = values[-1]
    assert newest is not None
    return newest


# -- hey ----------------------------------------------------------------------------------------


def hey(url: str, body: dict, *, requests: int, concurrency: int, key: str | None) -> dict:
    """One ``hey`` run: requests/s, latency percentiles (ms), status counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(body, file)
    command = ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST",
               "-T", "application/json", "-D", file.name]  # fmt: skip
    if key:
        command += ["-H", f"X-API-Key: {key}"]
    try:
        out = subprocess.run(
            [*command, url], capture_output=True, text=True, check=True, timeout=600
        ).stdout
    finally:
        os.unlink(file.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latencies = {
        f"p{p}": round(float(s) * 1000, 2)
        for p, s in re.findall(r"^\s+(\d+)% in ([\d.]+) secs", out, re.M)
    }
    statuses = {code: int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = re.findall(r"Error distribution:\n((?:\s+\[\d+\].*\n?)+)", out)
    return {
        "requests_per_second": round(rps, 1),
        "latency_ms": latencies,
        "statuses": statuses,
        "errors": errors[0].strip() if errors else None,
    }


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            for process in [parent, *parent.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def measured(
    url: str, body: dict, pids: list[int], *, key: str | None, requests: int, concurrency: int
) -> dict:
    before = cpu_seconds(pids)
    result = hey(url, body, requests=requests, concurrency=concurrency, key=key)
    done = sum(result["statuses"].values()) or 1
    result["server_cpu_ms_per_request"] = round((cpu_seconds(pids) - before) / done * 1000, 3)
    return result


def median_of(rounds: list[dict]) -> dict:
    """Each figure's median over the rounds (statuses summed)."""
    out = {
        "requests_per_second": round(
            statistics.median(r["requests_per_second"] for r in rounds), 1
        ),
        "latency_ms": {
            k: round(statistics.median(r["latency_ms"][k] for r in rounds), 2)
            for k in rounds[0]["latency_ms"]
        },
        "server_cpu_ms_per_request": round(
            statistics.median(r["server_cpu_ms_per_request"] for r in rounds), 3
        ),
        "statuses": {},
        "rounds": [
            {"requests_per_second": r["requests_per_second"], "p99_ms": r["latency_ms"]["p99"]}
            for r in rounds
        ],
    }
    for r in rounds:
        for code, n in r["statuses"].items():
            out["statuses"][code] = out["statuses"].get(code, 0) + n
    errors = [r["errors"] for r in rounds if r["errors"]]
    if errors:
        out["errors"] = errors
    return out


# -- processes ----------------------------------------------------------------------------------


def spawn(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    process.log = log  # type: ignore[attr-defined]
    return process


def _exited(url: str, process: subprocess.Popen) -> RuntimeError:
    log = getattr(process, "log", None)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    return RuntimeError(f"{url}: the server exited with {process.returncode}:\n{tail}")


def wait_http(url: str, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _exited(url, process)
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen | None, timeout: float = 60) -> int | None:
    if process is None or process.poll() is not None:
        return None if process is None else process.returncode
    os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)


# -- in-service figures -------------------------------------------------------------------------


def stage_totals(url: str) -> dict[str, tuple[float, float]]:
    """(sum seconds, count) per stage, and ``server`` = the API layer's time per /predict."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": KEY}, timeout=10).text
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("pricebot_stage_seconds", "pricebot_http_request_duration_seconds"):
            continue
        for sample in family.samples:
            if family.name == "pricebot_http_request_duration_seconds":
                if sample.labels.get("route") != "/predict":
                    continue
                stage = "server"
            else:
                stage = sample.labels["stage"]
            entry = totals.setdefault(stage, [0.0, 0.0])
            if sample.name.endswith("_sum"):
                entry[0] += sample.value
            elif sample.name.endswith("_count"):
                entry[1] += sample.value
    return {k: (v[0], v[1]) for k, v in totals.items()}


def stage_means(before: dict, after: dict) -> dict[str, float]:
    means = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = round((total - total0) / (count - count0) * 1000, 4)
    return means


def rss_mb(pid: int) -> dict[str, float]:
    import psutil

    parent = psutil.Process(pid)
    processes = [parent, *parent.children(recursive=True)]
    sizes = [p.memory_info().rss / 2**20 for p in processes]
    return {
        "service_tree_mb": round(sum(sizes), 1),
        "largest_process_mb": round(max(sizes), 1),
        "processes": len(processes),
    }


def swap_under_load(base: str, tracking_uri: str) -> dict[str, Any]:
    """Move BTCUSDT's alias while 16 clients send requests; when does the new version answer
    on every worker, and does any request fail?"""
    from mlflow import MlflowClient

    from pricebot.registry import model_name

    new_version = register(tracking_uri, "BTCUSDT", seed=99, alias=False)
    statuses: dict[int, int] = {}
    versions: list[tuple[float, str]] = []
    stop_at = [time.monotonic() + POLL_SECONDS * 3 + 30]
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=30, headers={"X-API-Key": KEY}) as http:
            while time.monotonic() < stop_at[0]:
                answer = http.post(f"{base}/predict", json={"symbol": "BTCUSDT"})
                with lock:
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    if answer.status_code == 200:
                        versions.append((time.monotonic(), answer.json()["model_version"]))

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    MlflowClient(tracking_uri).set_registered_model_alias(
        model_name("BTCUSDT", TARGET), "champion", new_version
    )
    moved = time.monotonic()
    last_old = moved
    while time.monotonic() < stop_at[0]:
        time.sleep(0.5)
        with lock:
            recent = [v for t, v in versions if t > time.monotonic() - 3]
            olds = [t for t, v in versions if v != new_version]
        last_old = max(olds) if olds else moved
        if recent and set(recent) == {new_version} and time.monotonic() - last_old > 3:
            stop_at[0] = time.monotonic()
    for thread in threads:
        thread.join(60)
    first_new = next((t for t, v in versions if v == new_version), None)
    return {
        "statuses": statuses,
        "failed_requests": sum(n for s, n in statuses.items() if s != 200),
        "seconds_until_first_worker_answers_new": (
            round(first_new - moved, 2) if first_new else None
        ),
        "seconds_until_every_worker_answers_new": round(max(last_old - moved, 0.0), 2),
        "poll_seconds": POLL_SECONDS,
    }


# -- the run ------------------------------------------------------------------------------------


def run() -> dict[str, Any]:
    from pricebot import db
    from pricebot.features import feature_names
    from pricebot.registry import model_name
    from pricebot_local.localdb import LocalPostgres
    from pricebot_local.localmlflow import start_server, wait_healthy
    from pricebot_service.cli import service_command, service_env

    if shutil.which("hey") is None:
        raise RuntimeError("hey is not installed: apt-get install -y hey")
    figures: dict[str, Any] = {
        "symbols_served": len(SYMBOLS),
        "concurrency": CONCURRENCY,
        "requests_per_round": REQUESTS,
        "rounds": ROUNDS,
        "load_generator": "hey on the same machine, 127.0.0.1",
        "load_average_1m_before": round(os.getloadavg()[0], 2),
    }
    root = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    postgres = LocalPostgres(root / "pg", port=free_port(), durable=False)
    postgres.start()
    processes: dict[str, subprocess.Popen | None] = dict.fromkeys(
        ("mlflow", "service", "floor", "mlflow_serve")
    )
    try:
        url = postgres.create_database("pricebot")
        db.upgrade(url)
        mlflow_port = free_port()
        processes["mlflow"] = start_server(
            postgres.create_database("mlflow"), root / "artifacts", mlflow_port, root / "ml.log"
        )
        tracking_uri = f"http://127.0.0.1:{mlflow_port}"
        wait_healthy(tracking_uri, timeout=180, process=processes["mlflow"])
        first = register(tracking_uri, "BTCUSDT", seed=1)
        register(tracking_uri, "ETHUSDT", seed=2)
        for symbol in SYMBOLS[2:]:
            register_copy(tracking_uri, model_name("BTCUSDT", TARGET), first, symbol)
        btc_row = write_features(url, SYMBOLS)

        env = service_env(
            {
                "PRICEBOT_DATABASE_URL": url,
                "MLFLOW_TRACKING_URI": tracking_uri,
                "PRICEBOT_SYMBOLS": ",".join(SYMBOLS),
                "PRICEBOT_TARGETS": TARGET,
                "PRICEBOT_ALIAS_POLL_SECONDS": str(POLL_SECONDS),
                "PRICEBOT_API_KEYS": KEY,
                "PRICEBOT_REQUIRE_API_KEY": "true",
                "BENTOML_HOME": str(root / "bentoml"),
                "PRICEBOT_HOME": str(root / "home"),
            }
        )
        port = free_port()
        started = time.perf_counter()
        processes["service"] = spawn(service_command(port), root / "service.log", env)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", processes["service"])
        figures["service_seconds_to_ready_with_100_models"] = round(
            time.perf_counter() - started, 1
        )
        figures["memory_with_100_models"] = rss_mb(processes["service"].pid)

        floor_port = free_port()
        processes["floor"] = spawn(
            [sys.executable, "-m", "uvicorn", "benchmarks.serve_floor:app", "--port",
             str(floor_port), "--host", "127.0.0.1", "--log-level", "warning"],
            root / "floor.log", {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )  # fmt: skip
        floor = f"http://127.0.0.1:{floor_port}"
        wait_http_post(f"{floor}/predict", processes["floor"])

        serve_port = free_port()
        processes["mlflow_serve"] = spawn(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m",
             f"models:/{model_name('BTCUSDT', TARGET)}/{first}", "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(serve_port)],
            root / "mlflow-serve.log",
            {  # it execs `uvicorn` through bash: the venv's bin must be on PATH
                **os.environ,
                "MLFLOW_TRACKING_URI": tracking_uri,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            },
        )  # fmt: skip
        mlflow_serve = f"http://127.0.0.1:{serve_port}"
        wait_http(f"{mlflow_serve}/ping", processes["mlflow_serve"])

        names = feature_names("v1")
        endpoints = {
            "floor": (f"{floor}/predict", {"symbol": "BTCUSDT"}, None, processes["floor"]),
            "pricebot_predict": (
                f"{base}/predict",
                {"symbol": "BTCUSDT"},
                KEY,
                processes["service"],
            ),
            "mlflow_serve": (
                f"{mlflow_serve}/invocations",
                {"dataframe_split": {"columns": names, "data": [btc_row.tolist()]}},
                None,
                processes["mlflow_serve"],
            ),
        }
        for target_url, body, key, _ in endpoints.values():  # warm-up
            hey(target_url, body, requests=500, concurrency=CONCURRENCY, key=key)
        rounds: dict[str, list[dict]] = {name: [] for name in endpoints}
        stages_before = stage_totals(base)
        for _ in range(ROUNDS):
            for name, (target_url, body, key, process) in endpoints.items():
                rounds[name].append(
                    measured(target_url, body, [process.pid], key=key, requests=REQUESTS,
                             concurrency=CONCURRENCY)
                )  # fmt: skip
        stages = stage_means(stages_before, stage_totals(base))
        load = {name: median_of(results) for name, results in rounds.items()}
        figures["load_16_concurrent"] = load
        floor_fig, ours = load["floor"], load["pricebot_predict"]
        figures["ratios"] = {
            "predict_throughput_vs_floor": round(
                ours["requests_per_second"] / floor_fig["requests_per_second"], 3
            ),
            "predict_p99_vs_floor": round(
                ours["latency_ms"]["p99"] / floor_fig["latency_ms"]["p99"], 3
            ),
            "predict_throughput_vs_mlflow_serve": round(
                ours["requests_per_second"] / load["mlflow_serve"]["requests_per_second"], 2
            ),
            "aims": "throughput_vs_floor >= 0.5, p99_vs_floor <= 3, batch_vs_single <= 5",
        }
        figures["stages_ms_per_request_under_load"] = stages

        # Sequential: one /predict vs one /predict_batch of all 100 symbols, interleaved.
        pid = [processes["service"].pid]
        singles, batches = [], []
        for _ in range(ROUNDS):
            singles.append(measured(f"{base}/predict", {"symbol": "BTCUSDT"}, pid, key=KEY,
                                    requests=SEQUENTIAL, concurrency=1))  # fmt: skip
            batches.append(measured(f"{base}/predict_batch", {"symbols": SYMBOLS}, pid, key=KEY,
                                    requests=SEQUENTIAL, concurrency=1))  # fmt: skip
        single, batch = median_of(singles), median_of(batches)
        check = httpx.post(f"{base}/predict_batch", json={"symbols": SYMBOLS},
                           headers={"X-API-Key": KEY}, timeout=30).json()  # fmt: skip
        figures["sequential"] = {
            "predict": single,
            "predict_batch_100": batch,
            "batch_answers": {
                "predictions": len(check["predictions"]),
                "errors": len(check["errors"]),
            },
        }
        for quantile in ("p50", "p90"):
            figures["ratios"][f"batch_100_vs_single_{quantile}"] = round(
                batch["latency_ms"][quantile] / single["latency_ms"][quantile], 2
            )
        figures["ratios"]["batch_100_vs_single_server_cpu"] = round(
            batch["server_cpu_ms_per_request"] / single["server_cpu_ms_per_request"], 2
        )

        figures["swap"] = swap_under_load(base, tracking_uri)

        stop(processes["floor"])
        stop(processes["mlflow_serve"])
        answered = _answered(base)
        figures["exit_code"] = stop(processes["service"])
        with db.connect(url) as conn:
            rows = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
        figures["logged"] = {"answered_200": answered, "rows_in_log": rows}
    finally:
        for process in processes.values():
            stop(process)
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
    figures["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return figures


def wait_http_post(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _exited(url, process)
        try:
            if httpx.post(url, json={"symbol": "X"}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _answered(base: str) -> int:
    """Predictions answered with 200 so far, from the service's own counter (all workers)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", headers={"X-API-Key": KEY}, timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "pricebot_predictions":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
