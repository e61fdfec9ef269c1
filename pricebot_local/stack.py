"""The one-machine stack: everything the cloud runs, started and supervised on this machine.

``pricebot up`` is the product's front door. It starts a PostgreSQL kept under ``PRICEBOT_HOME``
(a restart keeps the data), the MLflow tracking server on it, the market source (Binance when
reachable, else the simulated exchange — said plainly), a backfill, features, a trained and
promoted model per symbol (reused on a warm start), the BentoML service and the Streamlit page;
then a scheduler does locally what EventBridge does in the cloud: ingest and transform every
minute, score logged predictions, predict every symbol and target into the log hourly (the
cloud's ``predict`` job, so live performance accrues with nobody calling the API), retrain
daily. Ctrl-C stops every child.

What does not wait for another part starts at once, and boots while the rest works: once
PostgreSQL is up, the MLflow server, the exchange, the service and the page are all started,
then the backfill runs while MLflow boots, and the models train while the service boots (it
follows the champion alias by itself, polling every few seconds here, so each symbol is served
as soon as its model is promoted). Each step prints its seconds.

A warm start (the same ``PRICEBOT_HOME`` again, its service having served before) does not wait
for MLflow to serve: the service keeps every model version it loads in
``<PRICEBOT_HOME>/model-cache`` (:mod:`pricebot.model_cache`) and, while the MLflow server is
still booting, serves the champions this machine served last (``cached`` in /models), then
follows the registry's alias once it answers. So a warm start spawns the service first, before
PostgreSQL, and runs MLflow, the exchange and the page at a lower CPU priority: on two cores
their boot took the CPU the service needed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from rich.console import Console
from rich.table import Table

from pricebot.errors import PricebotError
from pricebot.settings import Settings
from pricebot_local.localdb import LocalPostgres

if TYPE_CHECKING:
    from pricebot.registry import Registry

console = Console()
OFFLINE_TARGET = "ret1h"
SIMULATED = "simulated exchange"
#: How often the local service looks up the champion alias (the cloud's default is 30 s): a
#: model promoted while the stack starts is served within seconds.
SERVICE_POLL_SECONDS = 3.0
#: The BentoML service's name (``pricebot_service.service``): its configuration options, which
#: ``BENTOML_CONFIG_OPTIONS`` overrides, are keyed on it.
BENTO_SERVICE = "pricebot"
#: What ``pricebot predict`` prints once its batch is in the log (pricebot_cli.commands.predict).
_LOGGED = re.compile(r"logged (\d+) prediction\(s\)")
#: Longest a batch may take (it loads every champion, at most 120 s, then predicts) before the
#: scheduler gives up on it and goes on.
PREDICT_TIMEOUT_SECONDS = 600.0
#: Niceness of a child that is not on the way to the first prediction (the monitoring page; on a
#: warm start also MLflow and the exchange): on two cores, everything booting at once made the
#: service wait for CPU that MLflow's and Streamlit's imports took.
BACKGROUND_NICENESS = 10


class PortBusyError(PricebotError, RuntimeError):
    """A port the stack needs is taken; the message names the setting to change."""


@dataclass
class Child:
    """A supervised child process (its own process group, so a stop takes its children too)."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


DEMO_CANDIDATES = ("xgboost", "lightgbm", "ridge", "lasso", "elasticnet", "huber")


@dataclass
class StackOptions:
    # Four weeks of feature rows: the promotion gate decides on the newest of five folds, and it
    # needs about 4.5 days (110 hourly holds) of held-out data to find the demo market's skill
    # reliably (benchmarks/bench_gate.py: power 0.70 with two weeks, 0.95 with four).
    days: int = 28
    trials: int = 10
    # The families the demo's first training tries: every one a plain `pricebot[train]` install
    # has. CatBoost (its own extra) is left out by default: the first prediction waits for the
    # first training, and CatBoost alone took 23% of the demo's training on an idle machine and
    # 46% on a loaded one (benchmarks/bench_train.py). `pricebot up --candidates ...` names any
    # set, CatBoost included.
    candidates: tuple[str, ...] = DEMO_CANDIDATES
    offline: bool | None = None  # None: use Binance when it answers
    smoke: bool = False
    retrain_every: timedelta = timedelta(days=1)
    # The batch predictions, as the cloud's hourly `predict` job (the first on the first tick).
    predict_every: timedelta = timedelta(hours=1)
    tick_seconds: float = 60.0


