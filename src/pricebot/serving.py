"""Making a prediction: the champion model, the newest feature row, the log. HTTP-free.

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

Answers without waiting
-----------------------
An asynchronous server must never wait for the database on its event loop. Every call that
may need a query or a model invocation takes ``block``: with ``block=False`` it either answers
from memory (the cached row, the memoised model output: the common case, microseconds) or
raises :class:`WouldBlock` before doing anything, and the adapter repeats the call with
``block=True`` in a worker thread. Nothing is logged by a call that raised.

Refusals
--------
- A feature row older than :meth:`pricebot.settings.Settings.feature_age_limit` (default 3x the
  stale limit) is not served: :class:`pricebot.errors.StaleFeaturesError` says how old it is and
  what to run. Between the stale limit and the hard limit the answer is served with
  ``stale: true``.
- A model whose version tag ``market`` is ``simulated:*`` is not served for a symbol whose stored
  candles are real (:mod:`pricebot.provenance`): :class:`pricebot.errors.MarketMismatchError`.
  The class of a symbol's candles is looked up at most once a minute.

The database is reached through a psycopg_pool connection pool whose connections carry a
statement timeout: a connection that broke while PostgreSQL was away is checked and replaced
on checkout, so the service recovers by itself when the database returns. While it is away,
requests fail fast (``db_timeout_seconds``) with :class:`pricebot.db.DatabaseUnavailableError`,
which the service answers with 503.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pricebot.champion import ModelPool, ServedModel
from pricebot.db import redact
from pricebot.errors import (
    DatabaseUnavailableError,
    ExplanationUnavailableError,
    MarketMismatchError,
    NoChampionError,
    NoFeaturesError,
    PricebotError,
    StaleFeaturesError,
    UnknownModelError,
)
from pricebot.explanations import Explanation
from pricebot.model_cache import ModelCache
from pricebot.predictions import LogEvent, PredictionLog, PredictionRecord
from pricebot.registry import Registry
from pricebot.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "DatabaseUnavailableError",
    "FeatureCache",
    "MarketMismatchError",
    "NoChampionError",
    "NoFeaturesError",
    "Prediction",
    "Predictor",
    "StaleFeaturesError",
    "UnknownModelError",
    "WouldBlock",
]

Observer = Callable[[str, float], None]  # (stage, seconds): time spent per stage of a request

#: How long the class of a symbol's stored candles (real or simulated) is reused.
MARKET_CACHE_SECONDS = 60.0
#: Contributions an explained answer lists (the others are summed in ``rest``).
EXPLAIN_TOP = 5


class WouldBlock(Exception):  # noqa: N818 - control flow, like BlockingIOError; never shown
    """The answer needs the database or a model invocation: repeat the call with ``block=True``
    where waiting is allowed (a worker thread). Raised before anything was done or logged."""


class _RequestIds:
    """Ids for logged predictions: 128 random bits each, as uuid4 has, from a generator seeded
    per process with 256 bits from the OS (``uuid4`` costs a system call per id, which a batch
    of 100 answers notices). Not secret, only unique; reseeded in a forked child."""

    def __init__(self) -> None:
        self._seed()
        os.register_at_fork(after_in_child=self._seed)

    def _seed(self) -> None:
        self._random = random.Random(os.urandom(32))  # uniqueness, not secrecy

    def new(self) -> str:
        return f"{self._random.getrandbits(128):032x}"

    def many(self, count: int) -> list[str]:
        """``count`` ids from one draw of ``128 * count`` bits: the same ids as ``count`` calls
        of :meth:`new`, at a fraction of the cost for a batch."""
        if count <= 0:
            return []
        digits = f"{self._random.getrandbits(128 * count):0{32 * count}x}"
        return [digits[i : i + 32] for i in range(0, 32 * count, 32)]


_request_ids = _RequestIds()


@dataclass(slots=True)
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
    explanation: Explanation | None = None  # when asked for and the model allows it
    explanation_unavailable: str | None = None  # why not, when asked for and it does not


class _SharedLookup:
    """Values loaded through the database pool, shared by requests for ``ttl`` seconds.

    Concurrent misses of one key are coalesced behind a per-key lock. An error the load met
    (database unreachable, nothing stored) is kept for ``ttl`` too: during an outage a burst
    waits for one connection timeout, not one per request in turn.
    """

    _CACHED_ERRORS: tuple[type[Exception], ...] = (DatabaseUnavailableError, NoFeaturesError)

    def __init__(self, pool: Any, ttl_seconds: float, url: str = "") -> None:
        self._pool = pool
        self.ttl = ttl_seconds
        self._url = url
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self.queries = 0

    def get(self, key: Hashable, load: Callable[[Any], Any], *, block: bool = True) -> Any:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= self.ttl:
            if not block:
                raise WouldBlock(key)
            with self._guard:
                lock = self._locks.setdefault(key, threading.Lock())
            with lock:  # one query per key at a time; the waiters reuse its answer
                entry = self._entries.get(key)
                if entry is None or time.monotonic() - entry[0] >= self.ttl:
                    try:
                        answer: Any = self._query(load)
                    except self._CACHED_ERRORS as exc:
                        answer = exc
                    entry = self._entries[key] = (time.monotonic(), answer)
        if isinstance(entry[1], Exception):
            raise _copy_error(entry[1])  # a fresh one: threads may raise it at once
        return entry[1]

    def _query(self, load: Callable[[Any], Any]) -> Any:
        import psycopg
        from psycopg_pool import PoolTimeout

        self.queries += 1
        try:
            with self._pool.connection() as conn:
                return load(conn)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailableError(
                f"The feature database {redact(self._url)} is unreachable "
                f"({type(exc).__name__}); predictions resume by themselves when it is back."
            ) from exc


#: What one symbol's answer may meet; a batch lists them per symbol.
_ANSWER_ERRORS = (
    UnknownModelError,
    NoChampionError,
    NoFeaturesError,
    DatabaseUnavailableError,
    StaleFeaturesError,
    MarketMismatchError,
)


def _copy_error(exc: Exception) -> Exception:
    fix = getattr(exc, "fix", None)
    return type(exc)(str(exc), fix) if fix is not None else type(exc)(str(exc))


class FeatureCache(_SharedLookup):
    """The newest feature row per (symbol, feature set), shared by requests for a short while."""

    def __init__(self, pool: Any, ttl_seconds: float = 1.0, url: str = "") -> None:
        super().__init__(pool, ttl_seconds, url)

    def latest(self, symbol: str, feature_set: str, *, block: bool = True) -> Any:
        """The newest row, or the error the last look-up met."""

        def load(conn: Any) -> Any:
            from pricebot.transform import latest_features

            row = latest_features(conn, symbol, feature_set)
            if row is None:
                raise _no_features(symbol, feature_set)
            return row

        return self.get((symbol, feature_set), load, block=block)

    def latest_many(
        self, symbols: list[str], feature_set: str, *, block: bool = True
    ) -> dict[str, Any]:
        """The newest row of each symbol (or the error its look-up met), the expired ones read
        in one query. Not coalesced with concurrent look-ups of the same symbols: at worst one
        extra indexed read per symbol and second."""
        now = time.monotonic()
        found: dict[str, Any] = {}
        expired = []
        for symbol in symbols:
            entry = self._entries.get((symbol, feature_set))
            if entry is None or now - entry[0] >= self.ttl:
                expired.append(symbol)
            else:
                found[symbol] = entry[1]
        if not expired:
            return found
        if not block:
            raise WouldBlock(expired)
        from pricebot.transform import latest_features_many

        try:
            rows: dict[str, Any] | Exception = self._query(
                lambda conn: latest_features_many(conn, expired, feature_set)
            )
        except DatabaseUnavailableError as exc:
            rows = exc
        stamp = time.monotonic()
        for symbol in expired:
            if isinstance(rows, Exception):
                answer: Any = rows
            else:
                answer = rows.get(symbol) or _no_features(symbol, feature_set)
            self._entries[(symbol, feature_set)] = (stamp, answer)
            found[symbol] = answer
        return found


def _no_features(symbol: str, feature_set: str) -> NoFeaturesError:
    return NoFeaturesError(
        f"No {feature_set} features for {symbol} yet: run `pricebot ingest` and "
        f"`pricebot transform` (or wait for the next scheduled transform)."
    )


class CandleMarkets(_SharedLookup):
    """The class of each symbol's stored candles ("real", "simulated:<mode>", ...), per minute."""

    def __init__(self, pool: Any, ttl_seconds: float = MARKET_CACHE_SECONDS, url: str = "") -> None:
        super().__init__(pool, ttl_seconds, url)

    def market_class(self, symbol: str, *, block: bool = True) -> str:
        """The class (:func:`pricebot.provenance.market_class` of its stored candles)."""
        return self.get(symbol, lambda conn: _candle_class(conn, symbol), block=block)


