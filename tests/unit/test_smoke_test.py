"""The deploy's smoke test against a real HTTP server that answers like the deployed stack: the
service (API key, 401 without it) and the monitoring page behind the load balancer's sign-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from scripts.smoke_test import API_KEY_ENV, SmokeTestError, app, smoke_test
from tests.conftest import free_port

KEY = "k" * 40
PREDICTION = {
    "symbol": "BTCUSDT",
    "target": "ret24h",
    "prediction": 0.0123,
    "model_name": "pricebot-btcusdt-ret24h",
    "model_version": "3",
}
NO_CHAMPION = {"message": "no champion for BTCUSDT", "fix": "pricebot train"}
SIGN_IN = "https://pricebot-test.auth.eu-west-1.amazoncognito.com/oauth2/authorize"


@dataclass
class Behaviour:
    """How the stand-in stack answers; tests change it."""

    ready_after: int = 0
    keys: tuple[str, ...] = (KEY,)
    check_key: bool = True
    predict_status: int = 200
    predict_body: dict = field(default_factory=lambda: dict(PREDICTION))
    champion_after: int = 0  # answer "no champion" to this many keyed predictions first
    page: str = "sign-in"  # sign-in | open | self-redirect
    readyz_calls: int = 0
    predict_requests: list[dict] = field(default_factory=list)


@pytest.fixture
def stack() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()

    async def readyz(_request: Request) -> PlainTextResponse:
        behaviour.readyz_calls += 1
        ready = behaviour.readyz_calls > behaviour.ready_after
        return PlainTextResponse("ok" if ready else "loading", status_code=200 if ready else 503)

    async def predict(request: Request) -> JSONResponse:
        key = request.headers.get("x-api-key")
        behaviour.predict_requests.append({"key": key, **(await request.json())})
        if behaviour.check_key and key not in behaviour.keys:
            return JSONResponse({"error": "an API key is required"}, status_code=401)
        keyed = sum(1 for r in behaviour.predict_requests if r["key"])
        if key and keyed <= behaviour.champion_after:
            return JSONResponse(NO_CHAMPION, status_code=503)
        return JSONResponse(behaviour.predict_body, status_code=behaviour.predict_status)

    async def monitor(request: Request) -> Response:
        if behaviour.page == "open":
            return PlainTextResponse("<html>Streamlit</html>")
        if behaviour.page == "self-redirect":
            return RedirectResponse(str(request.url), status_code=302)
        return RedirectResponse(f"{SIGN_IN}?client_id=abc&redirect_uri=x", status_code=302)

    routes = [
        Route("/readyz", readyz),
        Route("/predict", predict, methods=["POST"]),
        Route("/monitor/", monitor),
    ]
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


def run(url: str, **kwargs: object):
    return smoke_test(url, api_key=KEY, ready_timeout=30, max_wait=0.05, **kwargs)


def test_a_ready_locked_service_with_a_prediction_passes(stack: tuple[str, Behaviour]) -> None:
    # Given a service that becomes ready on its third readiness check
    url, behaviour = stack
    behaviour.ready_after = 2

    # When the smoke test runs
    result = run(url, symbol="BTCUSDT", target="ret24h")

    # Then it waited, was refused once without the key, and got one prediction with it
    assert result.ready_after_attempts == 3
    assert result.body["prediction"] == pytest.approx(0.0123)
    assert behaviour.predict_requests == [
        {"key": None, "symbol": "BTCUSDT", "target": "ret24h"},
        {"key": KEY, "symbol": "BTCUSDT", "target": "ret24h"},
    ]


def test_a_service_that_answers_without_a_key_fails(stack: tuple[str, Behaviour]) -> None:
    url, behaviour = stack
    behaviour.check_key = False

    with pytest.raises(SmokeTestError, match="without an API key answered HTTP 200, not 401"):
        run(url)


def test_a_refused_key_fails_saying_so(stack: tuple[str, Behaviour]) -> None:
    url, behaviour = stack
    behaviour.keys = ("another-key",)

    with pytest.raises(SmokeTestError, match="refused the API key"):
        run(url)


def test_without_a_key_to_test_with_it_fails_before_any_request(
    stack: tuple[str, Behaviour],
) -> None:
    url, behaviour = stack
    with pytest.raises(SmokeTestError, match=API_KEY_ENV):
        smoke_test(url, api_key="", ready_timeout=5)
    assert behaviour.readyz_calls == 0


def test_service_that_never_gets_ready_fails_with_its_last_answer(
    stack: tuple[str, Behaviour],
) -> None:
    url, behaviour = stack
    behaviour.ready_after = 10**9

    with pytest.raises(SmokeTestError, match=r"readyz not ready after 1 s .*HTTP 503: loading"):
        smoke_test(url, api_key=KEY, ready_timeout=1, max_wait=0.05)
    assert behaviour.predict_requests == []


def test_no_champion_fails_unless_allowed(stack: tuple[str, Behaviour]) -> None:
    # Given a ready service whose registry has no champion
    url, behaviour = stack
    behaviour.champion_after = 10**9

    # Then the strict smoke test fails, and the one for a stack never promoted passes
    with pytest.raises(SmokeTestError, match=r"answered HTTP 503: .*no champion"):
        run(url)
    assert run(url, allow_no_model=True).status == 503


def test_a_champion_promoted_meanwhile_is_waited_for(stack: tuple[str, Behaviour]) -> None:
    # Given a service that picks its first champion up after two polls (after a bootstrap)
    url, behaviour = stack
    behaviour.champion_after = 2

    result = run(url, model_timeout=10, poll_seconds=0.01)

    assert result.status == 200


def test_a_prediction_that_is_not_a_number_fails(stack: tuple[str, Behaviour]) -> None:
    url, behaviour = stack
    behaviour.predict_body = {**PREDICTION, "prediction": None}

    with pytest.raises(SmokeTestError, match="no finite prediction"):
        run(url)


def test_nothing_listening_fails_naming_the_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(SmokeTestError, match=r"not ready after 1 s .*ConnectError"):
        smoke_test(url, api_key=KEY, ready_timeout=1, max_wait=0.05)


def test_a_page_behind_its_sign_in_passes(stack: tuple[str, Behaviour]) -> None:
    url, _ = stack
    result = run(url, monitoring_url=f"{url}/monitor/")
    assert result.monitoring == SIGN_IN


@pytest.mark.parametrize(
    ("page", "problem"),
    [("open", "answered HTTP 200"), ("self-redirect", "not to a sign-in")],
)
def test_a_page_open_to_strangers_fails(
    stack: tuple[str, Behaviour], page: str, problem: str
) -> None:
    url, behaviour = stack
    behaviour.page = page
    with pytest.raises(SmokeTestError, match=problem):
        run(url, monitoring_url=f"{url}/monitor/")


def test_cli_reads_the_key_from_the_environment_and_reports(
    stack: tuple[str, Behaviour], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = stack
    monkeypatch.setenv(API_KEY_ENV, KEY)

    result = CliRunner().invoke(
        app, ["--url", url, "--ready-timeout", "5", "--monitoring-url", f"{url}/monitor/"]
    )

    assert result.exit_code == 0, result.output
    assert "BTCUSDT ret24h = +0.01230 (model pricebot-btcusdt-ret24h v3)" in result.output
    assert "sends strangers to sign in" in result.output
    assert KEY not in result.output


def test_cli_exits_1_with_the_reason(
    stack: tuple[str, Behaviour], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, behaviour = stack
    monkeypatch.setenv(API_KEY_ENV, KEY)
    behaviour.predict_status = 500
    behaviour.predict_body = {"message": "Unexpected error (KeyError); see the service log."}

    result = CliRunner().invoke(app, ["--url", url, "--ready-timeout", "5"])

    assert result.exit_code == 1
    assert "smoke test failed: POST /predict answered HTTP 500" in result.output
