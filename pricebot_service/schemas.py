"""The HTTP API's bodies as pydantic models: requests are validated with them, and the OpenAPI
spec (``/docs.json``, the page at ``/``) is generated from them.

Requests refuse what they do not define (``extra="forbid"``): a misspelt field (``symbl``) is
a 422 naming it, never silently ignored. Symbols and targets are short and match a pattern, so
nothing a caller sends is echoed back unbounded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SYMBOL_PATTERN = r"^[A-Za-z0-9]{1,32}$"
TARGET_PATTERN = r"^[A-Za-z0-9._-]{1,32}$"

Symbol = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32, pattern=SYMBOL_PATTERN),
    Field(description="A served symbol, e.g. BTCUSDT (letters and digits, at most 32).",
          examples=["BTCUSDT"]),
]  # fmt: skip
Target = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32, pattern=TARGET_PATTERN),
    Field(description="A served target spec, e.g. ret24h; defaults to the first served target.",
          examples=["ret24h"]),
]  # fmt: skip


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(Request):
    symbol: Symbol
    target: Target | None = None
    explain: bool = Field(
        False, description="Also return the top feature contributions to this answer."
    )


class PredictBatchRequest(Request):
    symbols: list[Symbol] = Field(
        min_length=1,
        description="Served symbols, each predicted with the same target "
        "(at most PRICEBOT_MAX_BATCH_SYMBOLS, 100 by default).",
        examples=[["BTCUSDT", "ETHUSDT"]],
    )
    target: Target | None = None


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
    feature_age_seconds: float = Field(
        description="How old the feature row was when answered (also in the prediction log)."
    )
    stale: bool = Field(
        description="True when the feature row is older than PRICEBOT_STALE_AFTER_SECONDS "
        "(rows older than PRICEBOT_MAX_FEATURE_AGE_SECONDS are not served at all: 503)."
    )
    request_id: str = Field(description="This prediction's id in the prediction log.")
    explanation: ExplanationOut | None = Field(
        None,
        description="With explain: true. base + sum(top contributions) + rest = the output in "
        "`space`.",
    )
    explanation_unavailable: str | None = Field(
        None, description="With explain: true, when the served model cannot be explained: why."
    )


class ContributionOut(BaseModel):
    feature: str
    value: float = Field(description="The feature's value in the row used.")
    contribution: float = Field(description="Its share of the output, in `space` units.")


class ExplanationOut(BaseModel):
    method: str = Field(
        description="treeshap (XGBoost's TreeSHAP) or linear (coefficient x standardised value)."
    )
    space: str = Field(
        description="prediction: the contributions add up to the prediction; log_odds: to the "
        "log-odds of the event (classifiers)."
    )
    base: float = Field(description="The bias or intercept: the output with no contribution.")
    top: list[ContributionOut] = Field(description="The largest contributions by size, first.")
    rest: float = Field(description="The sum of the other features' contributions.")


class BatchError(BaseModel):
    symbol: str
    target: str | None
    status: int = Field(description="The HTTP status the single predict would have answered.")
    error: str
    fix: str | None = Field(None, description="What to run or check, when there is a fix.")


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
    market: str | None = Field(
        description="Version tag `market`: where its training candles came from "
        "(real, simulated:<mode>); null for versions registered before it was recorded."
    )
    cached_at: datetime | None = Field(
        None,
        description="When this machine's model cache kept the version, for one loaded from the "
        "cache (served while the registry could not be asked at start); null otherwise.",
    )


class ModelStatusOut(BaseModel):
    symbol: str
    target: str
    name: str
    state: str = Field(
        description="serving | kept (an older version is still served) | cached (the version "
        "this machine served last, from its model cache: the registry could not be asked yet) "
        "| missing (no champion registered) | failed (the champion cannot be loaded) | "
        "unreachable (the registry could not be asked yet, nothing cached) | pending (not "
        "looked up yet)"
    )
    message: str | None = Field(description="Why the state is not 'serving', and what to do.")
    alias_version: str | None = Field(description="The version the alias points at now.")
    checked_at: datetime | None
    swaps: int
    served: ServedOut | None


class RegistryOut(BaseModel):
    uri: str
    reachable: bool = Field(description="Whether the last look-up reached the registry.")
    checked_at: datetime | None
    error: str | None


class ModelsResponse(BaseModel):
    ready: bool = Field(
        description="Every served model is loaded or known to be absent or broken in the "
        "registry, or served from the model cache while the registry cannot be asked (what "
        "/readyz answers)."
    )
    registry: RegistryOut
    models: list[ModelStatusOut]


class ErrorOut(BaseModel):
    error: str = Field(description="What is wrong, and what to do about it.")
    fix: str | None = Field(None, description="The command or check that fixes it, if any.")


class NotServedOut(ErrorOut):
    served: dict[str, list[str]] = Field(description="The symbols and targets this service serves.")


class InvalidBodyOut(ErrorOut):
    detail: list[dict[str, Any]] = Field(
        default_factory=list, description="pydantic's errors, each with the `loc` at fault."
    )
