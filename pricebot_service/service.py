"""The pricebot prediction service: BentoML glue over :mod:`pricebot.serving`.

Everything that decides something (which model, which features, what to log, when to swap)
lives in the core; this module declares the HTTP API (pydantic models show up in the OpenAPI
page at ``/``), maps the core's errors to status codes, and exports Prometheus metrics.

Run it with ``pricebot serve`` (or ``bentoml serve pricebot_service.service:PriceBot``).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any

import bentoml
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

log = logging.getLogger("pricebot.service")

SYMBOL = Field(
    min_length=1,
    max_length=32,
    pattern=r"^[A-Za-z0-9]+$",
    description="A served symbol, e.g. BTCUSDT.",
    examples=["BTCUSDT"],
)
TARGET = Field(
    None,
    min_length=1,
    max_length=32,
    description="A served target spec, e.g. ret24h; defaults to the first configured target.",
    examples=["ret24h"],
)


class PredictRequest(BaseModel):
    symbol: str = SYMBOL
    target: str | None = TARGET


class PredictBatchRequest(BaseModel):
    symbols: list[str] = Field(
        min_length=1,
        max_length=100,
        description="Served symbols, each predicted with the same target.",
        examples=[["BTCUSDT", "ETHUSDT"]],
    )
    target: str | None = TARGET


class PredictionOut(BaseModel):
    symbol: str
    target: str
    prediction: float = Field(description="The model's output; for ret<H>, 0.01 = +1%.")
    implied_price: float | None = Field(
        description="For a return target: close * (1 + prediction); null otherwise."
    )
    close: float = Field(description="Close of the feature row's minute.")
    horizon_minutes: int
    model_name: str
    model_version: str
    alias: str
    feature_time: datetime = Field(description="Open time of the feature row used (UTC).")
    feature_age_seconds: float
    stale: bool = Field(description="True when the feature row is older than the stale limit.")
    request_id: str = Field(description="This prediction's id in the prediction log.")


class BatchError(BaseModel):
    symbol: str
    target: str | None
    status: int = Field(description="The HTTP status the single predict would have answered.")
    error: str


class PredictBatchResponse(BaseModel):
    predictions: list[PredictionOut]
    errors: list[BatchError]


class ServedOut(BaseModel):
    name: str
    version: str
    alias: str
    feature_set: str
    horizon_minutes: int
    run_id: str | None
    loaded_at: datetime
    metrics: dict[str, float]
    feature_importance: dict[str, float] | None


class ModelStatusOut(BaseModel):
    symbol: str
    target: str
    name: str
    state: str = Field(
        description="serving | kept (older version still served) | missing | pending"
    )
    message: str | None = Field(description="Why the state is not 'serving', and what to do.")
    alias_version: str | None = Field(description="The version the alias points at now.")
    checked_at: datetime | None
    swaps: int
    served: ServedOut | None


class ModelsResponse(BaseModel):
    ready: bool
    models: list[ModelStatusOut]


class UnprocessableBody:
    """ASGI middleware for the JSON APIs. BentoML answers a body that fails validation with 400;
    we say 422 and name the field at fault (``symbol: Field required``). A body sent as another
    media type (which BentoML would try to parse as a form and fail on with a 500) gets 415."""

    def __init__(
        self, app: Any, paths: tuple[str, ...] = ("/predict", "/predict_batch", "/models")
    ) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        media_type = _media_type(scope)
        if media_type not in ("", "application/json"):
            await _send_json(
                send,
                415,
                {"error": f"Send the body as application/json, not {media_type!r}."},
            )
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def reply(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 400:
                start = message  # hold it until the body is known
                return
            if start is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _validation_body(b"".join(chunks))
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "status": 422, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, reply)


def _media_type(scope: dict) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


async def _send_json(send: Any, status: int, data: dict) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _validation_body(raw: bytes) -> bytes:
    try:
        data = json.loads(raw or b"{}")
        details = data.get("detail") or []
    except (ValueError, AttributeError):
        return raw
    problems = []
    for item in details:
        field = ".".join(str(part) for part in item.get("loc", ())) or "body"
        problems.append(f"{field}: {item.get('msg', 'invalid')}")
    data["error"] = "Invalid request body: " + "; ".join(problems) if problems else data["error"]
    return json.dumps(data).encode()


class _Metrics:
    """Prometheus series of our own, created in the worker (after BentoML set up the
    multiprocess directory) so they appear on /metrics beside BentoML's."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.predictions = prom.Counter(
            "pricebot_predictions_total",
            "Predictions served.",
            ["symbol", "target", "model_version"],
        )
        self.swaps = prom.Counter("pricebot_model_swaps_total", "Models swapped in.", ["model"])
        self.swap_failures = prom.Counter(
            "pricebot_model_swap_failures_total",
            "New champion versions that failed to load (the old one stayed).",
            ["model"],
        )
        self.feature_age = prom.Gauge(
            "pricebot_feature_age_seconds",
            "Age of the feature row used by the last prediction.",
            ["symbol"],
            multiprocess_mode="mostrecent",
        )
        self.stage = prom.Histogram(
            "pricebot_stage_seconds",
            "Time per request stage: features (lookup), model (output, memoised per model "
            "version and feature row), log (enqueue); model_call: actual model invocations.",
            ["stage"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1),
        )

    def on_event(self, event: str, slot: Any) -> None:
        from pricebot.champion import SWAP_FAILED, SWAPPED

        if event == SWAPPED:
            self.swaps.labels(slot.name).inc()
        elif event == SWAP_FAILED:
            self.swap_failures.labels(slot.name).inc()

    def observe(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage).observe(seconds)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


