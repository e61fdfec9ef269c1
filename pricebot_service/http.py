"""The prediction API as a plain ASGI layer in front of BentoML's router.

BentoML hosts the service: ``bentoml serve`` and the Bento, its workers (one per core), their
lifecycle (the service class is built in each worker, ``on_shutdown`` writes the prediction
log), ``/readyz`` through ``__is_ready__``, and the docs page. The routes of the API itself are
answered here, an ASGI middleware registered with ``PriceBot.add_asgi_middleware``, because
BentoML's own API path (request object, pydantic serde, the thread hop of a sync API, context
variables) costs several times more than the whole answer: a cached feature row, a memoised
model output and a queued log record take tens of microseconds. ``benchmarks/bench_serve.py``
measures the result against a bare uvicorn + Starlette endpoint.

Per request, in order:

1. Access: every path but health, the docs page and the spec needs an API key
   (:mod:`pricebot_service.access`); 401 names the header.
2. Limits: a body over ``PRICEBOT_MAX_BODY_BYTES`` is refused with 413 before it is read; the
   body must be ``application/json`` (415); it is validated by the pydantic models of
   :mod:`pricebot_service.schemas` (unknown fields, patterns, lengths: 422 naming the field);
   a batch over ``PRICEBOT_MAX_BATCH_SYMBOLS`` symbols is a 422.
3. The answer: from memory on the event loop when it can be (the common case); when it needs
   the database or a model invocation, the core says so (:class:`pricebot.serving.WouldBlock`)
   and the same call runs in a worker thread, so the loop never waits for PostgreSQL.
4. Errors of the core map to statuses: not served 404; no champion, unloadable model, no or too
   old features, a simulated model for real candles, database away: 503 with ``error`` and
   ``fix``. Anything else is a 500 with the traceback in the log.

Every answer is counted and timed in Prometheus (:mod:`pricebot_service.metrics`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio.to_thread
from pydantic import ValidationError

from pricebot.errors import (
    DatabaseUnavailableError,
    MarketMismatchError,
    NoChampionError,
    NoFeaturesError,
    PricebotError,
    StaleFeaturesError,
    UnknownModelError,
)
from pricebot.serving import Prediction, Predictor, WouldBlock
from pricebot.settings import Settings
from pricebot_service import schemas
from pricebot_service.access import ApiKeys, is_open
from pricebot_service.metrics import CONTENT_TYPE, Metrics, exposition

log = logging.getLogger("pricebot.service")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = b"application/json"
_AUTH = ((b"www-authenticate", b'Bearer realm="pricebot"'),)


class HttpError(Exception):
    """An answer other than 200, with its JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: tuple = ()) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body
        self.headers = headers