def _candle_class(conn: Any, symbol: str) -> str:
    from pricebot import provenance

    return provenance.market_class(provenance.symbol_markets(conn, symbol))


@lru_cache(maxsize=256)
def canonical_target(target: str) -> str:
    """``RET1440M`` and ``ret24h`` name the same model; unknown spellings pass through."""
    from pricebot.errors import TargetSpecError
    from pricebot.targets import parse_target

    try:
        return parse_target(target).name
    except TargetSpecError:
        return target


@lru_cache(maxsize=256)
def is_return_target(target: str) -> bool:
    from pricebot.errors import TargetSpecError
    from pricebot.targets import parse_target

    try:
        return parse_target(target).kind == "regression"
    except TargetSpecError:
        return False


def open_pool(settings: Settings, *, name: str = "features") -> Any:
    """The service's connection pool (not opened): autocommit connections with a statement
    timeout, checked on checkout so a connection broken by an outage is replaced, logging in
    with the component's credentials (re-read from its secret when a rotated password is
    refused: :class:`pricebot.db.CredentialedConnection`)."""
    from psycopg_pool import ConnectionPool

    from pricebot.db import CredentialedConnection

    timeout_ms = int(settings.db_statement_timeout_seconds * 1000)

    def configure(conn: Any) -> None:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{timeout_ms}ms",))

    return ConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=settings.db_pool_size,
        open=False,
        timeout=settings.db_timeout_seconds,
        check=ConnectionPool.check_connection,
        configure=configure,
        connection_class=CredentialedConnection,
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, int(settings.db_timeout_seconds)),
        },
        name=name,
    )


