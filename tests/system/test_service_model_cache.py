"""The service started again while MLflow is not up: a real `bentoml serve` answers from the
model cache of its first run, says so in /models, and logs its predictions as usual.

The first run serves the champion from the session's MLflow server (and so keeps it in the
cache); the second is pointed at a port nobody listens on (MLflow not started yet) with the same
cache directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pricebot import db
from pricebot_local.localdb import LocalPostgres
from tests.conftest import TEMPLATE_DB, free_port
from tests.fixtures.models import (
    RegisteredModel,
    minutes_back,
    register_model,
    write_feature_rows,
)
from tests.fixtures.service import Service, drop_database, on_every_worker, start_service, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

TARGET = "ret29m"  # only this module registers models for it: the MLflow server is shared
SYMBOL = "CACHEUSDT"


@pytest.fixture(scope="module")
def database_url_for_cache(postgres: LocalPostgres) -> Iterator[str]:
    name = f"svc_cache_{os.getpid()}"
    url = postgres.create_database(name, template=TEMPLATE_DB)
    write_feature_rows(url, SYMBOL, minutes_back(datetime.now(UTC), 5), seed=3)
    yield url
    drop_database(postgres, name)


@pytest.fixture(scope="module")
def champion(mlflow_server: str) -> RegisteredModel:
    return register_model(mlflow_server, SYMBOL, TARGET, seed=3)


@pytest.fixture(scope="module")
def restarted_without_mlflow(
    database_url_for_cache: str,
    mlflow_server: str,
    champion: RegisteredModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """A service whose first run served the champion, started again with MLflow away."""
    root = tmp_path_factory.mktemp("cached-service")
    cache = str(root / "model-cache")
    first = start_service(
        root, database_url_for_cache, mlflow_server, [SYMBOL], target=TARGET,
        PRICEBOT_MODEL_CACHE_DIR=cache,
    )  # fmt: skip
    try:
        wait_for(
            on_every_worker(lambda: first.post("/predict", {"symbol": SYMBOL}).status_code == 200),
            60,
            "the first run serving on every worker",
        )
    finally:
        first.stop()
    again = start_service(
        root, database_url_for_cache, f"http://127.0.0.1:{free_port()}", [SYMBOL],
        target=TARGET, PRICEBOT_MODEL_CACHE_DIR=cache,
    )  # fmt: skip
    try:
        yield again
    finally:
        again.stop()


def test_it_answers_with_the_cached_champion(
    restarted_without_mlflow: Service, champion: RegisteredModel
) -> None:
    # Given a service restarted while MLflow is not up, When a prediction is asked
    answer = restarted_without_mlflow.post("/predict", {"symbol": SYMBOL})

    # Then the champion its first run served answers, and the answer is logged
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"]) == (champion.name, champion.version)
    request_id = body["request_id"]
    wait_for(lambda: _logged(restarted_without_mlflow.database_url, request_id), 30, "logged")


def test_models_says_it_serves_from_the_cache(restarted_without_mlflow: Service) -> None:
    # Given a service restarted while MLflow is not up, When /models is asked
    body = restarted_without_mlflow.post("/models", {}).json()

    # Then it is ready, the slot is cached, and the registry is reported unreachable
    (slot,) = body["models"]
    assert body["ready"] is True
    assert slot["state"] == "cached"
    assert "model registry unreachable" in slot["message"]
    assert slot["served"]["cached_at"] is not None
    assert body["registry"]["reachable"] is False


def _logged(url: str, request_id: str) -> bool:
    with db.connect(url) as conn:
        row = conn.execute(
            "SELECT 1 FROM predictions WHERE request_id = %s", (request_id,)
        ).fetchone()
    return row is not None
