"""The whole system on one machine, driven the way a person would (issue: `make demo`).

From a clean state: `pricebot up` (simulated exchange), wait until ready, a prediction per
symbol, each in the prediction log, a new version under the champion alias picked up without a
restart, the monitoring page drawn in headless Chromium with a screenshot, then Ctrl-C and no
process left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from pricebot_local.stack import DEMO_CANDIDATES, OFFLINE_TARGET
from tests.conftest import free_port

pytestmark = pytest.mark.system
SYMBOLS = ["BTCUSDT", "ETHUSDT", "ADAUSDT"]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "system"


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    env: dict[str, str]
    log: Path

    @property
    def service(self) -> str:
        return f"http://127.0.0.1:{self.env['PRICEBOT_SERVICE_PORT']}"

    @property
    def monitor(self) -> str:
        return f"http://127.0.0.1:{self.env['PRICEBOT_MONITOR_PORT']}"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.env['PRICEBOT_MLFLOW_PORT']}"

    @property
    def database_url(self) -> str:
        return f"postgresql://pricebot@127.0.0.1:{self.env['PRICEBOT_POSTGRES_PORT']}/pricebot"

    def predict(self, symbol: str) -> dict:
        answer = httpx.post(
            f"{self.service}/predict", json={"symbol": symbol, "target": OFFLINE_TARGET}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc), to check none is left behind."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    # Not under pytest's temporary root: pytest keeps that 0700, and PostgreSQL runs as its own
    # user, which must reach its data directory.
    home = Path(tempfile.mkdtemp(prefix="pricebot-stack-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PRICEBOT_", "MLFLOW_"))},
        "PRICEBOT_HOME": str(home / "state"),
        "PRICEBOT_SYMBOLS": ",".join(SYMBOLS),
        "PRICEBOT_ALIAS_POLL_SECONDS": "2",
        **{f"PRICEBOT_{name}_PORT": str(free_port())
           for name in ("POSTGRES", "EXCHANGE", "MLFLOW", "SERVICE", "MONITOR")},
    }  # fmt: skip
    log = home / "up.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pricebot_cli", "up", "--offline",
             "--trials", "3", "--tick-seconds", "20"],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    running = RunningStack(process, env, log)
    try:
        deadline = time.monotonic() + 600
        while "pricebot is up" not in log.read_text():
            if process.poll() is not None:
                pytest.fail(f"pricebot up exited {process.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"pricebot up not ready in 600 s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield running
    finally:
        if process.poll() is None:  # a failed test: stop it the way a user would, then for sure
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_every_symbol_gets_a_prediction_that_lands_in_the_log(stack: RunningStack) -> None:
    answers = {symbol: stack.predict(symbol) for symbol in SYMBOLS}

    assert {a["symbol"] for a in answers.values()} == set(SYMBOLS)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with psycopg.connect(stack.database_url) as conn:
            logged = {r[0] for r in conn.execute("SELECT DISTINCT symbol FROM predictions")}
        if logged >= set(SYMBOLS):
            break
        time.sleep(0.5)
    assert logged >= set(SYMBOLS)


def test_the_service_runs_the_configured_number_of_workers(stack: RunningStack) -> None:
    # Given the running stack, PRICEBOT_LOCAL_SERVICE_WORKERS left at its default (1) on a
    # machine whose cores would give the service a worker each
    service_log = Path(stack.env["PRICEBOT_HOME"]) / "logs" / "service.log"

    # When its service's workers have logged what they serve
    workers = set(re.findall(r"\[entry_service:pricebot:(\d+)\]", service_log.read_text()))

    # Then one worker serves
    assert workers == {"1"}


def test_the_first_trainings_try_the_demo_families_and_leave_catboost_out(
    stack: RunningStack,
) -> None:
    # Given the stack trained each symbol's first model (its reports are under PRICEBOT_HOME)
    reports = sorted((Path(stack.env["PRICEBOT_HOME"]) / "logs").glob("train-*.json"))
    assert len(reports) == len(SYMBOLS)

    # Then each tried every demo family and no CatBoost, though CatBoost is installed here
    for report in reports:
        tried = {c["name"] for c in json.loads(report.read_text())["candidates"]
                 if c["kind"] == "model"}  # fmt: skip
        assert tried == set(DEMO_CANDIDATES), report.name


def test_a_moved_alias_is_served_without_a_restart(stack: RunningStack) -> None:
    import mlflow
    from mlflow import MlflowClient

    from pricebot.registry import CHAMPION, model_name

    # Given the champion being served, and the service's process
    before = stack.predict("BTCUSDT")
    service_pids = {
        pid for pid in descendants(stack.process.pid)
        if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }  # fmt: skip
    client = MlflowClient(stack.tracking_uri)
    name = model_name("BTCUSDT", OFFLINE_TARGET)
    current = client.get_model_version_by_alias(name, CHAMPION)

    # When a new version is registered from the same artifacts and the alias moves to it
    tags = client.get_model_version(name, current.version).tags
    mlflow.set_tracking_uri(stack.tracking_uri)
    new = mlflow.register_model(f"models:/{name}/{current.version}", name, tags=tags)
    client.set_registered_model_alias(name, CHAMPION, new.version)

    # Then the service answers with the new version within a few poll intervals, same processes
    deadline = time.monotonic() + 60
    while stack.predict("BTCUSDT")["model_version"] != str(new.version):
        assert time.monotonic() < deadline, "the service never picked up the moved alias"
        time.sleep(0.5)
    assert before["model_version"] == str(current.version)
    assert service_pids, "no service process found"
    assert all(alive(pid) for pid in service_pids), "the service restarted"


def test_the_monitoring_page_draws_charts_for_a_chosen_symbol(stack: RunningStack) -> None:
    from playwright.sync_api import sync_playwright

    from pricebot_local.browser import chromium_launch_options

    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / "monitoring.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**chromium_launch_options())
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(stack.monitor, timeout=60_000)
        page.get_by_text("Symbol", exact=True).first.wait_for(timeout=60_000)
        page.locator("[data-testid='stSelectbox']").filter(has_text="Symbol").click()
        page.get_by_role("option", name="ETHUSDT").click()
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()

    assert shot.stat().st_size > 20_000


def test_ctrl_c_stops_everything(stack: RunningStack) -> None:
    # Given the stack's processes (the supervisor's descendants) and its ports
    pids = descendants(stack.process.pid)
    assert pids, "the stack has no child processes?"

    # When the user presses Ctrl-C
    os.killpg(stack.process.pid, signal.SIGINT)
    stack.process.wait(timeout=90)

    # Then no process is left and PostgreSQL is stopped
    time.sleep(1)
    left = [pid for pid in pids if alive(pid)]
    assert left == [], f"left behind: {left}"
    assert "stopped." in stack.log.read_text()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(stack.database_url, connect_timeout=2)


def test_a_warm_smoke_start_reuses_data_and_models_and_exits(stack: RunningStack) -> None:
    # Given the stack stopped by the previous test, its state kept under PRICEBOT_HOME
    assert stack.process.poll() is not None

    # When it starts again in smoke mode
    done = subprocess.run(
        [sys.executable, "-m", "pricebot_cli", "up", "--offline", "--smoke"],
        env=stack.env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip

    # Then it served a prediction and drew the page without training anything, and stopped
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "smoke check passed" in done.stdout
    assert done.stdout.count("reusing its champion") == len(SYMBOLS)
    assert "trained" not in done.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(stack.database_url, connect_timeout=2)