@dataclass
class Stack:
    settings: Settings
    options: StackOptions = field(default_factory=StackOptions)
    children: list[Child] = field(default_factory=list)
    postgres: LocalPostgres | None = None
    market_url: str = ""
    market_name: str = ""
    events: list[str] = field(default_factory=list)
    _registry: Registry | None = field(default=None, repr=False)
    _last_predict: float | None = field(default=None, repr=False)  # time.monotonic()
    #: A warm start (:meth:`served_before`), decided once when the start begins.
    warm: bool = False

    # --- paths and URLs -------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.settings.home.absolute()

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def database_url(self) -> str:
        return f"postgresql://pricebot@127.0.0.1:{self.settings.postgres_port}/pricebot"

    @property
    def model_cache(self) -> Path:
        return self.home / "model-cache"

    def served_before(self) -> bool:
        """The service served champions here before: it can serve them again from its model
        cache without MLflow, so MLflow and the market source are not on the way to the first
        prediction (on a cold start they are: the first model trains from them)."""
        return (self.model_cache / "served").is_dir()

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.settings.mlflow_port}"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.service_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.monitor_port}"

    def child_env(self) -> dict[str, str]:
        """The environment every child gets: the same settings, pointed at this stack."""
        return {
            **os.environ,
            "PRICEBOT_DATABASE_URL": self.database_url,
            "PRICEBOT_BINANCE_URL": self.market_url or self.settings.binance_url,
            "PRICEBOT_SYMBOLS": ",".join(self.settings.symbols),
            "PRICEBOT_TARGETS": ",".join(self.settings.targets),
            "PRICEBOT_HOME": str(self.home),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "BENTOML_DO_NOT_TRACK": "True",
            "BENTOML_HOME": str(self.home / "bentoml"),
            "PRICEBOT_MODEL_CACHE_DIR": str(self.model_cache),
            "PYTHONUNBUFFERED": "1",
        }

    # --- start ----------------------------------------------------------------------------------
    def check_ports(self) -> None:
        """Fail before starting anything if a port we need is taken by someone else."""
        wanted = {
            "PRICEBOT_MLFLOW_PORT": self.settings.mlflow_port,
            "PRICEBOT_SERVICE_PORT": self.settings.service_port,
            "PRICEBOT_MONITOR_PORT": self.settings.monitor_port,
        }
        if self.options.offline is not False:
            wanted["PRICEBOT_EXCHANGE_PORT"] = self.settings.exchange_port
        pg = LocalPostgres(self.home / "pg", self.settings.postgres_port)
        if not (pg.initialized() and pg.running()):
            wanted["PRICEBOT_POSTGRES_PORT"] = self.settings.postgres_port
        for setting, port in wanted.items():
            if port_in_use(port):
                raise PortBusyError(
                    f"Port {port} is busy (needed for {setting.removeprefix('PRICEBOT_')}). "
                    f"Stop what uses it or set {setting} to a free port."
                )

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.check_ports()
        self.warm = self.served_before()
        if self.warm:  # the service is the way to the first prediction: it starts first
            self.step("Started the service, the page and the market source", self.start_children)
            self.step("PostgreSQL", self.start_postgres)
            self.step("Started MLflow", self.start_mlflow)
        else:  # the first training is: PostgreSQL, MLflow and the market source first
            self.step("PostgreSQL", self.start_postgres)
            self.step("Started MLflow, the market source, the service and the page",
                      self.start_children)  # fmt: skip
        # The supervisor asks the registry about champions later; MLflow's client takes seconds
        # to import, which can happen while PostgreSQL and MLflow's server start (not before the
        # children are spawned: the import holds the interpreter's lock that spawning needs).
        threading.Thread(target=_import_mlflow, name="import-mlflow", daemon=True).start()
        self.step("Market data source", self.wait_market)
        self.step("Backfill and features", self.refresh_data)
        self.step("MLflow tracking server", self.wait_mlflow)
        self.step("Models", self.ensure_models)
        self.step("Prediction service", self.wait_service)
        self.step("Monitoring page", self.wait_monitor)

    def start_children(self) -> None:
        """The children that boot in the background, in the order the first prediction needs
        them. The market is chosen first: offline, it decides the targets the service serves.

        Warm (:attr:`warm`), before PostgreSQL: the service (it reaches PostgreSQL only when
        asked and serves its cached champions without MLflow), the page, then the exchange (its
        command needs the feature set's warm-up, which imports the feature code: half a second
        the service need not wait). Cold, once PostgreSQL is up: MLflow and the exchange first,
        which the first training needs, then the service and the page; started before
        PostgreSQL, their boot had tripled PostgreSQL's first start (initdb, migrations)."""
        if not self.warm:
            self.start_mlflow()
        self.choose_market()
        if self.warm:
            self.start_service()
            self.start_monitor()
            self.start_exchange()
        else:
            self.start_exchange()
            self.start_service()
            self.start_monitor()

    def step(self, title: str, action: Callable[[], object]) -> None:
        started = time.perf_counter()
        with console.status(f"[bold]{title}[/]…"):
            action()
        console.print(f"[green]✓[/] {title} [dim]({time.perf_counter() - started:.1f}s)[/]")

    def start_postgres(self) -> None:
        from pricebot import db

        self.postgres = LocalPostgres(self.home / "pg", self.settings.postgres_port)
        self.postgres.start()
        self.postgres.create_database("pricebot")
        self.postgres.create_database("mlflow")
        db.upgrade(self.database_url)

    def start_mlflow(self) -> None:
        from pricebot_local.localmlflow import server_command, server_env

        assert self.postgres is not None
        self.spawn(
            "mlflow",
            server_command(
                self.postgres.url("mlflow"), self.home / "mlartifacts", self.settings.mlflow_port
            ),
            self.tracking_uri,
            env=server_env(),
            background=self.warm,
        )

    def wait_mlflow(self) -> None:
        from pricebot_local.localmlflow import wait_healthy

        wait_healthy(self.tracking_uri, timeout=180, process=self.child("mlflow").process)

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def choose_market(self) -> None:
        """Binance when it answers (unless offline), else the simulated exchange (started by
        :meth:`start_exchange`, waited for in :meth:`wait_market`); offline, the demo's target
        is the one the simulated market can teach."""
        if self.options.offline is not True and binance_reachable(self.settings.binance_url):
            self.market_url, self.market_name = self.settings.binance_url, "Binance"
            return
        self.market_url = f"http://127.0.0.1:{self.settings.exchange_port}"
        self.market_name = SIMULATED
        console.print(
            f"[yellow]Binance is out of reach ({self.settings.binance_url}): using the simulated "
            f"exchange at {self.market_url}. Its prices are synthetic, not market data.[/]"
        )
        if "PRICEBOT_TARGETS" not in os.environ:
            # The simulated market's learnable structure is an hour-scale swing; at 24 h, two
            # weeks hold too few independent outcomes for any model to pass the promotion gate.
            self.settings = self.settings.model_copy(update={"targets": [OFFLINE_TARGET]})
            console.print(
                f"[yellow]Offline demo: training {OFFLINE_TARGET} on the simulated market's "
                "hour-scale swings (set PRICEBOT_TARGETS to choose).[/]"
            )

    def start_exchange(self) -> None:
        """The simulated exchange, when :meth:`choose_market` chose it."""
        if self.market_name != SIMULATED:
            return
        self.spawn(
            "exchange",
            [sys.executable, "-m", "pricebot_cli", "exchange",
             "--port", str(self.settings.exchange_port),
             "--symbols", ",".join(self.settings.symbols),
             "--history-days", str(self.history.days + 2), "--market", "swinging"],
            self.market_url, background=self.warm,
        )  # fmt: skip

    def wait_market(self) -> None:
        exchange = next((c for c in self.children if c.name == "exchange"), None)
        if exchange is not None:
            wait_http(f"{exchange.url}/api/v3/ping", exchange)

    @property
    def history(self) -> timedelta:
        """``days`` of feature rows need the feature set's warm-up of candles before them."""
        from pricebot.features import warmup_minutes

        return timedelta(days=self.options.days, minutes=warmup_minutes(self.settings.feature_set))

    def refresh_data(self) -> None:
        """Catch up the candles (``days`` plus the warm-up) and the features; score what is due."""
        from pricebot.db import connect
        from pricebot.ingest import catch_up
        from pricebot.predictions import score_predictions
        from pricebot.transform import update_features

        settings = self.settings.model_copy(update={"binance_url": self.market_url})
        since = datetime.now(UTC) - self.history
        with connect(self.database_url, autocommit=True) as conn:
            catch_up(conn, self.settings.symbols, since=since, settings=settings)
        update_features(self.database_url, self.settings.symbols, self.settings.feature_set)
        score_predictions(self.database_url)

    def ensure_models(self, force: bool = False) -> None:
        """Train each symbol and target that has no champion yet (or all, when ``force``), and
        show what each training found from the report it writes (``--report-json``)."""
        for symbol in self.settings.symbols:
            for target in self.settings.targets:
                if not force and self.has_champion(symbol, target):
                    console.print(f"  {symbol} {target}: reusing its champion")
                    continue
                log = self.logs / f"train-{symbol.lower()}-{target}.log"
                report = self.logs / f"train-{symbol.lower()}-{target}.json"
                report.unlink(missing_ok=True)  # never show an older run's report as this one's
                with open(log, "ab") as out:
                    done = subprocess.run(
                        [sys.executable, "-m", "pricebot_cli", "train", "--symbol", symbol,
                         "--target", target, "--trials", str(self.options.trials),
                         "--candidates", ",".join(self.options.candidates),
                         "--report-json", str(report)],
                        env={**self.child_env(), "COLUMNS": "150"}, stdout=out,
                        stderr=subprocess.STDOUT, check=False,
                    )  # fmt: skip
                if done.returncode == 0:
                    print_evaluation(report)
                note = "trained" if done.returncode == 0 else f"training failed (see {log})"
                champion = "champion" if self.has_champion(symbol, target) else "no champion"
                self.events.append(f"{symbol} {target}: {note}, {champion}")
                console.print(f"  {symbol} {target}: {note}; {champion}")

    def has_champion(self, symbol: str, target: str) -> bool:
        try:
            return self.registry.has_champion(symbol, target)
        except Exception:  # a registry that cannot answer has no champion we could serve
            return False

    @property
    def registry(self) -> Registry:
        """One registry client for the supervisor's look-ups (MLflow's client is slow to make)."""
        from pricebot.registry import Registry

        if self._registry is None:
            self._registry = Registry(self.tracking_uri)
        return self._registry

    def start_service(self) -> None:
        """Start the service before there is a model to serve: it boots while the models train,
        and its poller finds each champion (every PRICEBOT_ALIAS_POLL_SECONDS; here
        :data:`SERVICE_POLL_SECONDS` unless set) as soon as it is promoted. Started as
        ``python -m pricebot_service``, ``pricebot serve`` without the whole command tree."""
        port = str(self.settings.service_port)
        poll = os.environ.get("PRICEBOT_ALIAS_POLL_SECONDS", str(SERVICE_POLL_SECONDS))
        options = with_workers(
            os.environ.get("BENTOML_CONFIG_OPTIONS", ""), self.settings.local_service_workers
        )
        self.spawn(
            "service", [sys.executable, "-m", "pricebot_service", "--port", port],
            self.service_url,
            env={"PRICEBOT_ALIAS_POLL_SECONDS": poll, "BENTOML_CONFIG_OPTIONS": options},
        )  # fmt: skip

    def wait_service(self, timeout: float = 180.0) -> None:
        """Ready, and answering for every symbol that has a champion (the poller may not have
        seen a champion promoted a moment ago yet)."""
        child = self.child("service")
        deadline = time.monotonic() + timeout
        wait_http(f"{self.service_url}/readyz", child, timeout=timeout)
        target = self.settings.targets[0]
        for symbol in self.settings.symbols:
            if not self.has_champion(symbol, target):
                continue
            while not answers(self.service_url, symbol, target):
                if not child.alive():
                    raise RuntimeError(f"service exited; see {child.log}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the service did not serve {symbol} {target}'s champion within "
                        f"{timeout:.0f}s; see {child.log}"
                    )
                time.sleep(0.3)

    def start_monitor(self) -> None:
        port = str(self.settings.monitor_port)
        self.spawn(
            "monitor", [sys.executable, "-m", "pricebot_cli", "monitor", "--port", port],
            self.monitor_url, background=True,
        )  # fmt: skip

    def wait_monitor(self) -> None:
        wait_http(f"{self.monitor_url}/_stcore/health", self.child("monitor"), timeout=120)

    def spawn(
        self,
        name: str,
        command: list[str],
        url: str,
        env: dict[str, str] | None = None,
        *,
        background: bool = False,
    ) -> Child:
        """Start a supervised child; ``background`` ones run at :data:`BACKGROUND_NICENESS`."""
        log = self.logs / f"{name}.log"
        out = open(log, "ab")  # noqa: SIM115 - the child writes to it for its whole life
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**self.child_env(), **(env or {})},
            start_new_session=True,
            preexec_fn=in_background if background else die_with_parent,
        )
        child = Child(name, process, url, log)
        self.children.append(child)
        return child

    # --- run ------------------------------------------------------------------------------------
    def tick(self) -> None:
        """What EventBridge does in the cloud, once: ingest, transform, score; and the batch
        predictions when ``predict_every`` has passed since the last (the first tick runs one).

        A failed ingest does not hold the predictions back: they are made from the newest
        feature rows there are, and the log records how old those were."""
        try:
            self.refresh_data()
            self.events.append(f"{datetime.now(UTC):%H:%M:%S} ingest + transform + score ok")
        except Exception as exc:  # the scheduler keeps going; the next tick catches up
            self.events.append(f"{datetime.now(UTC):%H:%M:%S} tick failed: {exc}")
        if self.predict_due():
            self.predict_batch()
        self.events = self.events[-8:]

    def predict_due(self) -> bool:
        if self._last_predict is None:
            return True
        elapsed = time.monotonic() - self._last_predict
        return elapsed >= self.options.predict_every.total_seconds()

    def predict_batch(self) -> int | None:
        """``pricebot predict``, as the cloud's job runs it, on this stack (its own process:
        the models it loads are gone when it ends); returns how many predictions it logged,
        None when it failed (its output is in logs/predict.log)."""
        self._last_predict = time.monotonic()  # a failed batch waits for the next turn too
        log = self.logs / "predict.log"
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pricebot_cli", "predict"],
                env={**self.child_env(), "COLUMNS": "150"}, capture_output=True, text=True,
                check=False, timeout=PREDICT_TIMEOUT_SECONDS,
            )  # fmt: skip
            output, failed = done.stdout + done.stderr, done.returncode != 0
        except subprocess.TimeoutExpired as exc:  # the loop must not hang on a stuck registry
            partial = exc.output or b""  # bytes even with text=True, on a timeout
            if isinstance(partial, bytes):
                partial = partial.decode(errors="replace")
            output, failed = f"{partial}\ntimed out after {exc.timeout:.0f} s\n", True
        with open(log, "a") as out:
            out.write(output)
        logged = _LOGGED.search(output)
        now = f"{datetime.now(UTC):%H:%M:%S}"
        if failed or logged is None:
            self.events.append(f"{now} batch predictions failed (see {log})")
            return None
        count = int(logged.group(1))
        self.events.append(f"{now} {count} predictions logged")
        return count

    def status_table(self) -> Table:
        from pricebot.summary import data_summary

        table = Table(title=f"pricebot · market: {self.market_name}", expand=False)
        table.add_column("part")
        table.add_column("state")
        table.add_column("where")
        table.add_row("PostgreSQL", "[green]up", self.database_url)
        for child in self.children:
            state = "[green]up" if child.alive() else f"[red]exited {child.process.returncode}"
            table.add_row(child.name, state, child.url)
        with contextlib.suppress(Exception):
            for row in data_summary(self.database_url, self.settings.feature_set):
                table.add_row(
                    row.symbol, f"{row.candles:,} candles · {row.feature_rows:,} features",
                    f"newest {row.last:%Y-%m-%d %H:%M} UTC · gaps {row.gaps}",
                )  # fmt: skip
        for event in self.events[-4:]:
            table.add_row("[dim]event", "", f"[dim]{event}")
        return table

    def print_urls(self) -> None:
        console.print(f"  API docs        {self.service_url}/docs")
        console.print(f"  Monitoring page {self.monitor_url}")
        console.print(f"  MLflow UI       {self.tracking_uri}")

    def run_forever(self) -> None:
        from rich.live import Live

        last_train = datetime.now(UTC)
        with Live(self.status_table(), console=console, refresh_per_second=0.5) as live:
            next_tick = time.monotonic() + self.options.tick_seconds
            while True:
                time.sleep(1)
                if time.monotonic() >= next_tick:
                    self.tick()
                    next_tick = time.monotonic() + self.options.tick_seconds
                    if datetime.now(UTC) - last_train >= self.options.retrain_every:
                        self.ensure_models(force=True)
                        last_train = datetime.now(UTC)
                    live.update(self.status_table())

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.postgres is not None:
            self.postgres.stop()


