"""The deploy's smoke test against a real HTTP server that answers like the prediction service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from typer.testing import CliRunner

from scripts.smoke_test import SmokeTestError, app, smoke_test
from tests.conftest import free_port

PREDICTION = {
    "symbol": "BTCUSDT",
    "target": "ret24h",
    "prediction": 0.0123,
    "model_name": "pricebot-btcusdt-ret24h",
    "model_version": "3",
}


@dataclass
class Behaviour:
    """How the stand-in service answers; tests change it."""

    ready_after: int = 0
    predict_status: int = 200
    predict_body: dict = field(default_factory=lambda: dict(PREDICTION))
    readyz_calls: int = 0
    predict_requests: list[dict] = field(default_factory=list)


@pytest.fixture
def service() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()

    async def readyz(_request: Request) -> PlainTextResponse:
        behaviour.readyz_calls += 1
        ready = behaviour.readyz_calls > behaviour.ready_after
        return PlainTextResponse("ok" if ready else "loading", status_code=200 if ready else 503)

    async def predict(request: Request) -> JSONResponse:
        behaviour.predict_requests.append(await request.json())
        return JSONResponse(behaviour.predict_body, status_code=behaviour.predict_status)

    routes = [Route("/readyz", readyz), Route("/predict", predict, methods=["POST"])]
    port = free_port()
    config = uvicorn.Config(Starlette(routes=routes), port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", behaviour
    server.should_exit = True
    thread.join(timeout=10)


def test_ready_service_with_a_prediction_passes(service: tuple[str, Behaviour]) -> None:
    # Given a service that becomes ready on its third readiness check
    url, behaviour = service
    behaviour.ready_after = 2

    # When the smoke test runs
    result = smoke_test(url, "BTCUSDT", "ret24h", ready_timeout=30, max_wait=0.05)

    # Then it waited for readiness and asked for exactly one prediction
    assert result.ready_after_attempts == 3
    assert result.body["prediction"] == pytest.approx(0.0123)
    assert behaviour.predict_requests == [{"symbol": "BTCUSDT", "target": "ret24h"}]


def test_service_that_never_gets_ready_fails_with_its_last_answer(
    service: tuple[str, Behaviour],
) -> None:
    url, behaviour = service
    behaviour.ready_after = 10**9

    with pytest.raises(SmokeTestError, match=r"readyz not ready after 1 s .*HTTP 503: loading"):
        smoke_test(url, ready_timeout=1, max_wait=0.05)
    assert behaviour.predict_requests == []


def test_no_champion_fails_unless_allowed(service: tuple[str, Behaviour]) -> None:
    # Given a ready service whose registry has no champion yet
    url, behaviour = service
    behaviour.predict_status = 503
    behaviour.predict_body = {"message": "no champion for BTCUSDT", "fix": "pricebot train"}

    # Then the strict smoke test fails, and the one for a brand-new stack passes
    with pytest.raises(SmokeTestError, match=r"answered HTTP 503: .*no champion"):
        smoke_test(url, ready_timeout=5, max_wait=0.05)
    result = smoke_test(url, ready_timeout=5, max_wait=0.05, allow_no_model=True)
    assert result.status == 503


def test_a_prediction_that_is_not_a_number_fails(service: tuple[str, Behaviour]) -> None:
    url, behaviour = service
    behaviour.predict_body = {**PREDICTION, "prediction": None}

    with pytest.raises(SmokeTestError, match="no finite prediction"):
        smoke_test(url, ready_timeout=5, max_wait=0.05)


def test_nothing_listening_fails_naming_the_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(SmokeTestError, match=r"not ready after 1 s .*ConnectError"):
        smoke_test(url, ready_timeout=1, max_wait=0.05)


def test_cli_exits_1_with_the_reason(service: tuple[str, Behaviour]) -> None:
    url, behaviour = service
    behaviour.predict_status = 500
    behaviour.predict_body = {"message": "Unexpected error (KeyError); see the service log."}

    result = CliRunner().invoke(app, ["--url", url, "--ready-timeout", "5"])

    assert result.exit_code == 1
    assert "smoke test failed: POST /predict answered HTTP 500" in result.output


def test_cli_reports_the_prediction(service: tuple[str, Behaviour]) -> None:
    url, _ = service

    result = CliRunner().invoke(app, ["--url", url, "--ready-timeout", "5"])

    assert result.exit_code == 0, result.output
    assert "BTCUSDT ret24h = +0.01230 (model pricebot-btcusdt-ret24h v3)" in result.output
