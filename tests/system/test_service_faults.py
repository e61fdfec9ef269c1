"""The prediction service when its neighbours fail: real servers stopped and started under it.

- PostgreSQL (a server of this test's own) stopped and restarted while clients keep asking:
  503s that say the database is unreachable during the outage, answers again after it, and every
  answer given is in the prediction log exactly once.
- PostgreSQL away longer than the log can hold: the oldest records are dropped and the loss is
  counted, so answered = logged + dropped.
- MLflow (a server of this test's own) stopped: the champion keeps serving, the service stays
  ready, /models says the registry is unreachable; started again, it is reachable again.
- A version whose artifacts were removed from the artifact store, behind a moved alias: the old
  version keeps serving. (A deleted alias is covered in test_service_http.py.)

Every test is bounded in time by pytest-timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from pricebot import db
from pricebot_local.localdb import LocalPostgres
from pricebot_local.localmlflow import start_server, wait_healthy
from tests.conftest import free_port
from tests.fixtures.models import minutes_back, register_model, write_feature_rows
from tests.fixtures.service import Service, on_every_worker, start_service, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(420)]

TARGET = "ret11m"  # only this module registers models for it: the session's MLflow is shared
KEY = "fault-suite-key"


@dataclass
class Answer:
    status: int
    body: dict
    at: float


@dataclass
class Load:
    """Clients posting /predict back to back in threads until stopped."""

    service: Service
    symbol: str
    clients: int = 4
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self) -> None:
        with httpx.Client(timeout=30, headers=self.service.headers) as http:
            while not self._stop.is_set():
                try:
                    answer = http.post(f"{self.service.url}/predict", json={"symbol": self.symbol})
                except httpx.HTTPError as exc:  # the service itself must never go away
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.answers.append(Answer(answer.status_code, answer.json(), time.monotonic()))

    def count(self, status: int, after: float = 0.0) -> int:
        return sum(1 for a in list(self.answers) if a.status == status and a.at > after)

    def wait(self, status: int, more: int, after: float = 0.0, timeout: float = 60) -> None:
        wait_for(lambda: self.count(status, after) >= more, timeout, f"{more} answers {status}")


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL server this test may stop and start (the session's serves everyone). Its
    directory is outside pytest's temporary root, which the postgres user may not enter."""
    root = Path(tempfile.mkdtemp(prefix="pricebot-fault-pg-"))
    server = LocalPostgres(root / "data", port=free_port(), durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def migrated(server: LocalPostgres) -> str:
    url = server.create_database("pricebot")
    db.upgrade(url)
    return url


def logged_ids(url: str) -> list[str]:
    with db.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT request_id FROM predictions")]


def metric(service: Service, name: str, **labels: str) -> float:
    """A series' value summed over the workers (0 when it was never touched)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = service.get("/metrics", headers=service.headers).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def write_recent_features(url: str, symbol: str) -> None:
    write_feature_rows(url, symbol, minutes_back(datetime.now(UTC), 3), seed=1)


# -- PostgreSQL ---------------------------------------------------------------------------------


def test_a_postgres_restart_under_load_is_503_then_recovers_and_logs_every_answer(
    own_postgres: LocalPostgres, mlflow_server: str, tmp_path: Path
) -> None:
    # Given a service under load from four clients
    url = migrated(own_postgres)
    register_model(mlflow_server, "PGFAULTUSDT", TARGET, seed=1)
    write_recent_features(url, "PGFAULTUSDT")
    service = start_service(
        tmp_path, url, mlflow_server, ["PGFAULTUSDT"], target=TARGET, keys=(KEY,),
        PRICEBOT_DB_TIMEOUT_SECONDS="1",
        PRICEBOT_PREDICTION_LOG_RETRY_MAX_SECONDS="2",
    )  # fmt: skip
    try:
        with Load(service, "PGFAULTUSDT") as load:
            load.wait(200, 50)
            # When PostgreSQL stops for a few seconds and starts again
            own_postgres.stop()
            stopped = time.monotonic()
            load.wait(503, 20, after=stopped)
            own_postgres.start()
            restarted = time.monotonic()
            load.wait(200, 50, after=restarted)
        answered = [a.body["request_id"] for a in load.answers if a.status == 200]
        refused = [a for a in load.answers if a.status != 200]
        # Then every answer given is logged, once
        wait_for(lambda: len(logged_ids(url)) >= len(answered), 90, "the log to catch up")
        logged = logged_ids(url)
        dropped = metric(service, "pricebot_prediction_log_rows_total", outcome="dropped")
    finally:
        service.stop()

    assert load.failures == []
    assert {a.status for a in refused} == {503}
    assert all("is unreachable" in a.body["error"] for a in refused)
    assert sorted(logged) == sorted(answered)
    assert dropped == 0


def test_an_outage_longer_than_the_log_holds_drops_the_oldest_and_counts_them(
    own_postgres: LocalPostgres, mlflow_server: str, tmp_path: Path
) -> None:
    # Given a service that answers from its feature cache through an outage, with a small log
    url = migrated(own_postgres)
    register_model(mlflow_server, "PGBOUNDUSDT", TARGET, seed=2)
    write_recent_features(url, "PGBOUNDUSDT")
    service = start_service(
        tmp_path, url, mlflow_server, ["PGBOUNDUSDT"], target=TARGET, keys=(KEY,),
        PRICEBOT_FEATURE_CACHE_SECONDS="3600",
        PRICEBOT_PREDICTION_LOG_MAX_PENDING="30",
        PRICEBOT_PREDICTION_LOG_RETRY_MAX_SECONDS="1",
    )  # fmt: skip
    try:
        with Load(service, "PGBOUNDUSDT", clients=2) as load:
            load.wait(200, 20)  # every worker has the row cached
            # When PostgreSQL is away while far more than 30 answers per worker are given
            own_postgres.stop()
            stopped = time.monotonic()
            load.wait(200, 300, after=stopped)
            own_postgres.start()
        answered = sum(1 for a in load.answers if a.status == 200)

        def settled() -> bool:
            dropped = metric(service, "pricebot_prediction_log_rows_total", outcome="dropped")
            return len(logged_ids(url)) + dropped >= answered

        wait_for(settled, 90, "the log to write what it kept")
        dropped = metric(service, "pricebot_prediction_log_rows_total", outcome="dropped")
        logged = len(logged_ids(url))
    finally:
        service.stop()

    # Then what was not logged is exactly what was dropped, and it was counted
    assert dropped > 0
    assert logged + dropped == answered
    assert "prediction log full" in service.log.read_text()


# -- MLflow -------------------------------------------------------------------------------------


@dataclass
class OwnMlflow:
    uri: str
    backend: str
    artifacts: Path
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_server(self.backend, self.artifacts, self.port, self.log)
        wait_healthy(self.uri, timeout=180, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        self.process = None


@pytest.fixture
def own_mlflow(postgres: LocalPostgres, tmp_path: Path) -> Iterator[OwnMlflow]:
    """An MLflow server this test may stop (the session's serves everyone)."""
    port = free_port()
    server = OwnMlflow(
        f"http://127.0.0.1:{port}",
        postgres.create_database(f"mlflow_fault_{os.getpid()}_{port}"),
        tmp_path / "artifacts",
        tmp_path / "mlflow.log",
        port,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_stopped_registry_keeps_the_champion_serving_and_is_reported(
    database_url: str, own_mlflow: OwnMlflow, tmp_path: Path
) -> None:
    # Given a service serving a champion from its registry
    model = register_model(own_mlflow.uri, "REGFAULTUSDT", TARGET, seed=3)
    write_recent_features(database_url, "REGFAULTUSDT")
    service = start_service(
        tmp_path, database_url, own_mlflow.uri, ["REGFAULTUSDT"], target=TARGET, keys=(KEY,)
    )

    def registry() -> dict:
        return service.get("/models", headers=service.headers).json()

    try:
        # When the registry stops
        own_mlflow.stop()
        wait_for(
            on_every_worker(lambda: registry()["registry"]["reachable"] is False), 120,
            "every worker to notice",
        )  # fmt: skip
        answer = service.post("/predict", {"symbol": "REGFAULTUSDT"})
        status = registry()
        ready = service.get("/readyz").status_code
        # And starts again
        own_mlflow.start()
        wait_for(
            on_every_worker(lambda: registry()["models"][0]["state"] == "serving"), 120,
            "every worker to reach the registry again",
        )  # fmt: skip
    finally:
        service.stop()

    # Then the champion kept serving, the service stayed ready, and /models said why
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == model.version
    assert ready == 200
    assert status["models"][0]["state"] == "kept"
    assert "model registry unreachable" in status["models"][0]["message"]
    assert "model registry unreachable" in status["registry"]["error"]


def test_a_version_whose_artifacts_were_removed_never_replaces_the_champion(
    database_url: str, mlflow_server: str, tmp_path: Path
) -> None:
    # Given a served champion, and a newer version whose artifacts are then deleted from the
    # artifact store (a lifecycle rule, a mistaken clean-up)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    model = register_model(mlflow_server, "ARTFAULTUSDT", TARGET, seed=4)
    write_recent_features(database_url, "ARTFAULTUSDT")
    service = start_service(
        tmp_path, database_url, mlflow_server, ["ARTFAULTUSDT"], target=TARGET, keys=(KEY,)
    )
    try:
        newer = register_model(mlflow_server, "ARTFAULTUSDT", TARGET, seed=5, alias=None)
        client = MlflowClient(mlflow_server)
        location = client.get_model_version_download_uri(newer.name, newer.version)
        get_artifact_repository(location).delete_artifacts()
        assert get_artifact_repository(location).list_artifacts() == []

        # When the alias moves to it
        client.set_registered_model_alias(newer.name, "champion", newer.version)

        def state() -> dict:
            return service.get("/models", headers=service.headers).json()["models"][0]

        wait_for(
            on_every_worker(lambda: state()["alias_version"] == newer.version
                            and state()["state"] == "kept"), 60,
            "every worker to keep the old version",
        )  # fmt: skip
        answer = service.post("/predict", {"symbol": "ARTFAULTUSDT"})
        message = state()["message"]
    finally:
        service.stop()

    # Then the old version keeps answering, and /models says why
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == model.version
    assert f"version {newer.version} failed to load" in message