class Api:
    """What answers the routes: the predictor, the keys, the limits, the metrics, the spec."""

    def __init__(
        self,
        settings: Settings,
        predictor: Predictor,
        keys: ApiKeys,
        metrics: Metrics,
        spec: dict[str, Any],
    ) -> None:
        self.settings = settings
        self.predictor = predictor
        self.keys = keys
        self.metrics = metrics
        self.spec = json.dumps(spec).encode()
        self._heads: dict[str, tuple[tuple, str]] = {}  # model name -> (key, JSON head)
        self.max_body = settings.max_body_bytes
        self.max_batch = settings.max_batch_symbols
        self.routes: dict[str, tuple[frozenset[str], Callable[[Scope, bytes], Awaitable[Any]]]] = {
            "/predict": (frozenset({"POST"}), self.predict),
            "/predict_batch": (frozenset({"POST"}), self.predict_batch),
            "/models": (frozenset({"GET", "POST"}), self.models),
            "/metrics": (frozenset({"GET"}), self.prometheus),
        }

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, downstream: ASGIApp
    ) -> None:
        started = time.perf_counter()
        path = scope["path"]
        route = self.routes.get(path)
        if route is None and path != "/docs.json":
            if is_open(path) or (refusal := self.keys.check(scope["headers"])) is None:
                await downstream(scope, receive, send)  # BentoML: /, health, static files, 404
                return
            await self._answer(send, "other", started, HttpError(401, {"error": refusal}, _AUTH))
            return
        try:
            if path == "/docs.json":
                answer: Any = (_JSON, self.spec)
            else:
                refusal = self.keys.check(scope["headers"])
                if refusal is not None:
                    raise HttpError(401, {"error": refusal}, _AUTH)
                methods, handler = route  # type: ignore[misc]
                if scope["method"] not in methods:
                    raise HttpError(
                        405,
                        {"error": f"{path} takes {' or '.join(sorted(methods))}."},
                        ((b"allow", ", ".join(sorted(methods)).encode()),),
                    )
                body = await self._read_body(scope, receive) if scope["method"] == "POST" else b""
                answer = await handler(scope, body)
        except _DisconnectedError:
            return
        except HttpError as exc:
            answer = exc
        except Exception:
            log.exception("%s %s failed", scope["method"], path)
            answer = HttpError(500, {"error": "Unexpected error; see the service log."})
        await self._answer(send, path, started, answer)

    async def _answer(self, send: Send, route: str, started: float, answer: Any) -> None:
        if isinstance(answer, HttpError):
            status = answer.status
            await _send(send, status, _dumps(answer.body), answer.headers)
        elif isinstance(answer, tuple):  # (content type, bytes), already encoded
            status = 200
            await _send(send, status, answer[1], content_type=answer[0])
        elif isinstance(answer, bytes):  # JSON, already encoded
            status = 200
            await _send(send, status, answer)
        else:
            status = 200
            await _send(send, status, _dumps(answer))
        self.metrics.answered(route, status, time.perf_counter() - started)

    # -- the routes ----------------------------------------------------------------------------

    async def predict(self, scope: Scope, body: bytes) -> bytes:
        request = _parse(schemas.PredictRequest, body)
        predict = functools.partial(
            self.predictor.predict, request.symbol, request.target, explain=request.explain
        )
        try:
            try:
                result = predict(block=False)
            except WouldBlock:
                result = await anyio.to_thread.run_sync(predict)
        except PricebotError as exc:
            status, error = self._fault(exc)
            raise HttpError(status, error) from None
        return self._prediction(result)

    async def predict_batch(self, scope: Scope, body: bytes) -> bytes:
        request = _parse(schemas.PredictBatchRequest, body)
        if len(request.symbols) > self.max_batch:
            raise HttpError(
                422,
                {
                    "error": f"Invalid request body: symbols: at most {self.max_batch} symbols "
                    f"per request (PRICEBOT_MAX_BATCH_SYMBOLS), got {len(request.symbols)}.",
                    "detail": [{"loc": ["symbols"], "msg": "too many items",
                                "type": "too_long"}],
                },
            )  # fmt: skip
        try:
            answers = self.predictor.predict_many(request.symbols, request.target, block=False)
        except WouldBlock:
            answers = await anyio.to_thread.run_sync(
                self.predictor.predict_many, request.symbols, request.target
            )
        predictions: list[str] = []
        errors: list[dict[str, Any]] = []
        served: list[tuple[str, str, str, float]] = []
        for symbol, answer in zip(request.symbols, answers, strict=True):
            if isinstance(answer, Prediction):
                predictions.append(self._encoded_text(answer))
                served.append(
                    (answer.symbol, answer.target, answer.model_version,
                     answer.feature_age_seconds)
                )  # fmt: skip
            else:
                status, error = self._fault(answer)
                errors.append(
                    {
                        "symbol": symbol,
                        "target": request.target,
                        "status": status,
                        "error": error["error"],
                        "fix": error.get("fix"),
                    }
                )
        self.metrics.served_many(served)
        # one encode for the whole body: the answers are ASCII JSON text (ensure_ascii)
        return b'{"predictions":[%s],"errors":%s}' % (
            ",".join(predictions).encode(),
            _dumps(errors),
        )

    async def models(self, scope: Scope, body: bytes) -> dict[str, Any]:
        if body.strip() not in (b"", b"{}"):
            _parse(schemas.Request, body)  # only {} is accepted: a field here is a mistake
        models = self.predictor.models
        return {
            "ready": models.ready(),
            "registry": models.registry_status(),
            "models": models.status(),
        }

    async def prometheus(self, scope: Scope, body: bytes) -> tuple[str, bytes]:
        def current() -> bytes:
            self.metrics.flush()  # this worker's last second too
            return exposition()

        return CONTENT_TYPE, await anyio.to_thread.run_sync(current)

    # -- helpers -------------------------------------------------------------------------------

    def _prediction(self, result: Prediction) -> bytes:
        self.metrics.served(
            result.symbol, result.target, result.model_version, result.feature_age_seconds
        )
        return self._encoded(result)

    def _encoded(self, result: Prediction) -> bytes:
        """The answer as JSON (the fields of schemas.PredictionOut)."""
        return self._encoded_text(result).encode()

    def _encoded_text(self, result: Prediction) -> str:
        """The answer as JSON text. Everything but its age, staleness and id is the same for
        every answer from one model version and feature row, so that part is encoded once per
        (version, row) and reused."""
        if not math.isfinite(result.prediction):
            raise ValueError(
                f"{result.model_name} v{result.model_version} answered {result.prediction}"
            )
        if result.explanation is not None or result.explanation_unavailable is not None:
            return _dumps(_explained(result)).decode()
        key = (result.model_version, result.feature_time, result.prediction)
        cached = self._heads.get(result.model_name)
        if cached is None or cached[0] != key:
            head = _dumps(
                {
                    "symbol": result.symbol,
                    "target": result.target,
                    "prediction": result.prediction,
                    "implied_price": result.implied_price,
                    "close": result.close,
                    "horizon_minutes": result.horizon_minutes,
                    "model_name": result.model_name,
                    "model_version": result.model_version,
                    "alias": result.alias,
                    "feature_time": result.feature_time.isoformat(),
                }
            ).decode()
            cached = self._heads[result.model_name] = (key, head[:-1])
        return (
            f'{cached[1]},"feature_age_seconds":{result.feature_age_seconds!r},'
            f'"stale":{"true" if result.stale else "false"},"request_id":"{result.request_id}"}}'
        )

    def _fault(self, exc: PricebotError) -> tuple[int, dict[str, Any]]:
        if isinstance(exc, UnknownModelError):
            models = self.predictor.models
            return 404, {
                "error": str(exc),
                "served": {"symbols": models.symbols, "targets": models.targets},
            }
        if isinstance(exc, NoChampionError | StaleFeaturesError | MarketMismatchError):
            return 503, {"error": str(exc), "fix": exc.fix}
        if isinstance(exc, NoFeaturesError):
            return 503, {"error": str(exc), "fix": "pricebot transform"}
        if isinstance(exc, DatabaseUnavailableError):
            return 503, {"error": str(exc)}
        raise exc

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        media_type = b""
        length = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                media_type = value.split(b";")[0].strip().lower()
            elif key == b"content-length":
                length = value
        if media_type not in (b"", _JSON):
            sent = media_type.decode("latin-1")
            raise HttpError(415, {"error": f"Send the body as application/json, not {sent!r}."})
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            raise self._too_large()
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _DisconnectedError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> HttpError:
        return HttpError(
            413,
            {
                "error": f"The request body is larger than {self.max_body} bytes "
                "(PRICEBOT_MAX_BODY_BYTES); send fewer symbols per request."
            },
            ((b"connection", b"close"),),
        )


