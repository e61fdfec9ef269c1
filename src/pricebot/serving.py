"""Making a prediction: the champion model, the newest feature row, the log. BentoML-free.

The service adapter turns these calls and their errors into HTTP; everything it
needs to decide lives here, so the same path can be exercised without a web server.

Feature look-ups and the cache
------------------------------
A feature row exists per symbol and minute; a new one arrives about once a minute. A burst of
requests must not cost a query each, yet a new row must be picked up promptly. The cache keeps
the newest row per (symbol, feature set) for ``feature_cache_seconds`` (default 1 s) and
coalesces concurrent misses: the first request for an expired key queries (through
:func:`pricebot.transform.latest_features`, the same code training used), the others wait on a
per-key lock and reuse its answer. So a burst costs one query per symbol per second, and a new
feature row is served at most that long after it is written. (Checking a cheap
``max(open_time)`` on every request would still be one round trip per request; the time-to-live
gives the same freshness bound at no per-request cost.)

The database is reached through a psycopg_pool connection pool: a connection that broke while
PostgreSQL was away is checked and replaced on checkout, so the service recovers by itself when
the database returns. While it is away, requests fail fast (``db_timeout_seconds``) with
:class:`pricebot.db.DatabaseUnavailableError`, which the service answers with 503.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pricebot.champion import ModelPool, ServedModel
from pricebot.db import redact
from pricebot.errors import (
    DatabaseUnavailableError,
    NoChampionError,
    NoFeaturesError,
    UnknownModelError,
)
from pricebot.predictions import PredictionLog, PredictionRecord
from pricebot.registry import Registry
from pricebot.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "DatabaseUnavailableError",
    "FeatureCache",
    "NoChampionError",
    "NoFeaturesError",
    "Prediction",
    "Predictor",
    "UnknownModelError",
]

Observer = Callable[[str, float], None]  # (stage, seconds): time spent per stage of a request


@dataclass(frozen=True)
class Prediction:
    symbol: str
    target: str
    prediction: float
    implied_price: float | None
    close: float
    horizon_minutes: int
    model_name: str
    model_version: str
    alias: str
    feature_time: datetime
    feature_age_seconds: float
    stale: bool
    request_id: str  # the prediction's id in the log (predictions.request_id)


class FeatureCache:
    """The newest feature row per (symbol, feature set), shared by requests for a short while."""

    def __init__(self, pool: Any, ttl_seconds: float = 1.0, url: str = "") -> None:
        self._pool = pool
        self.ttl = ttl_seconds
        self._url = url
        self._entries: dict[tuple[str, str], tuple[float, Any]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self.queries = 0

    def latest(self, symbol: str, feature_set: str) -> Any:
        """The newest row, or the error the last look-up met (also kept for ``ttl``: during an
        outage a burst waits for one connection timeout, not one per request in turn)."""
        key = (symbol, feature_set)
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= self.ttl:
            with self._guard:
                lock = self._locks.setdefault(key, threading.Lock())
            with lock:  # one query per key at a time; the waiters reuse its answer
                entry = self._entries.get(key)
                if entry is None or time.monotonic() - entry[0] >= self.ttl:
                    try:
                        answer: Any = self._query(symbol, feature_set)
                    except (DatabaseUnavailableError, NoFeaturesError) as exc:
                        answer = exc
                    entry = self._entries[key] = (time.monotonic(), answer)
        if isinstance(entry[1], Exception):
            raise type(entry[1])(str(entry[1]))  # a fresh one: threads may raise it at once
        return entry[1]

    def _query(self, symbol: str, feature_set: str) -> Any:
        import psycopg
        from psycopg_pool import PoolTimeout

        from pricebot.transform import latest_features

        self.queries += 1
        try:
            with self._pool.connection() as conn:
                row = latest_features(conn, symbol, feature_set)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailableError(
                f"The feature database {redact(self._url)} is unreachable "
                f"({type(exc).__name__}); predictions resume by themselves when it is back."
            ) from exc
        if row is None:
            raise NoFeaturesError(
                f"No {feature_set} features for {symbol} yet: run `pricebot ingest` and "
                f"`pricebot transform` (or wait for the next scheduled transform)."
            )
        return row


def canonical_target(target: str) -> str:
    """``RET1440M`` and ``ret24h`` name the same model; unknown spellings pass through."""
    from pricebot.errors import TargetSpecError
    from pricebot.targets import parse_target

    try:
        return parse_target(target).name
    except TargetSpecError:
        return target


def is_return_target(target: str) -> bool:
    from pricebot.errors import TargetSpecError
    from pricebot.targets import parse_target

    try:
        return parse_target(target).kind == "regression"
    except TargetSpecError:
        return False


class Predictor:
    """Champion models + feature cache + prediction log: what a request needs."""

    def __init__(
        self,
        settings: Settings,
        models: ModelPool,
        features: FeatureCache,
        predictions: PredictionLog,
        *,
        db_pool: Any = None,
        observe: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.features = features
        self.predictions = predictions
        self._db_pool = db_pool
        self._observe = observe or (lambda stage, seconds: None)
        self._memo: dict[str, tuple[tuple, float]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        observe: Observer | None = None,
        on_event: Callable[[str, Any], None] | None = None,
    ) -> Predictor:
        from psycopg_pool import ConnectionPool

        db_pool = ConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=settings.db_pool_size,
            open=False,
            timeout=settings.db_timeout_seconds,
            check=ConnectionPool.check_connection,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(1, int(settings.db_timeout_seconds)),
            },
            name="features",
        )
        models = ModelPool(
            settings.symbols,
            [canonical_target(t) for t in settings.targets],
            alias=settings.model_alias,
            poll_seconds=settings.alias_poll_seconds,
            registry=Registry(settings.tracking_uri()),
            on_event=on_event,
        )
        features = FeatureCache(db_pool, settings.feature_cache_seconds, settings.database_url)
        predictions = PredictionLog(
            settings.database_url,
            batch_rows=settings.prediction_log_batch_rows,
            flush_ms=settings.prediction_log_flush_ms,
        )
        return cls(settings, models, features, predictions, db_pool=db_pool, observe=observe)

    def start(self) -> Predictor:
        if self._db_pool is not None:
            self._db_pool.open(wait=False)  # a database that is down must not stop the start
        self.predictions.start()
        self.models.start()
        return self

    def close(self) -> None:
        """Stop polling, write every logged prediction, close the database pool."""
        self.models.stop()
        self.predictions.close()
        if self._db_pool is not None:
            self._db_pool.close()

    def ready(self) -> bool:
        return self.models.ready()

    def predict(self, symbol: str, target: str | None = None) -> Prediction:
        """One prediction for ``symbol``; raises the errors the service maps to 404/503."""
        symbol = symbol.strip().upper()
        target = canonical_target(target.strip()) if target else self.models.targets[0]
        model = self.models.get(symbol, target)

        started = time.perf_counter()
        row = self.features.latest(symbol, model.feature_set)
        fetched = time.perf_counter()
        value = self._model_output(model, row)
        predicted = time.perf_counter()
        result = self._result(model, row, value)
        self.predictions.record(
            PredictionRecord(
                made_at=datetime.now(UTC),
                symbol=symbol,
                target=target,
                model_name=model.name,
                model_version=model.version,
                alias=model.alias,
                feature_time=row.open_time,
                horizon_minutes=model.horizon_minutes,
                prediction=value,
                base_close=float(row.close),
                request_id=result.request_id,
            )
        )
        logged = time.perf_counter()
        self._observe("features", fetched - started)
        self._observe("model", predicted - fetched)
        self._observe("log", logged - predicted)
        return result

    def _model_output(self, model: ServedModel, row: Any) -> float:
        """The model's output for the row, computed once per (model version, feature row).

        A model version is a pure function of its input row, and a symbol's newest row changes
        about once a minute, so every request in between would recompute the same number. The
        memo keeps one entry per slot, replaced when the version or the row changes: a swap or a
        new row is reflected on the very next request.
        """
        key = (model.name, model.version, row.open_time)
        memo = self._memo.get(model.name)
        if memo is not None and memo[0] == key:
            return memo[1]
        started = time.perf_counter()
        value = model.predict(row.values)
        self._observe("model_call", time.perf_counter() - started)
        self._memo[model.name] = (key, value)
        return value

    def _result(self, model: ServedModel, row: Any, value: float) -> Prediction:
        feature_time = _utc(row.open_time)
        age = (datetime.now(UTC) - feature_time).total_seconds()
        close = float(row.close)
        return Prediction(
            symbol=model.symbol,
            target=model.target,
            prediction=value,
            implied_price=close * (1.0 + value) if is_return_target(model.target) else None,
            close=close,
            horizon_minutes=model.horizon_minutes,
            model_name=model.name,
            model_version=model.version,
            alias=model.alias,
            feature_time=feature_time,
            feature_age_seconds=age,
            stale=age > self.settings.stale_after_seconds,
            request_id=uuid.uuid4().hex,
        )


def _utc(moment: Any) -> datetime:
    if hasattr(moment, "to_pydatetime"):
        moment = moment.to_pydatetime()
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
