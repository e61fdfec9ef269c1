"""Smoke test of a deployed prediction service: is it ready, and does it answer a prediction?

``python scripts/smoke_test.py --url https://api.example.com [--symbol BTCUSDT] [--target ret24h]``

The deploy workflow runs it right after ``pulumi up``: it waits (with retries) for ``/readyz``,
then posts one ``/predict`` and checks that the answer is a finite number for the symbol asked.
Any other outcome exits 1 with what went wrong, which fails the deploy.

``--allow-no-model`` accepts the service's own "no champion yet" answer (503 with a ``fix``) as
alive: the state of a brand-new stack before its first training run.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import httpx
import typer
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


class SmokeTestError(RuntimeError):
    """The service did not pass; the message says which check and what came back."""


class NotReadyError(Exception):
    """``/readyz`` has not answered 200 yet (retried)."""


@dataclass(frozen=True)
class SmokeResult:
    ready_after_attempts: int
    status: int
    body: dict


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


def check_prediction(
    client: httpx.Client, symbol: str, target: str, *, allow_no_model: bool
) -> tuple[int, dict]:
    """Post one prediction and check its answer."""
    try:
        answer = client.post("/predict", json={"symbol": symbol, "target": target})
    except httpx.HTTPError as exc:
        raise SmokeTestError(f"POST /predict failed: {type(exc).__name__}: {exc}") from exc
    try:
        body = answer.json()
    except ValueError:
        raise SmokeTestError(
            f"POST /predict answered HTTP {answer.status_code} with a body that is not JSON: "
            f"{answer.text[:200]!r}"
        ) from None
    if answer.status_code == 503 and allow_no_model and "fix" in body:
        return answer.status_code, body
    if answer.status_code != 200:
        raise SmokeTestError(f"POST /predict answered HTTP {answer.status_code}: {body}")
    prediction = body.get("prediction")
    if not isinstance(prediction, int | float) or not math.isfinite(prediction):
        raise SmokeTestError(f"POST /predict gave no finite prediction: {body}")
    if body.get("symbol") != symbol:
        raise SmokeTestError(f"POST /predict answered for {body.get('symbol')!r}, not {symbol!r}")
    return answer.status_code, body


def smoke_test(
    url: str,
    symbol: str = "BTCUSDT",
    target: str = "ret24h",
    *,
    ready_timeout: float = 600.0,
    max_wait: float = 15.0,
    request_timeout: float = 30.0,
    allow_no_model: bool = False,
) -> SmokeResult:
    """Readiness, then one prediction; raises :class:`SmokeTestError` on any failure."""
    if not url.startswith(("http://", "https://")):
        raise SmokeTestError(f"--url must be an http(s) URL, got {url!r}")
    with httpx.Client(base_url=url.rstrip("/") + "/", timeout=request_timeout) as client:
        attempts = check_ready(client, timeout=ready_timeout, max_wait=max_wait)
        status, body = check_prediction(client, symbol, target, allow_no_model=allow_no_model)
    return SmokeResult(attempts, status, body)


@app.command()
def main(
    url: str = typer.Option(..., "--url", help="Base URL of the deployed service."),
    symbol: str = typer.Option("BTCUSDT", "--symbol"),
    target: str = typer.Option("ret24h", "--target"),
    ready_timeout: float = typer.Option(600.0, "--ready-timeout", help="Seconds to wait."),
    allow_no_model: bool = typer.Option(
        False, "--allow-no-model", help="Accept 'no champion yet' (a stack never trained)."
    ),
) -> None:
    """Fail (exit 1) unless the service is ready and answers a prediction."""
    try:
        result = smoke_test(
            url, symbol, target, ready_timeout=ready_timeout, allow_no_model=allow_no_model
        )
    except SmokeTestError as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if result.status == 200:
        print(
            f"ok: {url} ready after {result.ready_after_attempts} attempt(s); "
            f"{symbol} {target} = {result.body['prediction']:+.5f} "
            f"(model {result.body.get('model_name')} v{result.body.get('model_version')})"
        )
    else:
        print(f"ok (no model yet): {url} is ready and says: {result.body.get('message')}")


if __name__ == "__main__":
    app()
