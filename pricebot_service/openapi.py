"""The OpenAPI document of the service (``/docs.json``, drawn by the page at ``/``).

Written from the pydantic models the requests are validated with, so the spec and the checks
cannot drift apart. It declares the API key (``X-API-Key``, or ``Authorization: Bearer``) as the
security of every route but health, and every status a route can answer with its body.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from pricebot.settings import Settings
from pricebot_service import schemas
from pricebot_service.access import API_KEY_HEADER

REF = "#/components/schemas/{model}"

_MODELS: list[tuple[type, str]] = [
    (schemas.PredictRequest, "validation"),
    (schemas.PredictBatchRequest, "validation"),
    (schemas.PredictionOut, "serialization"),
    (schemas.PredictBatchResponse, "serialization"),
    (schemas.ModelsResponse, "serialization"),
    (schemas.ErrorOut, "serialization"),
    (schemas.NotServedOut, "serialization"),
    (schemas.InvalidBodyOut, "serialization"),
]


def _json(model: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }


def build_spec(settings: Settings, *, keys_enabled: bool, version: str = "") -> dict[str, Any]:
    _, defs = models_json_schema(_MODELS, ref_template=REF)
    components = defs.get("$defs", {})
    batch = components["PredictBatchRequest"]["properties"]["symbols"]
    batch["maxItems"] = settings.max_batch_symbols

    unauthorized = _json(
        "ErrorOut", f"No valid API key: send one in the {API_KEY_HEADER} header (or Bearer)."
    )
    too_large = _json("ErrorOut", f"The body is larger than {settings.max_body_bytes} bytes.")
    unsupported = _json("ErrorOut", "The body was not sent as application/json.")
    invalid = _json(
        "InvalidBodyOut",
        "The body is not JSON, lacks a field, has an unknown field, or a value breaks its "
        "limits; `error` names the field.",
    )
    unavailable = _json(
        "ErrorOut",
        "This symbol cannot be answered now: no champion yet, its model cannot be loaded, no "
        "or too old features, a model trained on simulated candles for real ones, or the "
        "database unreachable; `error` says which and `fix` what to run.",
    )
    not_served = _json("NotServedOut", "The symbol or target is not served here.")

    def body(model: str) -> dict[str, Any]:
        return {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
        }

    def open_route(description: str) -> dict[str, Any]:
        return {
            "get": {
                "tags": ["health"],
                "description": description,
                "security": [],
                "responses": {"200": {"description": "Yes."}, "503": {"description": "No."}},
            }
        }

    protected = {"401": unauthorized}
    models_operation = {
        "tags": ["models"],
        "description": "What is served per symbol and target: state, version, alias, when it "
        "was loaded, its run metrics and feature importance; and whether the registry answers.",
        "responses": {"200": _json("ModelsResponse", "The served models."), **protected},
    }
    paths = {
        "/predict": {
            "post": {
                "tags": ["predictions"],
                "operationId": "predict",
                "description": "The champion's prediction from the newest feature row of "
                "`symbol` (logged in the prediction log under `request_id`).",
                "requestBody": body("PredictRequest"),
                "responses": {
                    "200": _json("PredictionOut", "The prediction."),
                    **protected,
                    "404": not_served,
                    "413": too_large,
                    "415": unsupported,
                    "422": invalid,
                    "503": unavailable,
                },
            }
        },
        "/predict_batch": {
            "post": {
                "tags": ["predictions"],
                "operationId": "predict_batch",
                "description": "Predictions for many symbols at once; a symbol that cannot be "
                "answered is listed under `errors` with the status a single call would get.",
                "requestBody": body("PredictBatchRequest"),
                "responses": {
                    "200": _json("PredictBatchResponse", "Predictions and per-symbol errors."),
                    **protected,
                    "413": too_large,
                    "415": unsupported,
                    "422": invalid,
                },
            }
        },
        "/models": {
            "get": {**models_operation, "operationId": "models"},
            "post": {**models_operation, "operationId": "models_post"},
        },
        "/metrics": {
            "get": {
                "tags": ["health"],
                "operationId": "metrics",
                "description": "Prometheus series of every worker.",
                "responses": {
                    "200": {
                        "description": "The text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **protected,
                },
            }
        },
        "/readyz": open_route(
            "Ready: every served model is loaded or known to be absent or broken in the "
            "registry (a registry that cannot be reached keeps it not ready)."
        ),
        "/livez": open_route("The process is alive."),
        "/healthz": open_route("The process is alive."),
    }
    access = (
        "Every route but health, this page and its spec needs an API key."
        if keys_enabled
        else "This instance runs without API keys (PRICEBOT_API_KEYS is empty): every route is "
        "open. Deployed, every route but health, this page and its spec needs a key."
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pricebot",
            "version": version or "0",
            "description": "Crypto price predictions from each symbol's champion model in the "
            "MLflow registry, hot-swapped when the alias moves. " + access,
        },
        "servers": [{"url": "."}],
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
