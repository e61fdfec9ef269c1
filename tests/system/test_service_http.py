"""The prediction service over HTTP: a real `bentoml serve`, PostgreSQL and MLflow server.

One service is started for the module (about ten seconds), with two API keys (a rotation in
progress); the tests that need their own lifecycle (a shutdown, a database outage, no keys, a
refused start) start another. Symbols are chosen per behaviour so tests do not disturb each
other: BTCUSDT/ETHUSDT have stable champions (ETHUSDT's features are stale, not too old),
SWAPUSDT's alias is moved under load, GONEUSDT's alias is deleted, OLDUSDT's newest features
are older than the service serves, ADAUSDT has no champion at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from pricebot import db
from pricebot.transform import latest_features
from pricebot_local.localdb import LocalPostgres
from pricebot_service.cli import service_command, service_env
from tests.conftest import TEMPLATE_DB, free_port
from tests.fixtures.models import (
    minutes_back,
    register_broken_version,
    register_model,
    write_feature_rows,
)
from tests.fixtures.service import (
    Service,
    drop_database,
    on_every_worker,
    wait_for,
)
from tests.fixtures.service import start_service as _start_service

pytestmark = pytest.mark.system

TARGET = "ret13m"  # only this module registers models for it: the MLflow server is shared
SERVED = ["BTCUSDT", "ETHUSDT", "SWAPUSDT", "GONEUSDT", "OLDUSDT", "ADAUSDT"]
KEY = "test-key-current"
OLD_KEY = "test-key-being-rotated-out"


def start_service(
    root: Path,
    database_url: str,
    tracking_uri: str,
    symbols: list[str],
    *,
    keys: tuple[str, ...] = (KEY,),
    **env: str,
) -> Service:
    return _start_service(
        root, database_url, tracking_uri, symbols, target=TARGET, keys=keys, **env
    )


def create_database(postgres: LocalPostgres, name: str) -> str:
    return postgres.create_database(name, template=TEMPLATE_DB)


def write_recent_features(url: str, symbol: str, seed: int, *, age_minutes: int = 0) -> None:
    now = datetime.now(UTC) - timedelta(minutes=age_minutes)
    write_feature_rows(url, symbol, minutes_back(now, 5), seed=seed)


@pytest.fixture(scope="module")
def service(
    postgres: LocalPostgres, mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    name = f"svc_http_{os.getpid()}"
    url = create_database(postgres, name)
    models = {}
    ages = {"ETHUSDT": 10, "OLDUSDT": 120}  # stale (> 5 min) / too old to serve (> 15 min)
    for seed, symbol in enumerate(SERVED[:5], start=1):
        models[symbol] = register_model(mlflow_server, symbol, TARGET, seed=seed)
        write_recent_features(url, symbol, seed, age_minutes=ages.get(symbol, 0))
    write_recent_features(url, "ADAUSDT", 9)
    running = start_service(
        tmp_path_factory.mktemp("service"), url, mlflow_server, SERVED, keys=(KEY, OLD_KEY)
    )
    running.models = models
    try:
        yield running
    finally:
        running.stop()
        drop_database(postgres, name)


def newest_row(url: str, symbol: str):
    with db.connect(url) as conn:
        return latest_features(conn, symbol, "v1")


def logged_ids(url: str, ids: list[str]) -> set[str]:
    with db.connect(url) as conn:
        rows = conn.execute(
            "SELECT request_id FROM predictions WHERE request_id = ANY(%s)", (ids,)
        ).fetchall()
    return {r[0] for r in rows}


def logged(url: str, symbol: str) -> int:
    with db.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM predictions WHERE symbol = %s", (symbol,)
        ).fetchone()[0]


# -- predictions --------------------------------------------------------------------------------


def test_prediction_is_the_registered_model_applied_to_the_stored_features(
    service: Service, mlflow_server: str
) -> None:
    import mlflow.pyfunc

    model = service.models["BTCUSDT"]
    row = newest_row(service.database_url, "BTCUSDT")
    expected = mlflow.pyfunc.load_model(model.uri).predict(row.as_frame())[0]

    answer = service.post("/predict", {"symbol": "BTCUSDT", "target": TARGET})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["prediction"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert body["implied_price"] == pytest.approx(row.close * (1 + expected))
    assert datetime.fromisoformat(body["feature_time"]) == row.open_time
    assert (body["model_name"], body["model_version"]) == (model.name, model.version)
    assert body["alias"] == "champion"
    assert body["horizon_minutes"] == 13
    assert body["stale"] is False


def test_an_old_feature_row_is_flagged_stale(service: Service) -> None:
    answer = service.post("/predict", {"symbol": "ETHUSDT", "target": TARGET})

    assert answer.status_code == 200, answer.text
    assert answer.json()["stale"] is True
    assert answer.json()["feature_age_seconds"] > 300


def test_a_feature_row_older_than_the_hard_limit_is_503_with_the_fix(service: Service) -> None:
    answer = service.post("/predict", {"symbol": "OLDUSDT", "target": TARGET})

    assert answer.status_code == 503, answer.text
    assert "older than the 15 min this service serves" in answer.json()["error"]
    assert answer.json()["fix"] == "pricebot ingest && pricebot transform"


def test_the_log_records_the_feature_age_the_answer_reported(service: Service) -> None:
    answer = service.post("/predict", {"symbol": "ETHUSDT"}).json()

    def logged_age() -> float | None:
        with db.connect(service.database_url) as conn:
            row = conn.execute(
                "SELECT feature_age_seconds FROM predictions WHERE request_id = %s",
                (answer["request_id"],),
            ).fetchone()
        return None if row is None else row[0]

    wait_for(lambda: logged_age() is not None, what="the logged row")
    assert logged_age() == pytest.approx(answer["feature_age_seconds"], abs=1e-6)


def test_an_explained_prediction_lists_the_contributions_adding_up_to_it(
    service: Service,
) -> None:
    answer = service.post("/predict", {"symbol": "BTCUSDT", "explain": True})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    explanation = body["explanation"]
    contributions = [c["contribution"] for c in explanation["top"]]
    assert explanation["method"] == "linear"
    assert len(contributions) == 5
    assert explanation["base"] + sum(contributions) + explanation["rest"] == pytest.approx(
        body["prediction"], abs=1e-12
    )


def test_target_defaults_to_the_first_served_one(service: Service) -> None:
    answer = service.post("/predict", {"symbol": "btcusdt"})

    assert answer.status_code == 200, answer.text
    assert (answer.json()["symbol"], answer.json()["target"]) == ("BTCUSDT", TARGET)


def test_batch_predicts_each_symbol_and_lists_failures(service: Service) -> None:
    answer = service.post(
        "/predict_batch", {"symbols": ["BTCUSDT", "ETHUSDT", "ADAUSDT", "XRPUSDT"]}
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [p["symbol"] for p in body["predictions"]] == ["BTCUSDT", "ETHUSDT"]
    assert {(e["symbol"], e["status"]) for e in body["errors"]} == {
        ("ADAUSDT", 503),
        ("XRPUSDT", 404),
    }
    assert next(e for e in body["errors"] if e["symbol"] == "ADAUSDT")["fix"] == (
        "pricebot train --symbol ADAUSDT"
    )


def test_every_prediction_made_is_in_the_log(service: Service) -> None:
    answers = [service.post("/predict", {"symbol": "BTCUSDT"}) for _ in range(20)]
    ids = [a.json()["request_id"] for a in answers if a.status_code == 200]

    wait_for(lambda: len(logged_ids(service.database_url, ids)) == len(ids), what="all rows")
    assert len(set(ids)) == 20


# -- models, health, metrics --------------------------------------------------------------------


def test_models_lists_what_is_loaded_with_metrics_and_importance(service: Service) -> None:
    answer = service.post("/models", {})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ready"] is True
    by_symbol = {m["symbol"]: m for m in body["models"]}
    btc = by_symbol["BTCUSDT"]
    assert btc["state"] == "serving"
    assert btc["served"]["version"] == service.models["BTCUSDT"].version
    assert set(btc["served"]["metrics"]) == {"mae", "rmse"}
    assert len(btc["served"]["feature_importance"]) == 17
    assert by_symbol["ADAUSDT"]["state"] == "missing"
    assert "pricebot train --symbol ADAUSDT" in by_symbol["ADAUSDT"]["message"]
    assert body["registry"]["reachable"] is True


def test_models_answers_get_as_well(service: Service) -> None:
    answer = service.get("/models", headers=service.headers)

    assert answer.status_code == 200, answer.text
    assert {m["symbol"] for m in answer.json()["models"]} == set(SERVED)


def test_health_and_readiness_answer(service: Service) -> None:
    assert service.get("/livez").status_code == 200
    assert service.get("/readyz").status_code == 200


def test_metrics_include_predictions_swaps_feature_age_and_the_log(service: Service) -> None:
    service.post("/predict", {"symbol": "BTCUSDT"})
    service.post("/predict", {"symbol": "NOPEUSDT"})

    expected = [
        'pricebot_predictions_total{model_version="',
        "pricebot_model_swaps_total",
        'pricebot_feature_age_seconds{symbol="BTCUSDT"}',
        'pricebot_stage_seconds_count{stage="features"}',
        'pricebot_http_requests_total{route="/predict",status="404"}',
        'pricebot_http_request_duration_seconds_count{route="/predict"}',
        "pricebot_prediction_log_failed_writes_total",
    ]

    # each worker publishes its figures once a second: the other worker's may lag that long
    def missing() -> list[str]:
        text = service.get("/metrics", headers=service.headers).text
        return [series for series in expected if series not in text]

    wait_for(lambda: not missing(), 10, "every series on /metrics")
    assert missing() == []


# -- access -------------------------------------------------------------------------------------


def test_a_request_without_a_key_is_401_naming_the_header(service: Service) -> None:
    answer = httpx.post(f"{service.url}/predict", json={"symbol": "BTCUSDT"})

    assert answer.status_code == 401
    assert "X-API-Key" in answer.json()["error"]
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_wrong_key_is_401(service: Service) -> None:
    answer = httpx.post(
        f"{service.url}/predict", json={"symbol": "BTCUSDT"}, headers={"X-API-Key": KEY + "x"}
    )

    assert answer.status_code == 401
    assert answer.json()["error"].startswith("The API key sent is not valid")


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": OLD_KEY}, {"Authorization": f"Bearer {KEY}"}],
    ids=["second-key-during-rotation", "bearer"],
)
def test_every_configured_key_is_accepted_in_either_header(
    service: Service, headers: dict[str, str]
) -> None:
    answer = httpx.post(f"{service.url}/predict", json={"symbol": "BTCUSDT"}, headers=headers)

    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/", "/docs.json"])
def test_health_the_docs_page_and_the_spec_need_no_key(service: Service, path: str) -> None:
    assert service.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/models", "/metrics", "/schema.json", "/no-such-route"])
def test_every_other_route_needs_a_key(service: Service, path: str) -> None:
    assert service.get(path).status_code == 401


def test_the_spec_documents_the_api_key(service: Service) -> None:
    spec = service.get("/docs.json").json()

    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert spec["components"]["securitySchemes"]["Bearer"]["scheme"] == "bearer"
    assert {"ApiKey": []} in spec["security"]
    assert "401" in spec["paths"]["/predict"]["post"]["responses"]
    assert spec["paths"]["/readyz"]["get"]["security"] == []


# -- faults -------------------------------------------------------------------------------------


def test_unknown_symbol_is_404_naming_what_is_served(service: Service) -> None:
    answer = service.post("/predict", {"symbol": "DOGEUSDT", "target": TARGET})

    assert answer.status_code == 404
    assert "Unknown symbol 'DOGEUSDT'" in answer.json()["error"]
    assert answer.json()["served"]["symbols"] == SERVED


def test_unknown_target_is_404_naming_what_is_served(service: Service) -> None:
    answer = service.post("/predict", {"symbol": "BTCUSDT", "target": "ret99d"})

    assert answer.status_code == 404
    assert "target 'ret99d'" in answer.json()["error"]
    assert answer.json()["served"]["targets"] == [TARGET]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"target": TARGET}, "symbol"), ({"symbol": "BTC/USDT"}, "symbol"), ({"symbol": 7}, "symbol")],
)
def test_malformed_body_is_422_naming_the_field(service: Service, body: dict, field: str) -> None:
    answer = service.post("/predict", body)

    assert answer.status_code == 422
    assert answer.json()["error"].startswith(f"Invalid request body: {field}:")


def test_an_unknown_field_is_422_naming_it(service: Service) -> None:
    answer = service.post("/predict", {"symbol": "BTCUSDT", "symbl": "ETHUSDT"})

    assert answer.status_code == 422
    assert answer.json()["error"] == (
        "Invalid request body: symbl: unknown field (not part of this API)"
    )


def test_a_batch_symbol_breaking_the_pattern_is_422_naming_it(service: Service) -> None:
    answer = service.post("/predict_batch", {"symbols": ["BTCUSDT", "X" * 100_000]})

    assert answer.status_code in (413, 422)
    answer = service.post("/predict_batch", {"symbols": ["BTCUSDT", "X" * 33]})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("Invalid request body: symbols.1:")
    assert "X" * 33 not in answer.text


def test_a_batch_over_the_limit_is_422(service: Service) -> None:
    answer = service.post("/predict_batch", {"symbols": ["BTCUSDT"] * 101})

    assert answer.status_code == 422
    assert "at most 100 symbols per request" in answer.json()["error"]


def test_a_body_over_the_size_cap_is_413(service: Service) -> None:
    answer = httpx.post(
        f"{service.url}/predict",
        content=b'{"symbol": "BTCUSDT", "pad": "' + b" " * 20_000 + b'"}',
        headers={"content-type": "application/json", **service.headers},
    )

    assert answer.status_code == 413
    assert "larger than 16384 bytes" in answer.json()["error"]


def test_a_get_on_predict_is_405(service: Service) -> None:
    answer = service.get("/predict", headers=service.headers)

    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


def test_body_sent_as_a_form_is_415(service: Service) -> None:
    answer = httpx.post(
        f"{service.url}/predict",
        content=b'{"symbol": "BTCUSDT"}',
        headers={"content-type": "multipart/form-data", **service.headers},
    )

    assert answer.status_code == 415
    assert "application/json" in answer.json()["error"]


def test_body_that_is_not_json_is_422(service: Service) -> None:
    answer = httpx.post(
        f"{service.url}/predict",
        content=b"{not json",
        headers={"content-type": "application/json", **service.headers},
    )

    assert answer.status_code == 422
    assert "Invalid request body" in answer.json()["error"]


def test_symbol_without_champion_is_503_with_the_fix_while_others_work(service: Service) -> None:
    missing = service.post("/predict", {"symbol": "ADAUSDT"})
    working = service.post("/predict", {"symbol": "BTCUSDT"})

    assert missing.status_code == 503
    assert missing.json()["fix"] == "pricebot train --symbol ADAUSDT"
    assert "No champion for ADAUSDT" in missing.json()["error"]
    assert working.status_code == 200


# -- the alias ----------------------------------------------------------------------------------


def test_moving_the_alias_under_load_swaps_with_no_failed_request(
    service: Service, mlflow_server: str
) -> None:
    old = service.models["SWAPUSDT"]
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10, headers=service.headers) as http:
            while not stop.is_set():
                answer = http.post(f"{service.url}/predict", json={"symbol": "SWAPUSDT"})
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    versions.append(answer.json()["model_version"])

    thread = threading.Thread(target=client)
    thread.start()
    try:
        wait_for(lambda: len(statuses) > 20, what="requests before the move")
        new = register_model(mlflow_server, "SWAPUSDT", TARGET, seed=42)
        wait_for(
            lambda: len(versions) > 20 and set(versions[-20:]) == {new.version},
            60,
            "every worker answering with the new version",
        )
        served_after = len(statuses)
        wait_for(lambda: len(statuses) > served_after + 20, what="requests after the swap")
    finally:
        stop.set()
        thread.join(30)

    # Each worker swaps when its own poller sees the move, so until the last one has, answers
    # may come from either version; none fails, and once all have, only the new one answers.
    assert set(statuses) == {200}
    assert versions[0] == old.version
    assert set(versions) == {old.version, new.version}
    assert set(versions[-20:]) == {new.version}


def test_vanished_alias_keeps_the_old_model_and_models_says_so(
    service: Service, mlflow_server: str
) -> None:
    model = service.models["GONEUSDT"]
    MlflowClient(mlflow_server).delete_registered_model_alias(model.name, "champion")

    def state() -> dict:
        body = service.post("/models", {}).json()
        return next(m for m in body["models"] if m["symbol"] == "GONEUSDT")

    wait_for(on_every_worker(lambda: state()["state"] == "kept"), 30, "state kept")
    answer = service.post("/predict", {"symbol": "GONEUSDT"})

    assert answer.status_code == 200
    assert answer.json()["model_version"] == model.version
    assert "no longer exists" in state()["message"]


def test_broken_artifact_behind_a_moved_alias_keeps_the_old_model(
    service: Service, mlflow_server: str
) -> None:
    model = service.models["ETHUSDT"]
    broken = register_broken_version(mlflow_server, model)

    def state() -> dict:
        body = service.post("/models", {}).json()
        return next(m for m in body["models"] if m["symbol"] == "ETHUSDT")

    wait_for(
        on_every_worker(lambda: state()["alias_version"] == broken and state()["state"] == "kept"),
        30,
        "every worker keeping the old version",
    )
    answer = service.post("/predict", {"symbol": "ETHUSDT"})

    assert answer.status_code == 200
    assert answer.json()["model_version"] == model.version
    assert f"version {broken} failed to load" in state()["message"]
    assert (
        "pricebot_model_swap_failures_total"
        in service.get("/metrics", headers=service.headers).text
    )


# -- the OpenAPI schema -------------------------------------------------------------------------


def test_fuzzing_the_openapi_schema_finds_no_server_error(service: Service, tmp_path: Path) -> None:
    # This service serves a symbol with no champion on purpose: its documented answer is 503
    # with the command that fixes it, which the fuzzer may reach. Any other 5xx still fails.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "503"]\n'
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file", str(config),
            "run", f"{service.url}/docs.json",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--header", f"X-API-Key: {KEY}",
            "--max-examples", "30",
            "--seed", "7",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# -- lifecycles of their own --------------------------------------------------------------------


def test_every_prediction_is_logged_by_a_clean_shutdown(
    postgres: LocalPostgres, mlflow_server: str, tmp_path: Path
) -> None:
    name = f"svc_shutdown_{os.getpid()}"
    url = create_database(postgres, name)
    try:
        register_model(mlflow_server, "SHUTUSDT", TARGET, seed=1)
        write_recent_features(url, "SHUTUSDT", 1)
        service = start_service(
            tmp_path,
            url,
            mlflow_server,
            ["SHUTUSDT"],
            PRICEBOT_PREDICTION_LOG_FLUSH_MS="600000",  # nothing is written before the stop
            PRICEBOT_PREDICTION_LOG_BATCH_ROWS="100000",
        )
        made = sum(
            service.post("/predict", {"symbol": "SHUTUSDT"}).status_code == 200 for _ in range(30)
        )
        assert logged(url, "SHUTUSDT") == 0

        code = service.stop()

        assert code == 0
        assert made == 30
        assert logged(url, "SHUTUSDT") == 30
    finally:
        drop_database(postgres, name)


def test_database_outage_is_503_and_the_service_recovers(
    postgres: LocalPostgres, mlflow_server: str, tmp_path: Path
) -> None:
    name = f"svc_outage_{os.getpid()}"
    url = postgres.url(name)  # not created yet: the database is unreachable
    register_model(mlflow_server, "DOWNUSDT", TARGET, seed=1)
    service = start_service(tmp_path, url, mlflow_server, ["DOWNUSDT"])
    try:
        down = service.post("/predict", {"symbol": "DOWNUSDT"})
        assert down.status_code == 503
        assert "unreachable" in down.json()["error"]

        create_database(postgres, name)
        write_recent_features(url, "DOWNUSDT", 1)

        wait_for(
            lambda: service.post("/predict", {"symbol": "DOWNUSDT"}).status_code == 200,
            60,
            "recovery",
        )
    finally:
        service.stop()
        drop_database(postgres, name)


def test_a_service_that_requires_a_key_refuses_to_start_without_one(
    postgres: LocalPostgres, mlflow_server: str, tmp_path: Path
) -> None:
    environment = service_env(
        {
            "PRICEBOT_DATABASE_URL": postgres.url("unused"),
            "MLFLOW_TRACKING_URI": mlflow_server,
            "PRICEBOT_REQUIRE_API_KEY": "true",
            "PRICEBOT_API_KEYS": "",
            "BENTOML_HOME": str(tmp_path / "bentoml"),
        }
    )

    done = subprocess.run(
        service_command(free_port()), env=environment, capture_output=True, text=True, timeout=120
    )

    assert done.returncode != 0
    assert "PRICEBOT_REQUIRE_API_KEY is true but PRICEBOT_API_KEYS is empty" in done.stderr


def test_serving_beyond_this_machine_without_a_key_is_refused(tmp_path: Path) -> None:
    environment = {**os.environ, "PRICEBOT_API_KEYS": "", "PRICEBOT_HOME": str(tmp_path)}

    done = subprocess.run(
        [sys.executable, "-m", "pricebot_cli", "serve", "--host", "0.0.0.0"],
        env=environment, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 1
    assert "Refusing to serve on 0.0.0.0 without an API key" in done.stdout + done.stderr


def test_a_service_without_keys_is_open_and_says_so_at_start(
    postgres: LocalPostgres, mlflow_server: str, tmp_path: Path
) -> None:
    service = start_service(tmp_path, postgres.url("unused"), mlflow_server, ["OPENUSDT"], keys=())
    try:
        answer = httpx.post(f"{service.url}/predict", json={"symbol": "OPENUSDT"}, timeout=10)
        spec = service.get("/docs.json").json()
    finally:
        service.stop()

    assert answer.status_code == 503  # no champion, but not 401: the API is open
    assert "the prediction API is OPEN" in service.log.read_text()
    assert "runs without API keys" in spec["info"]["description"]
