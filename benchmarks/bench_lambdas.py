"""The Lambdas: import time of each handler (cold start) and one ingest invocation's wall time.

Imports are measured in fresh interpreters with the project's compiled bytecode, tracing off and
on, against issue 17's aims (ingest 150 ms, transform 400 ms) as ratios, together with what the
first invocation imports (the handlers defer their heavy stack), so the whole cold path shows.

The invocation catches up the last 5 minutes for 50 symbols from the simulated exchange into a
throw-away PostgreSQL, with moto standing in for Secrets Manager and EventBridge, the way the
tests call the handler.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.util import free_port

HANDLERS = ("lambdas.ingest.handler", "lambdas.transform.handler")
#: Issue 17's aims for the handler import (compiled bytecode), milliseconds.
AIM_IMPORT_MS = {"lambdas.ingest.handler": 150, "lambdas.transform.handler": 400}
_ENV = {"AWS_DEFAULT_REGION": "eu-west-1"}


def import_ms(module: str, tracing: bool = False, repeats: int = 7) -> float:
    """Median cumulative import time reported by ``python -X importtime`` (microseconds -> ms)."""
    env = {**os.environ, **_ENV, "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true"}
    times = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                              capture_output=True, text=True, env=env, check=True)  # fmt: skip
        pattern = rf"\|\s*(\d+)\s*\|\s*{re.escape(module)}$"
        times.append(int(re.search(pattern, done.stderr, re.MULTILINE).group(1)) / 1000)
    return sorted(times)[len(times) // 2]


_FIRST_CALL = """
import importlib, json, sys, time
started, cpu = time.perf_counter(), time.process_time()
handler = importlib.import_module(sys.argv[1])
imported, imported_cpu = time.perf_counter(), time.process_time()
for name in handler.DEFERRED:
    importlib.import_module(name)
if importlib.import_module("lambdas").tracing_enabled():
    from aws_lambda_powertools.tracing import Tracer
    Tracer()
done, done_cpu = time.perf_counter(), time.process_time()
print(json.dumps({"import": imported - started, "first_call": done - imported,
                  "import_cpu": imported_cpu - cpu, "first_call_cpu": done_cpu - imported_cpu}))