def print_evaluation(path: Path) -> None:
    """Show the evaluation table and the promotion decision from a training report."""
    from pricebot.training_report import read_report, report_cells, report_title

    try:
        report = read_report(path)
    except (OSError, ValueError) as exc:
        console.print(f"[yellow]  no training report to show ({path}: {exc})[/]")
        return
    headings, rows = report_cells(report)
    table = Table(title=report_title(report), title_justify="left")
    for i, heading in enumerate(headings):  # names whole; figures share what width is left
        table.add_column(heading, justify="left" if i < 2 else "right", no_wrap=i < 2)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"winner: [bold]{report.winner.name}[/] ({report.winner.reason})")
    registration = report.registration
    if registration is not None and registration.version is not None:
        console.print(
            f"registered {registration.model_name} version {registration.version} @challenger"
        )
    promoted = registration.promoted if registration is not None else False
    verdict = "[green]promoted to champion[/]" if promoted else "[yellow]not promoted[/]"
    console.print(f"{verdict}: {report.decision.reason}", soft_wrap=True)


def _import_mlflow() -> None:
    with contextlib.suppress(Exception):
        import mlflow.tracking  # noqa: F401


def with_workers(options: str, workers: int) -> str:
    """``BENTOML_CONFIG_OPTIONS`` (space-separated ``key=value``) with the service's worker count,
    unless the options set it already (the user's choice wins). On the one machine every worker
    holds every model and imports BentoML and MLflow while PostgreSQL, MLflow and training start
    too: with one worker the stack took 1.9 GB instead of 2.3 GB here (a warm start's first
    prediction 8.4 and 11.0 s against 10.8 s with one per core: within this machine's noise)."""
    key = f"services.{BENTO_SERVICE}.workers"
    if any(option.split("=", 1)[0] == key for option in options.split()):
        return options
    return " ".join([*options.split(), f"{key}={workers}"])


