"""What the Lambdas need from AWS, kept out of the handlers so both share one definition.

The database password is never in an environment variable: it comes from the Secrets Manager
secret RDS manages for the master user, read through Powertools parameters (cached, so a warm
invocation makes no call). boto3 and Powertools are imported lazily: the core is also used where
neither is installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pricebot.errors import SecretUnavailableError, UnexpectedEventError
from pricebot.settings import split_csv

EVENT_SOURCE = "pricebot.klines"
KLINES_INGESTED = "KlinesIngested"
INGEST_BATCH = "IngestBatchRequested"
SECRET_MAX_AGE_SECONDS = 300


class LambdaSettings(BaseSettings):
    """The Lambdas' environment, validated once per container."""

    model_config = SettingsConfigDict(env_prefix="PRICEBOT_", extra="ignore")

    db_secret_arn: str = Field(description="ARN of the RDS-managed master user secret.")
    db_host: str
    db_port: int = 5432
    db_name: str = "pricebot"
    db_sslmode: Literal["require", "verify-full", "verify-ca", "prefer", "disable"] = "require"
    event_bus: str = "default"
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["BTCUSDT"])
    batch_size: int = Field(50, ge=1, le=400, description="Symbols one invocation catches up.")
    feature_set: str = "v1"

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols_csv(cls, value: object) -> object:
        value = split_csv(value)
        return [v.upper() for v in value] if isinstance(value, list) else value


def database_url(settings: LambdaSettings) -> str:
    """The libpq URL with the password read from the RDS-managed secret."""
    from aws_lambda_powertools.utilities import parameters

    try:
        secret = parameters.get_secret(
            settings.db_secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS
        )
    except parameters.exceptions.GetParameterError as exc:
        raise SecretUnavailableError(
            f"Cannot read the database secret {settings.db_secret_arn}: {exc}. Check that it "
            "exists and that the function's role may call secretsmanager:GetSecretValue on it."
        ) from exc
    except parameters.exceptions.TransformParameterError as exc:
        raise SecretUnavailableError(
            f"The database secret {settings.db_secret_arn} is not JSON with username and password"
        ) from exc
    if not isinstance(secret, dict) or not {"username", "password"} <= secret.keys():
        raise SecretUnavailableError(
            f"The database secret {settings.db_secret_arn} lacks username/password fields"
        )
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    return (
        f"postgresql://{user}:{password}@{settings.db_host}:{settings.db_port}/"
        f"{settings.db_name}?sslmode={settings.db_sslmode}"
    )


# --- events -------------------------------------------------------------------------------------
class SymbolRange(BaseModel):
    symbol: str
    start: datetime | None = None
    end: datetime | None = None
    rows: int = 0


class KlinesIngestedDetail(BaseModel):
    symbols: list[SymbolRange] = Field(min_length=1)


class IngestBatchDetail(BaseModel):
    symbols: list[str] = Field(min_length=1)


def parse_detail(event: dict[str, Any], model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(event.get("detail"))
    except ValidationError as exc:
        raise UnexpectedEventError(
            f"{event.get('detail-type')!r} event from {event.get('source')!r} has a detail this "
            f"function cannot use: {exc.errors(include_url=False)}"
        ) from exc


def symbols_for(event: dict[str, Any], config: LambdaSettings, function: str) -> list[str]:
    """The symbols an invocation handles: all configured on the schedule, else the event's.

    ``function`` is "ingest" (takes IngestBatchRequested) or "transform" (takes
    KlinesIngested); any other event shape is refused before any work.
    """
    source, detail_type = event.get("source"), event.get("detail-type")
    if source == "aws.events" and detail_type == "Scheduled Event":
        return list(config.symbols)
    accepted = INGEST_BATCH if function == "ingest" else KLINES_INGESTED
    if source == EVENT_SOURCE and detail_type == accepted:
        if accepted == INGEST_BATCH:
            return parse_detail(event, IngestBatchDetail).symbols
        detail = parse_detail(event, KlinesIngestedDetail)
        return list(dict.fromkeys(s.symbol for s in detail.symbols))
    raise UnexpectedEventError(
        f"The {function} function takes its schedule and {accepted} events, "
        f"not source={source!r} detail-type={detail_type!r}"
    )


def batches(symbols: Sequence[str], size: int) -> list[list[str]]:
    return [list(symbols[i : i + size]) for i in range(0, len(symbols), size)]


def put_events(bus: str, detail_type: str, details: Iterable[dict], client: Any = None) -> int:
    """Put events on the bus (10 per call, EventBridge's limit); raise if any entry failed."""
    import boto3

    client = client or boto3.client("events")
    entries = [
        {"Source": EVENT_SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail),
         "EventBusName": bus}
        for detail in details
    ]  # fmt: skip
    for start in range(0, len(entries), 10):
        answer = client.put_events(Entries=entries[start : start + 10])
        if answer.get("FailedEntryCount"):
            failed = [e for e in answer["Entries"] if "ErrorCode" in e]
            raise RuntimeError(f"EventBridge rejected {len(failed)} events: {failed[:3]}")
    return len(entries)
