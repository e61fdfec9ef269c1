"""``pricebot up``: seconds to the first served prediction, cold and warm; the stack's memory.

Cold: an empty PRICEBOT_HOME (dependencies installed) with the simulated exchange. Warm: the same
home started again (data and models reused). The first prediction is BTCUSDT's (the first symbol
trained). Memory: the summed resident set of every process of the stack (the supervisor's
descendants plus PostgreSQL's, which daemonises). ``steps``: the seconds each step of the start
printed (``✓ <step> (<s>s)``), cold and warm. The machine is shared: the load average before and
after each start is recorded with it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.util import free_port, rss_bytes_of
from pricebot_local.stack import OFFLINE_TARGET, service_headers

STEP = re.compile(r"✓ (?P<step>.+?) \((?P<seconds>[\d.]+)s\)")

SYMBOLS = "BTCUSDT,ETHUSDT,ADAUSDT"


def start(home: Path, ports: dict[str, int], log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PRICEBOT_HOME": str(home),
        "PRICEBOT_SYMBOLS": SYMBOLS,
        **{f"PRICEBOT_{name}_PORT": str(port) for name, port in ports.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pricebot_cli", "up", "--offline"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def seconds_to_first_prediction(process: subprocess.Popen, service: str, started: float) -> float:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"pricebot up exited with {process.returncode}")
        try:
            answer = httpx.post(
                f"{service}/predict",
                json={"symbol": "BTCUSDT", "target": OFFLINE_TARGET},
                headers=service_headers(),
                timeout=5,
            )
            if answer.status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if time.perf_counter() - started > 900:
            raise TimeoutError("no prediction within 900 s")
        time.sleep(0.5)


def postgres_pids(data_dir: Path) -> list[int]:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return []
    master = int(pid_file.read_text().split()[0])
    return [master, *_children(master)]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def descendants(pid: int) -> list[int]:
    result, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            result.append(child)
            todo.append(child)
    return result


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def steps(log: Path, offset: int) -> dict[str, float]:
    """The seconds each step printed, from ``offset`` on in the stack's log."""
    text = log.read_bytes()[offset:].decode(errors="replace")
    return {m["step"]: float(m["seconds"]) for m in STEP.finditer(text)}


def wait_until_up(process: subprocess.Popen, log: Path, offset: int, timeout: float = 900) -> None:
    """Until the stack printed that it is up (every step done), so the steps are complete."""
    deadline = time.monotonic() + timeout
    while b"pricebot is up" not in log.read_bytes()[offset:]:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pricebot up did not come up; see {log}")
        time.sleep(0.5)


def run() -> dict:
    root = Path(tempfile.mkdtemp(prefix="pricebot-bench-stack-"))
    home, log = root / "home", root / "up.log"
    ports = {name: free_port() for name in ("POSTGRES", "EXCHANGE", "MLFLOW", "SERVICE", "MONITOR")}
    service = f"http://127.0.0.1:{ports['SERVICE']}"

    load = {"cold_before": os.getloadavg()}
    started = time.perf_counter()
    process = start(home, ports, log)
    cold = seconds_to_first_prediction(process, service, started)
    wait_until_up(process, log, 0)
    load["cold_after"] = os.getloadavg()
    cold_steps = steps(log, 0)
    time.sleep(5)  # let the page and the first tick settle before measuring memory
    pids = [process.pid, *descendants(process.pid), *postgres_pids(home / "pg")]
    rss = sum(rss_bytes_of(pid) for pid in pids)
    stop(process)

    offset = log.stat().st_size
    load["warm_before"] = os.getloadavg()
    started = time.perf_counter()
    process = start(home, ports, log)
    warm = seconds_to_first_prediction(process, service, started)
    wait_until_up(process, log, offset)
    load["warm_after"] = os.getloadavg()
    warm_steps = steps(log, offset)
    stop(process)
    return {
        "cold_start_to_first_prediction_s": round(cold, 1),
        "warm_restart_to_first_prediction_s": round(warm, 1),
        "steps_cold_s": cold_steps,
        "steps_warm_s": warm_steps,
        "stack_resident_memory_mb": round(rss / 2**20),
        "processes_measured": len(pids),
        "load_average": load,
        "aims": {"cold_s": 60, "warm_s": 10, "memory_mb": 3072},
        "log": str(log),
    }
