"""Configuration: every knob is a ``PRICEBOT_`` environment variable (see .env.example).

Settings are parsed when first asked for, never at import time, so a test or an adapter can
set the environment first and a bad value fails with pydantic's message naming the variable.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "ADAUSDT")
#: The references the bare feature-set name ``v2x`` means (pricebot.features.V2X_REFERENCES,
#: repeated here so that reading settings never imports numpy; a unit test keeps them equal).
V2X_REFERENCES = ("BTCUSDT", "ETHUSDT")


def split_csv(value: object) -> object:
    """Accept ``a,b`` as well as a list; stripped and de-duplicated in order."""
    if isinstance(value, str):
        value = [part for part in value.replace(" ", "").split(",") if part]
    if isinstance(value, list | tuple):
        return list(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
    return value


class Settings(BaseSettings):
    """The project's settings; one instance per process via :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="PRICEBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(Path(".pricebot"), description="Local state: database, MLflow, logs.")
    database_url: str = Field(
        "postgresql://pricebot@127.0.0.1:5433/pricebot",
        description="libpq URL of the PostgreSQL database holding candles and features.",
    )
    binance_url: str = Field("https://api.binance.com", description="Binance REST base URL.")
    vision_url: str = Field(
        "https://data.binance.vision",
        description="Binance Vision base URL, where `pricebot backfill` downloads archives.",
    )
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SYMBOLS), description="Symbols to ingest and serve."
    )
    targets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["ret24h"], description="Target specs to train and serve."
    )
    lookback_days: int = Field(14, ge=1, description="History fetched for a never-seen symbol.")
    mlflow_tracking_uri: str | None = Field(
        None,
        # MLflow's own variable, so one setting serves MLflow and pricebot; read from .env too.
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "PRICEBOT_MLFLOW_TRACKING_URI"),
        description="MLflow tracking server; default: the one-machine stack's on mlflow_port.",
    )

    # Binance REST client behaviour.
    http_timeout_seconds: float = Field(10.0, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_base_seconds: float = Field(
        0.5, gt=0, description="First retry wait; doubles per retry (plus jitter) up to the cap."
    )
    backoff_cap_seconds: float = Field(30.0, gt=0)
    max_retry_after_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest Retry-After (429/418) waited in-process; a longer ban is recorded "
        "in the database and no run asks the exchange before it ends. Keep it well below the "
        "ingest Lambda's timeout (300 s).",
    )
    weight_limit: int = Field(6000, gt=0, description="Binance's request weight per minute.")
    weight_headroom: float = Field(
        0.8, gt=0, le=1, description="Slow down once this share of the weight is used."
    )

    # Features, datasets and training.
    feature_set: str = Field("v1", description="Feature-set version computed and served.")
    reference_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(V2X_REFERENCES),
        description="Reference coins of the cross-asset feature set v2x (in column order).",
    )
    max_gap_minutes: int = Field(5, ge=0, description="Longest gap a training row may cross.")

    # AWS Lambda packaging (`make layers`).
    lambda_arch: Literal["x86_64", "arm64"] = Field(
        "x86_64", description="CPU architecture the Lambda layers and functions are built for."
    )

    # Serving and the one-machine stack.
    alias_poll_seconds: float = Field(30.0, gt=0)
    model_alias: str = Field(
        "champion", pattern=r"^[A-Za-z0-9_-]+$", description="Registry alias the service follows."
    )
    model_cache_dir: Path | None = Field(
        None,
        description="Where the service keeps each model version it loads, so that a restart "
        "while the registry cannot be asked serves what this machine served last (state "
        "'cached' in /models). Empty: no cache. `pricebot up` sets <PRICEBOT_HOME>/model-cache.",
    )
    registry_probe_seconds: float = Field(
        2.0,
        gt=0,
        le=30,
        description="How long the service's alias poller waits for the registry's /health "
        "before a pass (at start, and while it was unreachable): a registry that is not up "
        "fails fast instead of through MLflow's retries.",
    )
    stale_after_seconds: float = Field(300.0, gt=0)
    feature_cache_seconds: float = Field(
        1.0, ge=0, description="How long the service reuses a symbol's newest feature row."
    )
    db_pool_size: int = Field(4, ge=1, description="Database connections the service keeps.")
    db_timeout_seconds: float = Field(
        2.0, gt=0, description="How long a request waits for the database before a 503."
    )
    prediction_log_batch_rows: int = Field(500, ge=1, description="Rows per prediction-log write.")
    prediction_log_flush_ms: float = Field(
        200.0, gt=0, description="Longest a logged prediction waits before it is written."
    )
    prediction_log_max_pending: int = Field(
        100_000,
        ge=1,
        description="Predictions held in memory while the database is away; beyond it the "
        "oldest are dropped and counted (pricebot_prediction_log_rows_total{outcome=dropped}).",
    )
    prediction_log_retry_seconds: float = Field(
        0.5, gt=0, description="First wait after a failed prediction-log write; doubles per try."
    )
    prediction_log_retry_max_seconds: float = Field(
        30.0, gt=0, description="Longest wait between prediction-log write attempts."
    )
    prediction_log_shutdown_seconds: float = Field(
        10.0, ge=0, description="How long a stopping service keeps trying to write its log."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys the prediction API accepts (comma separated, so a key can rotate "
        "with overlap); sent as X-API-Key or Authorization: Bearer. Empty: the API is open.",
    )
    require_api_key: bool = Field(
        False,
        description="Refuse to start the service without PRICEBOT_API_KEYS (set where it is "
        "deployed, and in the Bento).",
    )
    max_feature_age_seconds: float | None = Field(
        None,
        gt=0,
        description="A feature row older than this is answered 503, not served; default "
        "3 x stale_after_seconds.",
    )
    db_statement_timeout_seconds: float = Field(
        2.0, gt=0, description="Longest a statement of the service may run before it is cancelled."
    )
    max_batch_symbols: int = Field(100, ge=1, description="Most symbols one /predict_batch takes.")
    max_body_bytes: int = Field(
        16_384, ge=256, description="Largest request body the service reads (413 beyond)."
    )
    postgres_port: int = Field(5433, ge=1, le=65535)
    exchange_port: int = Field(8900, ge=1, le=65535)
    mlflow_port: int = Field(5000, ge=1, le=65535)
    service_port: int = Field(3000, ge=1, le=65535)
    monitor_port: int = Field(8501, ge=1, le=65535)
    local_service_workers: int = Field(
        1,
        ge=1,
        description="Workers of the service `pricebot up` runs. Each worker holds every model, its "
        "cache and its log writer; the Bento and `pricebot serve` run one per core.",
    )
    monitor_max_range_days: float = Field(
        400.0, gt=0, description="Longest range the monitoring page draws (bounds its queries)."
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols_csv(cls, value: object) -> object:
        value = split_csv(value)
        return [v.upper() for v in value] if isinstance(value, list) else value

    @field_validator("reference_symbols", mode="before")
    @classmethod
    def _references_csv(cls, value: object) -> object:
        value = split_csv(value)
        return [v.upper() for v in value] if isinstance(value, list) else value

    @field_validator("reference_symbols")
    @classmethod
    def _references_look_like_symbols(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not s.isalnum()]
        if bad or not value:
            raise ValueError(
                f"reference symbols must be letters and digits like BTCUSDT,ETHUSDT, got {value}"
            )
        return value

    @model_validator(mode="after")
    def _cross_asset_set_names_its_references(self) -> Settings:
        # The references are part of the feature set's definition, so they are part of its name
        # (what the features table and the model tags store): v2x with other references is
        # v2x:A,B. A name that lists its references already is taken as it is.
        if self.feature_set == "v2x" and tuple(self.reference_symbols) != V2X_REFERENCES:
            self.feature_set = f"v2x:{','.join(self.reference_symbols)}"
        return self

    @field_validator("targets", mode="before")
    @classmethod
    def _targets_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("model_cache_dir", mode="before")
    @classmethod
    def _empty_is_no_cache(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("model_cache_dir")
    @classmethod
    def _cache_dir_is_a_directory(cls, value: Path | None) -> Path | None:
        # Checked when the settings are read (not at import): a cache that points at a file
        # would otherwise fail on the service's first load, far from the setting's name.
        if value is None:
            return None
        value = value.expanduser().absolute()
        if value.exists() and not value.is_dir():
            raise ValueError(f"the model cache must be a directory; {value} is a file")
        return value

    @field_validator("max_feature_age_seconds", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("symbols")
    @classmethod
    def _symbols_look_like_symbols(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not s.isalnum()]
        if bad:
            raise ValueError(f"symbols must be letters and digits like BTCUSDT, got {bad}")
        if not value:
            raise ValueError("at least one symbol is needed, e.g. PRICEBOT_SYMBOLS=BTCUSDT")
        return value

    def feature_age_limit(self) -> float:
        """Seconds after which a feature row is too old to serve (hard limit, not the flag)."""
        return self.max_feature_age_seconds or 3 * self.stale_after_seconds

    def tracking_uri(self) -> str:
        """The MLflow tracking URI to use: the setting (environment or .env), else the local
        stack's server. Never MLflow's implicit ``./mlflow.db``, which would silently hold a
        registry of its own."""
        # The live environment first: MLflow itself reads it at call time, and the two must
        # never disagree within a process.
        return (
            os.environ.get("MLFLOW_TRACKING_URI")
            or self.mlflow_tracking_uri
            or f"http://127.0.0.1:{self.mlflow_port}"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, parsed on first use."""
    return Settings()