class Predictor:
    """Champion models + feature cache + prediction log: what a request needs."""

    def __init__(
        self,
        settings: Settings,
        models: ModelPool,
        features: FeatureCache,
        predictions: PredictionLog,
        *,
        markets: CandleMarkets | None = None,
        db_pool: Any = None,
        observe: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.features = features
        self.markets = markets
        self.predictions = predictions
        self._db_pool = db_pool
        self._observe = observe or (lambda stage, seconds: None)
        self._memo: dict[str, _Output] = {}
        self._explained: dict[str, tuple[tuple, Explanation]] = {}
        self._age_limit = settings.feature_age_limit()
        self._stale_after = settings.stale_after_seconds

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        observe: Observer | None = None,
        on_event: Callable[[str, Any], None] | None = None,
        on_log_event: LogEvent | None = None,
    ) -> Predictor:
        db_pool = open_pool(settings)
        models = ModelPool(
            settings.symbols,
            [canonical_target(t) for t in settings.targets],
            alias=settings.model_alias,
            poll_seconds=settings.alias_poll_seconds,
            registry=Registry(settings.tracking_uri()),
            on_event=on_event,
            cache=ModelCache(settings.model_cache_dir) if settings.model_cache_dir else None,
            probe_seconds=settings.registry_probe_seconds,
        )
        features = FeatureCache(db_pool, settings.feature_cache_seconds, settings.database_url)
        markets = CandleMarkets(db_pool, url=settings.database_url)
        predictions = PredictionLog(
            settings.database_url,
            batch_rows=settings.prediction_log_batch_rows,
            flush_ms=settings.prediction_log_flush_ms,
            max_pending=settings.prediction_log_max_pending,
            retry_seconds=settings.prediction_log_retry_seconds,
            retry_max_seconds=settings.prediction_log_retry_max_seconds,
            shutdown_seconds=settings.prediction_log_shutdown_seconds,
            on_event=on_log_event,
        )
        return cls(
            settings,
            models,
            features,
            predictions,
            markets=markets,
            db_pool=db_pool,
            observe=observe,
        )

    def start(self, *, wait_seconds: float | None = None) -> Predictor:
        """Open the pool, start the log writer and the alias poller. With ``wait_seconds``,
        return once the poller's first pass is over (every alias looked up and its model
        loaded, or found absent, broken or unreachable), or after that long."""
        if self._db_pool is not None:
            self._db_pool.open(wait=False)  # a database that is down must not stop the start
        self.predictions.start()
        self.models.start()
        if wait_seconds is not None and not self.models.wait_first_pass(wait_seconds):
            log.warning("the first look at the registry took over %.0f s; serving meanwhile",
                        wait_seconds)  # fmt: skip
        return self

    def close(self) -> None:
        """Stop polling, write every logged prediction, close the database pool."""
        self.models.stop()
        self.predictions.close()
        if self._db_pool is not None:
            self._db_pool.close()

    def ready(self) -> bool:
        return self.models.ready()

    # -- answering -----------------------------------------------------------------------------

    def predict(
        self,
        symbol: str,
        target: str | None = None,
        *,
        block: bool = True,
        explain: bool = False,
    ) -> Prediction:
        """One prediction for ``symbol``, logged; raises the errors the service maps to 404/503
        (and :class:`WouldBlock` when ``block`` is False and the answer needs I/O). With
        ``explain``, the answer carries the top feature contributions to it."""
        now = datetime.now(UTC)
        symbol, target, model = self._resolve(symbol, target)
        started = time.perf_counter()
        row = self.features.latest(symbol, model.feature_set, block=block)
        fetched = time.perf_counter()
        prediction, record = self._compose(
            symbol, target, model, row, block, now, _request_ids.new()
        )
        if explain:
            try:
                prediction.explanation = self._explanation(model, row, block)
            except ExplanationUnavailableError as exc:
                prediction.explanation_unavailable = str(exc)
        composed = time.perf_counter()
        self.predictions.record(record)
        self._observe("features", fetched - started)
        self._observe("model", composed - fetched)
        self._observe("log", time.perf_counter() - composed)
        return prediction

    def predict_many(
        self, symbols: Iterable[str], target: str | None = None, *, block: bool = True
    ) -> list[Prediction | PricebotError]:
        """One answer per symbol, in order: a prediction, or the error that symbol met.

        The symbols' feature rows are read in one round trip. All or nothing with respect to
        ``block``: if any symbol needs I/O, :class:`WouldBlock` is raised before anything is
        logged, so the repeat in a thread logs each answer once. Stage times are observed
        once per batch."""
        now = datetime.now(UTC)
        canonical = canonical_target(target.strip()) if target else self.models.targets[0]
        get = self.models.get
        resolved: list[tuple[str, ServedModel] | PricebotError] = []
        for symbol in symbols:
            symbol = symbol.strip().upper()
            try:
                resolved.append((symbol, get(symbol, canonical)))
            except (UnknownModelError, NoChampionError) as exc:
                resolved.append(exc)
        started = time.perf_counter()
        by_set: dict[str, list[str]] = {}
        for item in resolved:
            if isinstance(item, tuple):
                by_set.setdefault(item[1].feature_set, []).append(item[0])
        rows = {
            feature_set: self.features.latest_many(names, feature_set, block=block)
            for feature_set, names in by_set.items()
        }
        fetched = time.perf_counter()
        answers: list[Prediction | PricebotError] = []
        records: list[PredictionRecord] = []
        ids = _request_ids.many(len(resolved))
        compose = self._compose
        now_ts = now.timestamp()
        for item, request_id in zip(resolved, ids, strict=True):
            if not isinstance(item, tuple):
                answers.append(item)
                continue
            symbol, model = item
            row = rows[model.feature_set][symbol]
            try:
                if isinstance(row, Exception):
                    raise _copy_error(row)
                prediction, record = compose(
                    symbol, canonical, model, row, block, now, request_id, now_ts
                )
            except _ANSWER_ERRORS as exc:
                answers.append(exc)
                continue
            answers.append(prediction)
            records.append(record)
        composed = time.perf_counter()
        self.predictions.record_many(records)  # one lock for the whole batch
        self._observe("features", fetched - started)
        self._observe("model", composed - fetched)
        self._observe("log", time.perf_counter() - composed)
        return answers

    def _resolve(self, symbol: str, target: str | None) -> tuple[str, str, ServedModel]:
        symbol = symbol.strip().upper()
        target = canonical_target(target.strip()) if target else self.models.targets[0]
        return symbol, target, self.models.get(symbol, target)

    def _compose(
        self,
        symbol: str,
        target: str,
        model: ServedModel,
        row: Any,
        block: bool,
        now: datetime,
        request_id: str,
        now_ts: float | None = None,
    ) -> tuple[Prediction, PredictionRecord]:
        """The answer from ``row``, and its log record; refusals raise before anything is kept.
        (``now_ts`` is ``now.timestamp()``, computed once by a batch.)"""
        if model.market:
            self._check_market(model, block)
        output = self._model_output(model, row, block)
        feature_time = output.feature_time
        age = (now.timestamp() if now_ts is None else now_ts) - output.feature_ts
        if age > self._age_limit:
            raise StaleFeaturesError(
                f"The newest {model.feature_set} feature row of {symbol} is from "
                f"{feature_time:%Y-%m-%d %H:%M} UTC ({_duration(age)} old), older than the "
                f"{_duration(self._age_limit)} this service serves "
                "(PRICEBOT_MAX_FEATURE_AGE_SECONDS): new candles or features are not arriving. "
                "Check ingestion and the transform (`pricebot ingest`, `pricebot transform`).",
                "pricebot ingest && pricebot transform",
            )
        value = output.value
        close = output.close
        prediction = Prediction(
            symbol=model.symbol,
            target=model.target,
            prediction=value,
            implied_price=output.implied_price,
            close=close,
            horizon_minutes=model.horizon_minutes,
            model_name=model.name,
            model_version=model.version,
            alias=model.alias,
            feature_time=feature_time,
            feature_age_seconds=age,
            stale=age > self._stale_after,
            request_id=request_id,
        )
        record = PredictionRecord(
            made_at=now,  # the instant the age was measured: the log's feature age is this one
            symbol=symbol,
            target=target,
            model_name=model.name,
            model_version=model.version,
            alias=model.alias,
            feature_time=row.open_time,
            horizon_minutes=model.horizon_minutes,
            prediction=value,
            base_close=close,
            request_id=request_id,
        )
        return prediction, record

    def _check_market(self, model: ServedModel, block: bool) -> None:
        """Refuse a model trained on simulated candles for a symbol whose candles are real."""
        from pricebot.provenance import REAL, is_simulated

        if self.markets is None or not model.market or not is_simulated(model.market):
            return  # a model trained on real candles costs no look-up at all
        candles = self.markets.market_class(model.symbol, block=block)
        if candles == REAL:
            raise MarketMismatchError(
                f"{model.name} version {model.version} was trained on simulated candles "
                f"({model.market}) but the stored candles of {model.symbol} are real: it is "
                "not served, because its figures say nothing about a real market. Train a "
                f"model on the real candles (`pricebot train --symbol {model.symbol}`) and "
                "promote it.",
                f"pricebot train --symbol {model.symbol}",
            )

    def _explanation(self, model: ServedModel, row: Any, block: bool) -> Explanation:
        """The answer's feature contributions, computed once per (model version, feature row)
        like the output itself."""
        key = (model.name, model.version, row.open_time)
        memo = self._explained.get(model.name)
        if memo is not None and memo[0] == key:
            return memo[1]
        if not block:
            raise WouldBlock(key)
        explanation = model.explain(row.values, EXPLAIN_TOP)
        self._explained[model.name] = (key, explanation)
        return explanation

    def _model_output(self, model: ServedModel, row: Any, block: bool = True) -> _Output:
        """The model's output for the row, computed once per (model version, feature row).

        A model version is a pure function of its input row, and a symbol's newest row changes
        about once a minute, so every request in between would recompute the same number. The
        memo keeps one entry per slot, replaced when the version or the row changes: a swap or a
        new row is reflected on the very next request. It also keeps the row's time as UTC and
        as a timestamp, so the answer's age is one subtraction.
        """
        memo = self._memo.get(model.name)
        if memo is not None and memo.version == model.version:
            if memo.row is row:  # the same cached row object: the common case
                return memo
            if memo.open_time == row.open_time:
                memo.row = row
                return memo
        if not block:
            raise WouldBlock(model.name)
        started = time.perf_counter()
        value = model.predict(row.values)
        self._observe("model_call", time.perf_counter() - started)
        feature_time = _utc(row.open_time)
        close = float(row.close)
        implied = close * (1.0 + value) if is_return_target(model.target) else None
        memo = self._memo[model.name] = _Output(
            model.version, row, row.open_time, value, feature_time, feature_time.timestamp(),
            close, implied,
        )  # fmt: skip
        return memo


@dataclass(slots=True)
class _Output:
    """A memoised model output and the row it was computed from."""

    version: str
    row: Any
    open_time: Any
    value: float
    feature_time: datetime  # the row's open time, in UTC
    feature_ts: float  # the same, as a POSIX timestamp
    close: float  # the row's close (a row's minute has one close)
    implied_price: float | None  # close * (1 + value) for a return target


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def _utc(moment: Any) -> datetime:
    if hasattr(moment, "to_pydatetime"):
        moment = moment.to_pydatetime()
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
