"""Smoke test of a deployed stack: is the service ready, does it refuse strangers, does it answer
a prediction with its key, and is the monitoring page behind its sign-in?

``PRICEBOT_SMOKE_API_KEY=... python scripts/smoke_test.py --url https://api.example.com
[--symbol BTCUSDT] [--target ret24h] [--monitoring-url https://api.example.com/monitor/]``

The deploy workflow runs it last. In order:

1. ``GET /readyz`` until it answers 200 (retries with backoff, ``--ready-timeout``);
2. ``POST /predict`` without a key must answer 401: a service that answers strangers fails;
3. ``POST /predict`` with the key (``X-API-Key``) must answer 200 with a finite prediction for
   the symbol asked. A 503 "no champion yet" (with its ``fix``) is retried for
   ``--model-timeout`` seconds (the service picks a newly promoted champion up within its poll
   interval) and then accepted only with ``--allow-no-model``;
4. with ``--monitoring-url``: ``GET`` of the page without a session must be sent to sign in (a
   redirect to the identity provider, or 401); a page that answers 200 to anyone fails.

The API key comes from the environment (``PRICEBOT_SMOKE_API_KEY``), never from the command line,
so it is not in the process list or the workflow log. Any failure exits 1 with what went wrong.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import typer
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

API_KEY_ENV = "PRICEBOT_SMOKE_API_KEY"
API_KEY_HEADER = "X-API-Key"
app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


class SmokeTestError(RuntimeError):
    """The stack did not pass; the message says which check and what came back."""


class NotReadyError(Exception):
    """``/readyz`` has not answered 200 yet (retried)."""


@dataclass(frozen=True)
class SmokeResult:
    ready_after_attempts: int
    status: int
    body: dict
    monitoring: str | None = None  # how the page answered a stranger, when checked


def check_ready(client: httpx.Client, *, timeout: float, max_wait: float) -> int:
    """Poll ``/readyz`` until it answers 200; returns the number of attempts it took."""
    attempts = 0
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.5, max=max_wait),
        retry=retry_if_exception_type(NotReadyError),
        reraise=False,
    )
    last = "no answer"
    try:
        for attempt in retrying:
            with attempt:
                attempts += 1
                try:
                    answer = client.get("/readyz")
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                    raise NotReadyError(last) from exc
                if answer.status_code != 200:
                    last = f"HTTP {answer.status_code}: {answer.text[:200]}"
                    raise NotReadyError(last)
    except RetryError:
        raise SmokeTestError(
            f"{client.base_url}readyz not ready after {timeout:.0f} s ({attempts} attempts); "
            f"last answer: {last}"
        ) from None
    return attempts


def _post_predict(client: httpx.Client, body: dict, headers: dict[str, str]) -> httpx.Response:
    try:
        return client.post("/predict", json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise SmokeTestError(f"POST /predict failed: {type(exc).__name__}: {exc}") from exc


def check_refuses_strangers(client: httpx.Client, symbol: str, target: str) -> None:
    """Without a key the service must answer 401, and nothing else."""
    answer = _post_predict(client, {"symbol": symbol, "target": target}, {})
    if answer.status_code != 401:
        raise SmokeTestError(
            f"POST /predict without an API key answered HTTP {answer.status_code}, not 401: "
            "the API is open to anyone who can reach it"
        )


def check_prediction(
    client: httpx.Client,
    symbol: str,
    target: str,
    *,
    api_key: str,
    allow_no_model: bool,
    model_timeout: float = 0.0,
    poll_seconds: float = 10.0,
) -> tuple[int, dict]:
    """Post one prediction with the key and check its answer."""
    deadline = time.monotonic() + model_timeout
    while True:
        answer = _post_predict(
            client, {"symbol": symbol, "target": target}, {API_KEY_HEADER: api_key}
        )
        try:
            body = answer.json()
        except ValueError:
            raise SmokeTestError(
                f"POST /predict answered HTTP {answer.status_code} with a body that is not "
                f"JSON: {answer.text[:200]!r}"
            ) from None
        no_model = answer.status_code == 503 and "fix" in body
        if no_model and time.monotonic() < deadline:
            time.sleep(poll_seconds)
            continue
        break
    if no_model and allow_no_model:
        return answer.status_code, body
    if answer.status_code == 401:
        raise SmokeTestError("POST /predict refused the API key (401): is it the stack's key?")
    if answer.status_code != 200:
        raise SmokeTestError(f"POST /predict answered HTTP {answer.status_code}: {body}")
    prediction = body.get("prediction")
    if not isinstance(prediction, int | float) or not math.isfinite(prediction):
        raise SmokeTestError(f"POST /predict gave no finite prediction: {body}")
    if body.get("symbol") != symbol:
        raise SmokeTestError(f"POST /predict answered for {body.get('symbol')!r}, not {symbol!r}")
    return answer.status_code, body


def check_monitoring_signs_in(url: str, *, timeout: float) -> str:
    """A stranger opening the page is sent to sign in; returns where (or "401")."""
    try:
        answer = httpx.get(url, follow_redirects=False, timeout=timeout)
    except httpx.HTTPError as exc:
        raise SmokeTestError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
    if answer.status_code == 401:
        return "401"
    if answer.status_code in (301, 302, 303, 307, 308):
        location = answer.headers.get("location", "")
        page = urlsplit(url)
        target = urlsplit(location)
        if target.netloc and (target.netloc, target.path) != (page.netloc, page.path):
            return location.split("?")[0]
        raise SmokeTestError(f"GET {url} redirected to {location!r}, not to a sign-in")
    raise SmokeTestError(
        f"GET {url} without signing in answered HTTP {answer.status_code}: the monitoring page "
        "must send strangers to its sign-in"
    )


def smoke_test(
    url: str,
    symbol: str = "BTCUSDT",
    target: str = "ret24h",
    *,
    api_key: str,
    monitoring_url: str | None = None,
    ready_timeout: float = 600.0,
    max_wait: float = 15.0,
    request_timeout: float = 30.0,
    allow_no_model: bool = False,
    model_timeout: float = 0.0,
    poll_seconds: float = 10.0,
) -> SmokeResult:
    """Readiness, refusal without a key, one prediction with it, the page's sign-in; raises
    :class:`SmokeTestError` on any failure."""
    if not url.startswith(("http://", "https://")):
        raise SmokeTestError(f"--url must be an http(s) URL, got {url!r}")
    if not api_key:
        raise SmokeTestError(f"no API key: set {API_KEY_ENV} (the stack's api_keys secret)")
    with httpx.Client(base_url=url.rstrip("/") + "/", timeout=request_timeout) as client:
        attempts = check_ready(client, timeout=ready_timeout, max_wait=max_wait)
        check_refuses_strangers(client, symbol, target)
        status, body = check_prediction(
            client, symbol, target, api_key=api_key, allow_no_model=allow_no_model,
            model_timeout=model_timeout, poll_seconds=poll_seconds,
        )  # fmt: skip
    monitoring = (
        check_monitoring_signs_in(monitoring_url, timeout=request_timeout)
        if monitoring_url
        else None
    )
    return SmokeResult(attempts, status, body, monitoring)


@app.command()
def main(
    url: str = typer.Option(..., "--url", help="Base URL of the deployed service."),
    symbol: str = typer.Option("BTCUSDT", "--symbol"),
    target: str = typer.Option("ret24h", "--target"),
    monitoring_url: str = typer.Option(
        None, "--monitoring-url", help="The page's URL, when it is routed (behind a sign-in)."
    ),
    ready_timeout: float = typer.Option(600.0, "--ready-timeout", help="Seconds to wait."),
    model_timeout: float = typer.Option(
        0.0, "--model-timeout", help="Seconds to wait for a champion (after a bootstrap)."
    ),
    allow_no_model: bool = typer.Option(
        False, "--allow-no-model", help="Accept 'no champion yet' (a stack never promoted)."
    ),
) -> None:
    """Fail (exit 1) unless the stack is ready, locked, answering, and its page signed in."""
    import os

    try:
        result = smoke_test(
            url, symbol, target, api_key=os.environ.get(API_KEY_ENV, ""),
            monitoring_url=monitoring_url, ready_timeout=ready_timeout,
            model_timeout=model_timeout, allow_no_model=allow_no_model,
        )  # fmt: skip
    except SmokeTestError as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if result.status == 200:
        print(
            f"ok: {url} ready after {result.ready_after_attempts} attempt(s), 401 without a key; "
            f"{symbol} {target} = {result.body['prediction']:+.5f} "
            f"(model {result.body.get('model_name')} v{result.body.get('model_version')})"
        )
    else:
        print(f"ok (no model yet): {url} is ready, locked, and says: {result.body.get('message')}")
    if result.monitoring:
        print(f"ok: the monitoring page sends strangers to sign in ({result.monitoring})")


if __name__ == "__main__":
    app()
