"""What the deployed components need from AWS, kept out of the adapters so all share one
definition: the database credentials, the Lambdas' settings and their events.

The database password is never in an environment variable: each component's role has a Secrets
Manager secret (``{"username": ..., "password": ...}``) whose ARN is in
``PRICEBOT_DATABASE_SECRET_ARN``; :class:`SecretCredentials` reads it through a cache (a warm
Lambda or a busy service makes no call) and again, bypassing the cache, when PostgreSQL refuses
the password, which is how a rotated password is picked up without a restart
(:mod:`pricebot.db`). It uses boto3 directly rather than Powertools' parameters so that the ECS
images, which ship no Powertools, read secrets exactly as the Lambdas do. boto3 is imported
lazily: the core is also used where it is not installed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AliasChoices, BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pricebot.db import Credentials, secret_source
from pricebot.errors import SecretUnavailableError, UnexpectedEventError
from pricebot.settings import split_csv

EVENT_SOURCE = "pricebot.klines"
KLINES_INGESTED = "KlinesIngested"
INGEST_BATCH = "IngestBatchRequested"
SECRET_MAX_AGE_SECONDS = 300


class LambdaSettings(BaseSettings):
    """The Lambdas' environment, validated once per container."""

    model_config = SettingsConfigDict(env_prefix="PRICEBOT_", extra="ignore")

    db_secret_arn: str = Field(
        description="ARN of the secret holding the function's database username and password.",
        # PRICEBOT_DATABASE_SECRET_ARN is the name every deployed component uses (and what
        # pricebot.db re-reads on a rotated password); the older name is still accepted.
        validation_alias=AliasChoices("PRICEBOT_DATABASE_SECRET_ARN", "PRICEBOT_DB_SECRET_ARN"),
    )
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


class SecretCredentials:
    """Database credentials from one Secrets Manager secret, cached for ``max_age`` seconds.

    ``credentials(refresh=True)`` reads the secret again whatever the cache holds: callers do so
    when PostgreSQL refused the cached password. Thread-safe; one instance per secret per
    process (:func:`pricebot.db.secret_source`).
    """

    def __init__(
        self,
        secret_arn: str,
        *,
        max_age: float = SECRET_MAX_AGE_SECONDS,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret_arn = secret_arn
        self.max_age = max_age
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[Credentials, float] | None = None
        self.reads = 0  # calls to Secrets Manager, for tests and metrics

    def credentials(self, *, refresh: bool = False) -> Credentials:
        with self._lock:
            now = self._clock()
            if not refresh and self._cached and now - self._cached[1] < self.max_age:
                return self._cached[0]
            credentials = self._read()
            self._cached = (credentials, now)
            return credentials

    def _read(self) -> Credentials:
        value = read_secret_json(self.secret_arn, client=self._client)
        self.reads += 1
        if not {"username", "password"} <= value.keys():
            raise SecretUnavailableError(
                f"The database secret {self.secret_arn} lacks username/password fields"
            )
        return Credentials(user=str(value["username"]), password=str(value["password"]))


def read_secret_string(secret_arn: str, *, client: Any = None) -> str:
    """The current value of a secret, or :class:`SecretUnavailableError` naming it."""
    from botocore.exceptions import BotoCoreError, ClientError

    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    try:
        # AWSCURRENT is the default; named explicitly because a stage moved by a rotation is
        # what must be read (moto, for one, keeps answering the pre-rotation default otherwise).
        answer = client.get_secret_value(SecretId=secret_arn, VersionStage="AWSCURRENT")
        return answer["SecretString"]
    except (ClientError, BotoCoreError, KeyError) as exc:
        raise SecretUnavailableError(
            f"Cannot read the secret {secret_arn}: {exc}. Check that it exists, has a value, "
            "and that this role may call secretsmanager:GetSecretValue on it."
        ) from exc


def read_secret_json(secret_arn: str, *, client: Any = None) -> dict[str, Any]:
    text = read_secret_string(secret_arn, client=client)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise SecretUnavailableError(
            f"The database secret {secret_arn} is not JSON with username and password"
        )
    return value


def database_url(settings: LambdaSettings) -> str:
    """The libpq URL with the user and password read from the function's secret.

    Connections made through :mod:`pricebot.db` re-read the secret themselves when the password
    was rotated (``PRICEBOT_DATABASE_SECRET_ARN``); the password in this URL is the fallback for
    code that connects otherwise.
    """
    credentials = secret_source(settings.db_secret_arn).credentials()
    user, password = quote(credentials.user, safe=""), quote(credentials.password, safe="")
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