@bentoml.service(
    name="pricebot",
    workers=1,
    threads=4,
    traffic={"timeout": 30},
    metrics={"enabled": True},
)
class PriceBot:
    """Predictions from the champion model of each served symbol and target."""

    def __init__(self) -> None:
        from pricebot.serving import Predictor
        from pricebot.settings import get_settings

        logging.getLogger("pricebot").setLevel(logging.INFO)
        # MLflow retries an unreachable server for minutes by default; the poller retries by
        # itself every poll, so fail a look-up fast and report the model missing meanwhile.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        self.metrics = _Metrics()
        self.settings = get_settings()
        self.predictor = Predictor.from_settings(
            self.settings, observe=self.metrics.observe, on_event=self.metrics.on_event
        ).start()

    def __is_ready__(self) -> bool:
        """/readyz: ready once every configured model is loaded or reported missing."""
        return self.predictor.ready()

    @bentoml.on_shutdown
    def close(self) -> None:
        """Stop polling and write every logged prediction before the process exits."""
        self.predictor.close()

    @bentoml.api(route="/predict", input_spec=PredictRequest, output_spec=PredictionOut)
    def predict(self, symbol: str, target: str | None = None) -> Any:
        """The champion's prediction from the newest feature row of ``symbol``."""
        try:
            return self._predict_one(symbol, target)
        except Exception as exc:  # mapped to 404/503; anything else is a 500 with a log
            status, body = self._fault(exc, symbol)
            return _error(status, **body)

    @bentoml.api(
        route="/predict_batch", input_spec=PredictBatchRequest, output_spec=PredictBatchResponse
    )
    def predict_batch(self, symbols: list[str], target: str | None = None) -> Any:
        """Predictions for many symbols at once; a symbol that fails is listed under errors."""
        predictions, errors = [], []
        for symbol in symbols:
            try:
                predictions.append(self._predict_one(symbol, target))
            except Exception as exc:
                status, body = self._fault(exc, symbol)
                errors.append(
                    BatchError(symbol=symbol, target=target, status=status, error=body["message"])
                )
        return PredictBatchResponse(predictions=predictions, errors=errors)

    @bentoml.api(route="/models", output_spec=ModelsResponse)
    def models(self) -> ModelsResponse:
        """What is loaded per symbol and target: version, alias, when, metrics, importance."""
        return ModelsResponse(
            ready=self.predictor.ready(),
            models=[ModelStatusOut.model_validate(s) for s in self.predictor.models.status()],
        )

    def _predict_one(self, symbol: str, target: str | None) -> PredictionOut:
        from dataclasses import asdict

        result = self.predictor.predict(symbol, target)
        self.metrics.predictions.labels(result.symbol, result.target, result.model_version).inc()
        self.metrics.feature_age.labels(result.symbol).set(result.feature_age_seconds)
        return PredictionOut(**asdict(result))

    def _fault(self, exc: Exception, symbol: str) -> tuple[int, dict[str, Any]]:
        from pricebot.errors import NoChampionError, NoFeaturesError, UnknownModelError
        from pricebot.serving import DatabaseUnavailableError

        if isinstance(exc, UnknownModelError):
            served = {"symbols": self.predictor.models.symbols}
            served["targets"] = self.predictor.models.targets
            return 404, {"message": str(exc), "served": served}
        if isinstance(exc, NoChampionError):
            return 503, {"message": str(exc), "fix": exc.fix}
        if isinstance(exc, NoFeaturesError):
            return 503, {"message": str(exc), "fix": "pricebot transform"}
        if isinstance(exc, DatabaseUnavailableError):
            return 503, {"message": str(exc)}
        log.exception("prediction for %s failed", symbol)
        return 500, {"message": f"Unexpected error ({type(exc).__name__}); see the service log."}


PriceBot.add_asgi_middleware(UnprocessableBody)