def _explained(result: Prediction) -> dict[str, Any]:
    answer = dataclasses.asdict(result)  # explained answers are rare: clarity over speed
    answer["feature_time"] = result.feature_time.isoformat()
    if result.explanation is None:
        del answer["explanation"]
    else:
        answer["explanation"]["top"] = list(answer["explanation"]["top"])
    if result.explanation_unavailable is None:
        del answer["explanation_unavailable"]
    return answer


class _DisconnectedError(Exception):
    """The client went away before its body arrived."""


def _parse(model: type[schemas.Request], body: bytes) -> Any:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise HttpError(422, _invalid(exc)) from None


def _invalid(exc: ValidationError) -> dict[str, Any]:
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    problems = []
    for item in details:
        field = ".".join(str(part) for part in item.get("loc", ())) or "body"
        if item.get("type") == "extra_forbidden":
            problems.append(f"{field}: unknown field (not part of this API)")
        else:
            problems.append(f"{field}: {item.get('msg', 'invalid')}")
    return {"error": "Invalid request body: " + "; ".join(problems), "detail": details}


def _dumps(data: Any) -> bytes:
    return json.dumps(data, default=_default, allow_nan=False, separators=(",", ":")).encode()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


async def _send(
    send: Send,
    status: int,
    body: bytes,
    headers: tuple = (),
    content_type: str | bytes = _JSON,
) -> None:
    if isinstance(content_type, str):
        content_type = content_type.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