"""


def cold_path_ms(module: str, tracing: bool, repeats: int = 7) -> dict[str, float]:
    """What a cold start pays in imports: the handler module, then what its first invocation
    imports (its DEFERRED modules and, with tracing on, the Tracer and the X-Ray SDK); medians
    of ``repeats`` fresh interpreters, timed inside them (start-up excluded)."""
    env = {**os.environ, **_ENV, "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true"}
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", _FIRST_CALL, module], capture_output=True,
                              text=True, env=env, check=True)  # fmt: skip
        runs.append(json.loads(done.stdout))
    median = lambda key: sorted(r[key] for r in runs)[len(runs) // 2] * 1000  # noqa: E731
    # CPU time is what the imports cost; wall time adds waiting for a core on a shared machine.
    return {
        "import_ms": round(median("import"), 1),
        "import_cpu_ms": round(median("import_cpu"), 1),
        "first_call_imports_ms": round(median("first_call"), 1),
        "first_call_imports_cpu_ms": round(median("first_call_cpu"), 1),
        "cold_path_cpu_ms": round(median("import_cpu") + median("first_call_cpu"), 1),
    }


def import_figures() -> dict:
    """Per handler, tracing off (tests, local runs) and on (as deployed): the import against
    its aim, and the whole cold path of imports for comparison with the eager handlers of
    before (450-730 ms for the ingest handler, all of it at import)."""
    figures: dict = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    for module in HANDLERS:
        for tracing in (False, True):
            key = f"{module}[tracing {'on' if tracing else 'off'}]"
            measured = import_ms(module, tracing)
            cold = cold_path_ms(module, tracing)
            figures[key] = {
                "import_ms_importtime": round(measured, 1),
                "aim_ms": AIM_IMPORT_MS[module],
                "import_share_of_aim_wall": round(measured / AIM_IMPORT_MS[module], 3),
                "import_share_of_aim_cpu": round(cold["import_cpu_ms"] / AIM_IMPORT_MS[module], 3),
                **cold,
            }
    figures["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def invocation_seconds(symbols: int = 50, minutes: int = 5, batch: int | None = None) -> dict:
    """Catch up the last ``minutes`` of ``symbols`` through the handler, as EventBridge would.

    With ``batch`` below ``symbols`` the scheduled invocation fans out and each batch is then
    invoked in turn (on AWS they run side by side); the figures give the slowest batch.
    """
    import boto3
    import psycopg
    from moto import mock_aws

    from pricebot import cloud, db
    from pricebot_exchange.exchange import ExchangeConfig, running_exchange
    from pricebot_local.localdb import LocalPostgres

    names = [f"B{i:03d}USDT" for i in range(symbols)]
    server = LocalPostgres(Path(tempfile.mkdtemp()) / "pg", free_port(), durable=False)
    server.start()
    try:
        url = server.create_database("bench")
        db.upgrade(url)
        # Each symbol already holds everything but the last few minutes.
        config = ExchangeConfig(symbols=names, history_days=1)
        with running_exchange(config, prewarm=True) as market:
            from pricebot.ingest import catch_up
            from pricebot.settings import Settings

            settings = Settings(binance_url=market.url, database_url=url)
            since = datetime.now(UTC) - timedelta(hours=2)
            with db.connect(url, autocommit=True) as conn:
                catch_up(conn, names, since=since, settings=settings)
            with psycopg.connect(url) as conn:
                conn.execute(
                    "DELETE FROM klines WHERE open_time > now() - %s * interval '1 minute'",
                    (minutes,),
                )
            os.environ.update({
                "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                "AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_NAMESPACE": "pricebot", "PRICEBOT_BINANCE_URL": market.url,
                "PRICEBOT_DB_HOST": "127.0.0.1", "PRICEBOT_DB_PORT": str(server.port),
                "PRICEBOT_DB_NAME": "bench", "PRICEBOT_DB_SSLMODE": "disable",
                "PRICEBOT_SYMBOLS": ",".join(names), "PRICEBOT_BATCH_SIZE": str(batch or symbols),
            })  # fmt: skip
            with mock_aws():
                arn = boto3.client("secretsmanager").create_secret(
                    Name="db", SecretString=json.dumps({"username": "pricebot", "password": "x"})
                )["ARN"]
                os.environ["PRICEBOT_DB_SECRET_ARN"] = arn
                from lambdas.ingest import handler
                from pricebot.settings import get_settings

                handler.settings.cache_clear()
                get_settings.cache_clear()
                event = {"version": "0", "id": "bench", "detail-type": "Scheduled Event",
                         "source": "aws.events", "account": "1", "time": "2026-01-01T00:00:00Z",
                         "region": "eu-west-1", "resources": [], "detail": {}}  # fmt: skip
                context = type(
                    "C",
                    (),
                    {
                        "function_name": "bench",
                        "memory_limit_in_mb": 512,
                        "invoked_function_arn": "arn",
                        "aws_request_id": "1",
                    },
                )
                started = time.perf_counter()
                result = handler.lambda_handler(event, context())
                seconds = time.perf_counter() - started
                batches = []
                if "fanned_out" in result:
                    for chunk in cloud.batches(names, batch or symbols):
                        detail = {
                            **event,
                            "source": cloud.EVENT_SOURCE,
                            "detail-type": cloud.INGEST_BATCH,
                            "detail": {"symbols": chunk},
                        }
                        started = time.perf_counter()
                        written = handler.lambda_handler(detail, context())["candles_written"]
                        batches.append((time.perf_counter() - started, written))
    finally:
        server.stop()
    if batches:
        return {"symbols": symbols, "batch_size": batch, "batches": len(batches),
                "fan_out_seconds": round(seconds, 3),
                "slowest_batch_seconds": round(max(b[0] for b in batches), 3),
                "all_batches_seconds": round(sum(b[0] for b in batches), 3),
                "candles_written": sum(b[1] for b in batches)}  # fmt: skip
    return {"symbols": symbols, "minutes": minutes, "seconds": round(seconds, 3),
            "candles_written": result["candles_written"]}  # fmt: skip


def run() -> dict:
    figures: dict = {"imports": import_figures()}
    figures["ingest_invocation"] = invocation_seconds()
    figures["fan_out_400_usdt_pairs"] = invocation_seconds(symbols=400, minutes=5, batch=50)
    manifest = Path("layers/build/manifest.json")
    if manifest.exists():
        figures["artifacts"] = json.loads(manifest.read_text())
    return figures