def die_with_parent() -> None:
    """In the child before exec: have the kernel send SIGTERM if the supervisor dies.

    Children run in their own sessions (a terminal's Ctrl-C reaches only the supervisor, which
    stops them in order), so without this a supervisor killed outright would leave them behind.
    """
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def in_background() -> None:
    """In a background child before exec: :func:`die_with_parent`, at a lower CPU priority."""
    die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(BACKGROUND_NICENESS)


def free_port(low: int = 20_000, high: int = 32_767) -> int:
    """A TCP port nobody listens on, for a server about to start.

    Chosen below Linux's ephemeral range (32768-60999): a port the kernel hands out for
    ``bind(0)`` can be taken by any outgoing connection before the server gets to bind it.
    """
    import random

    for _ in range(200):
        port = random.randint(low, high)
        if not port_in_use(port):
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def binance_reachable(base_url: str, timeout: float = 3.0) -> bool:
    try:
        return httpx.get(f"{base_url}/api/v3/ping", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def service_headers() -> dict[str, str]:
    """The API key the service expects, when one is configured (PRICEBOT_API_KEYS)."""
    keys = [k.strip() for k in os.environ.get("PRICEBOT_API_KEYS", "").split(",") if k.strip()]
    return {"X-API-Key": keys[0]} if keys else {}


def answers(service_url: str, symbol: str, target: str) -> bool:
    """Does the service answer a prediction for ``symbol`` now?"""
    try:
        response = httpx.post(
            f"{service_url}/predict", json={"symbol": symbol, "target": target},
            headers=service_headers(), timeout=10,
        )  # fmt: skip
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def wait_http(url: str, child: Child, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200; fail naming the child's log if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(
                f"{child.name} exited with code {child.process.returncode}; see {child.log}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{child.name} did not answer {url} within {timeout:.0f}s; see {child.log}")
