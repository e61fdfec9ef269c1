"""The champion models a service serves, following the registry alias without a restart.

One slot per configured (symbol, target) holds the model behind ``models:/<name>@champion``. A
background poller looks the alias up every ``alias_poll_seconds``. When it points at another
version, the new version is loaded *beside* the old one (requests keep using the old one meanwhile)
and then swapped in with a single assignment under a lock, so no request ever sees a half-loaded
model. A version that fails to load, or an alias that vanishes, leaves the old version in service;
the slot's status and the log say so, and /models shows it.

Versions are loaded by number (``models:/<name>/<version>``), never by alias: the alias can move
again between the lookup and the load, and the loaded model must be the version we report.

With a model cache (:mod:`pricebot.model_cache`, ``PRICEBOT_MODEL_CACHE_DIR``) every version loaded
is kept on disk and every swap remembered. A pool that starts while the registry cannot be asked
serves, per slot, the version this machine served last for the alias (state ``cached``) and then
follows the alias as usual once the registry answers: the same version becomes ``serving``
without a reload, another is loaded beside it and swapped in. A damaged entry is logged and never
served. A pass that starts with the registry unconfirmed (the first, and any after a failed one)
first asks the registry's ``/health`` with a short timeout (``PRICEBOT_REGISTRY_PROBE_SECONDS``),
so a registry that is not up yet costs a refused connection, not MLflow's retries and back-off.

This module knows nothing of BentoML: the service adapts it to HTTP.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from pricebot.errors import NoChampionError, UnknownModelError
from pricebot.model_cache import ModelCache
from pricebot.registry import CHAMPION, Registry, model_name

log = logging.getLogger(__name__)

# Slot states, as /models reports them.
PENDING = "pending"  # not looked up yet
SERVING = "serving"  # serving what the alias points at
KEPT = "kept"  # serving an older version: the alias vanished, its new version failed to load,
#                or the registry cannot be reached right now
MISSING = "missing"  # nothing to serve: the registry has no champion for it
FAILED = "failed"  # nothing to serve: the champion's version cannot be loaded (retried)
UNREACHABLE = "unreachable"  # nothing to serve yet: the registry could not be asked
CACHED = "cached"  # serving the version this machine served last: the registry could not be
#                    asked yet (the model cache)

#: States in which a slot's first look at the registry is settled: what the registry holds is
#: known (served, absent, or broken). ``pending`` and ``unreachable`` are not: readiness waits.
SETTLED = frozenset({SERVING, KEPT, MISSING, FAILED})
#: States in which a slot lets the service be ready: settled, or serving from the model cache
#: while the registry cannot be asked (it answers predictions, like ``kept`` during an outage).
READY = SETTLED | {CACHED}

# Events handed to the ``on_event`` callback (the service counts them in Prometheus).
SWAPPED = "swapped"
SWAP_FAILED = "swap_failed"
ALIAS_VANISHED = "alias_vanished"
REGISTRY_UNREACHABLE = "registry_unreachable"
CACHE_SERVED = "cache_served"  # a slot serves a version from the model cache
CACHE_DAMAGED = "cache_damaged"  # a cached entry was refused


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and what describes it."""

    symbol: str
    target: str
    name: str
    version: str
    alias: str
    feature_set: str
    horizon_minutes: int
    run_id: str | None
    columns: tuple[str, ...]
    loaded_at: datetime
    model: Any = field(repr=False)
    metrics: dict[str, float] = field(default_factory=dict)
    feature_importance: dict[str, float] | None = None
    market: str | None = None  # version tag ``market``: the class of its training candles
    estimator: Any = field(default=None, repr=False)  # the fitted estimator inside ``model``
    pooled: bool = False  # a pooled model (tag pool=true): its input also names the symbol
    #: A pooled model's symbols, in the order of its estimator's indicator columns
    #: (``symbol=<S>`` after the feature columns, :mod:`pricebot.pooling`).
    pool_symbols: tuple[str, ...] = ()
    #: When the model cache stored this version, for a version loaded from the cache.
    cached_at: datetime | None = None

    def predict(self, values: np.ndarray) -> float:
        """The model's output for one feature row (values in ``columns`` order)."""
        frame = pd.DataFrame(
            np.asarray(values, dtype="float64").reshape(1, -1), columns=list(self.columns)
        )
        if self.pooled:  # pricebot.portable_model: feature columns plus "symbol"
            frame["symbol"] = self.symbol
        return float(np.asarray(self.model.predict(frame), dtype="float64").ravel()[0])

    def explain(self, values: np.ndarray, top: int) -> Any:
        """The feature contributions to this row's output (:mod:`pricebot.explanations`).

        A pooled model's estimator was fitted on the feature columns plus one indicator per
        pool symbol, so the row it is explained on is the one the model itself predicted from:
        the features and the indicators (1.0 for this symbol, 0.0 for the others). The
        indicators' contributions are listed like any feature's, named ``symbol=<S>``."""
        from pricebot.errors import ExplanationUnavailableError
        from pricebot.explanations import explain

        if not self.pooled:
            return explain(self.estimator, self.columns, values, top=top)
        if self.symbol not in self.pool_symbols:
            raise ExplanationUnavailableError(
                f"{self.name} version {self.version} is a pooled model whose symbols are not "
                f"known here (the loaded model names {list(self.pool_symbols) or 'none'}), so "
                f"the indicator columns of {self.symbol} cannot be rebuilt"
            )
        from pricebot.pooling import indicator_columns

        indicators = [1.0 if s == self.symbol else 0.0 for s in self.pool_symbols]
        row = np.concatenate([np.asarray(values, dtype="float64").ravel(), indicators])
        columns = (*self.columns, *indicator_columns(self.pool_symbols))
        return explain(self.estimator, columns, row, top=top)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "feature_set": self.feature_set,
            "horizon_minutes": self.horizon_minutes,
            "run_id": self.run_id,
            "loaded_at": self.loaded_at,
            "metrics": self.metrics,
            "feature_importance": self.feature_importance,
            "market": self.market,
            "cached_at": self.cached_at,
        }


@dataclass
class Slot:
    """What is served for one (symbol, target), and what the poller last learned."""

    symbol: str
    target: str
    name: str
    served: ServedModel | None = None
    state: str = PENDING
    message: str | None = None
    alias_version: str | None = None
    checked_at: datetime | None = None
    swaps: int = 0
    fix: str | None = None
    failed_version: str | None = None
    retry_at: float = 0.0
    failures: int = 0
    cache_tried: bool = False  # the model cache was asked for this slot (once per pool)

    def describe(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "target": self.target,
            "name": self.name,
            "state": self.state,
            "message": self.message,
            "alias_version": self.alias_version,
            "checked_at": self.checked_at,
            "swaps": self.swaps,
            "served": self.served.describe() if self.served else None,
        }


def fix_command(symbol: str) -> str:
    return f"pricebot train --symbol {symbol}"


Loader = Callable[[str], Any]


class ModelPool:
    """The champion model per configured symbol and target, kept current by a poller.

    ``get`` is what the request path calls: a dictionary read under a lock, no I/O. Loading and
    registry look-ups happen only in the poller thread (or in ``refresh`` when called directly).
    """

    def __init__(
        self,
        symbols: Iterable[str],
        targets: Iterable[str],
        *,
        poll_seconds: float = 30.0,
        tracking_uri: str | None = None,
        registry: Registry | None = None,
        alias: str = CHAMPION,
        loader: Loader | None = None,
        on_event: Callable[[str, Slot], None] | None = None,
        max_retry_seconds: float = 300.0,
        cache: ModelCache | None = None,
        probe_seconds: float = 2.0,
    ) -> None:
        self.symbols = [s.upper() for s in symbols]
        self.targets = list(targets)
        self.alias = alias
        self.poll_seconds = poll_seconds
        self.registry = registry or Registry(tracking_uri)
        self.max_retry_seconds = max_retry_seconds
        self.cache = cache
        self.probe_seconds = probe_seconds
        self._loader = loader
        self._on_event = on_event
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], Slot] = {
            (s, t): Slot(s, t, model_name(s, t)) for s in self.symbols for t in self.targets
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_pass = threading.Event()
        self._registry_checked: datetime | None = None
        self._registry_error: str | None = None
        self._moved: dict[tuple[str, str], str] = {}  # (model, version) -> alias moved_at
        self._last_targets: dict[str, str] = {}

    # -- the request path ----------------------------------------------------------------------

    def get(self, symbol: str, target: str) -> ServedModel:
        """The model serving (symbol, target), or an error saying what is wrong and what to do."""
        key = (symbol.upper(), target)
        slot = self._slots.get(key)
        if slot is None:
            raise UnknownModelError(self.unknown_message(symbol, target))
        served = slot.served  # one reference read: the old model or the new, never half of one
        if served is not None:
            return served
        with self._lock:
            served = slot.served
            state, message, fix = slot.state, slot.message, slot.fix
        if served is None:
            if state == PENDING:
                raise NoChampionError(
                    f"The model for {key[0]} {target} is still loading; retry in a few seconds."
                )
            raise NoChampionError(
                message or f"No champion for {key[0]} {target}: run `{fix_command(key[0])}`.",
                fix or fix_command(key[0]),
            )
        return served

    def unknown_message(self, symbol: str, target: str) -> str:
        what = []
        if symbol.upper() not in self.symbols:
            what.append(f"symbol {symbol!r}")
        if target not in self.targets:
            what.append(f"target {target!r}")
        return (
            f"Unknown {' and '.join(what) or 'model'}: this service serves symbols "
            f"{', '.join(self.symbols)} and targets {', '.join(self.targets)}."
        )

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [slot.describe() for slot in self._slots.values()]

    def ready(self) -> bool:
        """True once the registry has been asked about every slot and answered: each model is
        loaded, or known to be absent or broken there; or, while the registry cannot be asked,
        serving the version this machine served last (model cache). A slot the registry could
        not be asked about yet with nothing cached (unreachable at start) keeps it not ready."""
        with self._lock:
            return all(slot.state in READY for slot in self._slots.values())

    def registry_status(self) -> dict[str, Any]:
        """Whether the last look-up reached the registry, when, and the error if it did not."""
        with self._lock:
            return {
                "uri": self.registry.where,
                "reachable": self._registry_error is None and self._registry_checked is not None,
                "checked_at": self._registry_checked,
                "error": self._registry_error,
            }

    # -- the poller ----------------------------------------------------------------------------

    def start(self) -> None:
        """Look every alias up and keep doing so in a daemon thread (the first pass included,
        so a slow registry delays readiness, not the process start)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="champion-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_first_pass(self, timeout: float | None = None) -> bool:
        return self._first_pass.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.refresh()
            except Exception:  # the poller must outlive any one bad pass
                log.exception("champion poll failed; will retry")
            self._first_pass.set()
            self._stop.wait(max(0.0, self.poll_seconds - (time.monotonic() - started)))

    def refresh(self) -> None:
        """One pass: learn where every alias points (one paged registry search, not a look-up
        per model: a service of 100 symbols asks once, not 100 times) and load/swap where one
        moved. The version's details are fetched only for a slot whose alias moved."""
        from pricebot.pooling import choose_served, registered_pools, serving_candidates

        now = datetime.now(UTC)
        slots = list(self._slots.values())
        down = self._probe()
        if down is not None:
            for slot in slots:
                self._unreachable(slot, now, down)
            self._serve_cached(slots, now)
            return
        try:
            pools = registered_pools(self.registry)
            names = [serving_candidates(slot.symbol, slot.target, pools) for slot in slots]
            targets = self.registry.alias_versions(
                self.alias, sorted({name for group in names for name in group})
            )
        except Exception as exc:  # connection refused, timeouts: the registry is unreachable
            for slot in slots:
                self._unreachable(slot, now, exc)
            self._serve_cached(slots, now)
            return
        with self._lock:
            self._registry_checked, self._registry_error = now, None
        if targets != self._last_targets:  # an alias moved (a rollback re-tags an old version)
            self._moved.clear()
            self._last_targets = targets
        for slot, group in zip(slots, names, strict=True):
            if self._stop.is_set():
                return
            try:
                chosen = choose_served(
                    group,
                    lambda name: name in targets,
                    lambda name: self._moved_at(name, targets[name]),
                )
                if chosen != slot.name:
                    log.info("%s %s: now follows %s", slot.symbol, slot.target, chosen)
                    with self._lock:
                        slot.name = chosen  # what is served stays until the new one loads
                self._refresh_slot(slot, targets.get(slot.name), now)
            except Exception as exc:  # the registry failed in the middle of the pass
                self._unreachable(slot, now, exc)

    def _probe(self) -> Exception | None:
        """The error of a quick ``/health`` look when the registry is not known to answer (no
        pass yet, or the last one failed); None when it answers or cannot be probed so (a
        local store). MLflow's client retries a refused connection with a back-off of seconds:
        the probe fails in milliseconds, so a start before the registry serves the cache at
        once and a registry that comes back is seen at the next poll."""
        with self._lock:
            confirmed = self._registry_checked is not None and self._registry_error is None
        uri = self.registry.tracking_uri or ""
        if confirmed or not uri.startswith(("http://", "https://")):
            return None
        from pricebot.errors import TrackingUnavailableError

        try:
            self.registry.check(timeout=self.probe_seconds)
        except TrackingUnavailableError as exc:
            return exc
        return None

    def _serve_cached(self, slots: list[Slot], now: datetime) -> None:
        """While the registry cannot be asked: serve, in each slot that has nothing yet, the
        version this machine served last for the alias. Asked once per slot: a slot without an
        entry, or with a damaged one, waits for the registry as before."""
        if self.cache is None:
            return
        from pricebot.errors import DamagedCacheEntryError
        from pricebot.model_cache import load_model

        for slot in slots:
            if self._stop.is_set():
                return
            with self._lock:
                if slot.served is not None or slot.cache_tried:
                    continue
                slot.cache_tried = True
            started = time.monotonic()
            try:
                entry = self.cache.served(slot.symbol, slot.target, self.alias)
                if entry is None:
                    continue
                model = load_model(entry)
                served = self._served_from(slot, entry, model)
            except DamagedCacheEntryError as exc:
                log.warning(
                    "%s %s: not serving the cached model: %s", slot.symbol, slot.target, exc
                )
                self._emit(CACHE_DAMAGED, slot)
                continue
            except Exception as exc:  # e.g. its columns no longer match the feature set
                log.warning(
                    "%s %s: not serving the cached model (%s: %s)",
                    slot.symbol, slot.target, type(exc).__name__, _first_line(exc),
                )  # fmt: skip
                self._emit(CACHE_DAMAGED, slot)
                continue
            with self._lock:
                if slot.served is not None:  # the registry won the race meanwhile
                    continue
                slot.served = served
                slot.name = served.name
                slot.state = CACHED
                slot.message = self._cached_message(served, self._registry_error)
            log.warning(
                "%s@%s: registry unreachable; serving version %s from the model cache "
                "(stored %s), loaded in %.2fs",
                served.name, self.alias, served.version,
                served.cached_at.isoformat(timespec="seconds") if served.cached_at else "?",
                time.monotonic() - started,
            )  # fmt: skip
            self._emit(CACHE_SERVED, slot)

    def _cached_message(self, served: ServedModel, reason: str | None) -> str:
        stored = served.cached_at.isoformat(timespec="seconds") if served.cached_at else "earlier"
        return (
            f"{reason or 'model registry not asked yet'}; serving version {served.version} of "
            f"{served.name}, which this machine served last for alias {self.alias} (cached "
            f"{stored}) until the registry answers"
        )

    def _served_from(self, slot: Slot, entry: Any, model: Any) -> ServedModel:
        """A cached entry as a served model: what /models shows comes from its manifest."""
        return _served_model(
            slot, self.alias, model, name=entry.name, version=entry.version,
            run_id=entry.run_id, tags=entry.tags, feature_set=entry.feature_set,
            metrics=dict(entry.metrics), importance=entry.feature_importance,
            market=entry.market, cached_at=entry.stored_at,
        )  # fmt: skip

    def _moved_at(self, name: str, number: str) -> str:
        """When the alias was moved to this version (cached: a version's tags are written once,
        by the promotion that moved the alias to it)."""
        key = (name, number)
        if key not in self._moved:
            version = self.registry.get_version(name, number)
            tags = dict(version.tags or {}) if version is not None else {}
            self._moved[key] = str(tags.get(f"{self.alias}.moved_at", ""))
        return self._moved[key]

    def _refresh_slot(self, slot: Slot, number: str | None, now: datetime) -> None:
        if number is None:
            self._alias_missing(slot, now)
            return
        with self._lock:
            slot.checked_at = now
            slot.alias_version = number
            served = slot.served
            current = served.version if served and served.name == slot.name else None
        if number == current:
            with self._lock:
                if slot.state != SERVING:
                    log.info("%s@%s is version %s again; serving it", slot.name, self.alias, number)
                slot.state, slot.message, slot.failed_version = SERVING, None, None
            return
        if number == slot.failed_version and time.monotonic() < slot.retry_at:
            return  # a version that just failed: retried with back-off, not every poll
        version = self.registry.get_version(slot.name, number)
        if version is None:  # deleted between the search and now: next pass sees the truth
            return
        self._load_and_swap(slot, version, now)

    def _alias_missing(self, slot: Slot, now: datetime) -> None:
        with self._lock:
            slot.checked_at, slot.alias_version = now, None
            if slot.served is not None:
                message = (
                    f"alias {self.alias} of {slot.name} no longer exists; "
                    f"still serving version {slot.served.version}"
                )
                if slot.state != KEPT or slot.message != message:
                    log.warning(message)
                    event = ALIAS_VANISHED
                else:
                    event = None
                slot.state, slot.message = KEPT, message
            else:
                slot.state, slot.fix = MISSING, fix_command(slot.symbol)
                slot.message = (
                    f"No champion for {slot.symbol} {slot.target} yet ({slot.name}@{self.alias} "
                    f"is not registered): run `{slot.fix}`."
                )
                event = None
        if event:
            self._emit(event, slot)

    def _unreachable(self, slot: Slot, now: datetime, exc: Exception) -> None:
        reason = f"model registry unreachable ({type(exc).__name__}: {_first_line(exc)})"
        with self._lock:
            self._registry_checked, self._registry_error = now, reason
            slot.checked_at = now
            if slot.state == CACHED and slot.served is not None:
                slot.message = self._cached_message(slot.served, reason)
            elif slot.served is not None:
                slot.state = KEPT
                slot.message = f"{reason}; still serving version {slot.served.version}"
            elif slot.state in (MISSING, FAILED):
                pass  # what the registry said last still holds; /models shows the registry
            else:
                slot.state = UNREACHABLE
                slot.fix = f"check that the MLflow server at {self.registry.where} is up"
                slot.message = (
                    f"No model loaded for {slot.symbol} {slot.target}: {reason}. Check "
                    f"MLFLOW_TRACKING_URI; the service retries every {self.poll_seconds:g}s."
                )
        log.warning("%s: %s", slot.name, reason)
        self._emit(REGISTRY_UNREACHABLE, slot)

    def _load_and_swap(self, slot: Slot, version: Any, now: datetime) -> None:
        number = str(version.version)
        started = time.monotonic()
        try:
            served = self._load(slot, version)
        except Exception as exc:
            slot.failures += 1
            slot.failed_version = number
            delay = min(self.max_retry_seconds, self.poll_seconds * 2 ** min(slot.failures, 10))
            slot.retry_at = time.monotonic() + delay
            reason = f"version {number} failed to load ({type(exc).__name__}: {_first_line(exc)})"
            with self._lock:
                if slot.served is not None:
                    slot.state = KEPT
                    slot.message = f"{reason}; still serving version {slot.served.version}"
                else:
                    slot.state, slot.fix = FAILED, fix_command(slot.symbol)
                    slot.message = (
                        f"No model for {slot.symbol} {slot.target}: {reason}. Register a working "
                        f"version (`{fix_command(slot.symbol)}`); retrying in {delay:.0f}s."
                    )
            log.error("%s@%s: %s", slot.name, self.alias, slot.message)
            self._emit(SWAP_FAILED, slot)
            return
        with self._lock:
            previous = slot.served
            slot.served = served  # the swap: one reference assignment, readers see old or new
            slot.state, slot.message = SERVING, None
            slot.failed_version, slot.failures = None, 0
            slot.swaps += 1
        self._remember(slot, served)
        log.info(
            "%s@%s: now serving version %s (was %s), loaded in %.2fs",
            slot.name,
            self.alias,
            number,
            previous.version if previous else "nothing",
            time.monotonic() - started,
        )
        self._emit(SWAPPED, slot)

    def _load(self, slot: Slot, version: Any) -> ServedModel:
        if self._loader is not None:
            return self._described(
                slot, version, self._loader(f"models:/{slot.name}/{version.version}")
            )
        if self.cache is None:
            return self._described(slot, version, self.registry.load(slot.name, version.version))
        import mlflow.pyfunc

        # Downloaded into the cache's staging area and loaded from there: the files the
        # service loaded are the files it keeps (no second download), kept only once they load.
        with self.cache.staging() as staged:
            local = self.registry.download(slot.name, version.version, staged / "model")
            served = self._described(slot, version, mlflow.pyfunc.load_model(str(local)))
            try:
                self.cache.store(
                    staged, name=slot.name, version=served.version, alias=self.alias,
                    symbol=slot.symbol, target=slot.target, run_id=served.run_id,
                    tags=dict(version.tags or {}), metrics=served.metrics,
                    feature_importance=served.feature_importance,
                )  # fmt: skip
            except Exception as exc:  # a full disk must not stop serving
                log.warning(
                    "%s version %s: not kept in the model cache (%s: %s)",
                    slot.name, served.version, type(exc).__name__, _first_line(exc),
                )  # fmt: skip
        return served

    def _remember(self, slot: Slot, served: ServedModel) -> None:
        """Record in the cache what this slot serves now, for a start without the registry."""
        if self.cache is None or served.cached_at is not None:
            return
        try:
            self.cache.remember_served(
                slot.symbol, slot.target, self.alias, served.name, served.version
            )
        except OSError as exc:
            log.warning("%s: not recorded in the model cache (%s)", slot.name, exc)

    def _described(self, slot: Slot, version: Any, model: Any) -> ServedModel:
        """The loaded version with what describes it (tags, run metrics, importance)."""
        tags = dict(version.tags or {})
        metrics, importance = self._run_details(version.run_id)
        return _served_model(
            slot, self.alias, model, name=slot.name, version=str(version.version),
            run_id=version.run_id, tags=tags, feature_set=tags.get("feature_set", "v1"),
            metrics=metrics, importance=importance, market=tags.get("market"),
        )  # fmt: skip

    def _run_details(self, run_id: str | None) -> tuple[dict[str, float], dict[str, float] | None]:
        """Headline metrics and feature importance of the run; missing ones are not an error."""
        if not run_id:
            return {}, None
        metrics: dict[str, float] = {}
        importance = None
        try:
            metrics = self.registry.run_metrics(run_id)
        except Exception as exc:
            log.warning("run %s: metrics unavailable (%s)", run_id, _first_line(exc))
        try:
            raw = self.registry.run_json(run_id, "feature_importance.json")
            importance = {str(k): float(v) for k, v in dict(raw).items()}
        except Exception:
            importance = None  # the artifact is optional
        return metrics, importance

    def _emit(self, event: str, slot: Slot) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event, slot)
            except Exception:
                log.exception("on_event callback failed for %s", event)


def _served_model(
    slot: Slot,
    alias: str,
    model: Any,
    *,
    name: str,
    version: str,
    run_id: str | None,
    tags: dict[str, str],
    feature_set: str,
    metrics: dict[str, float],
    importance: dict[str, float] | None,
    market: str | None,
    cached_at: datetime | None = None,
) -> ServedModel:
    """A loaded model as served, from the registry or the model cache alike: its columns
    checked against the feature set it was trained on (plus ``symbol`` when pooled)."""
    from pricebot.explanations import estimator_of, pool_symbols_of
    from pricebot.features import feature_names

    columns = tuple(feature_names(feature_set))
    pooled = tags.get("pool") == "true"
    _check_columns(model, (*columns, "symbol") if pooled else columns, feature_set)
    return ServedModel(
        symbol=slot.symbol,
        target=slot.target,
        name=name,
        version=version,
        alias=alias,
        feature_set=feature_set,
        horizon_minutes=_horizon(tags, slot.target),
        run_id=run_id,
        columns=columns,
        loaded_at=datetime.now(UTC),
        model=model,
        metrics=metrics,
        feature_importance=importance,
        market=market,
        estimator=estimator_of(model),
        pooled=pooled,
        pool_symbols=pool_symbols_of(model) if pooled else (),
        cached_at=cached_at,
    )


def _check_columns(model: Any, columns: tuple[str, ...], feature_set: str) -> None:
    """Refuse a model whose signature wants other inputs than the feature set provides."""
    try:
        schema = model.metadata.get_input_schema()
    except Exception:
        return
    if schema is None or not getattr(schema, "has_input_names", lambda: False)():
        return
    wanted = tuple(schema.input_names())
    if set(wanted) != set(columns):
        missing = sorted(set(wanted) - set(columns))
        extra = sorted(set(columns) - set(wanted))
        raise ValueError(
            f"the model's input columns do not match feature set {feature_set}: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )


def _horizon(tags: dict[str, str], target: str) -> int:
    if "horizon_minutes" in tags:
        return int(tags["horizon_minutes"])
    from pricebot.targets import parse_target

    return int(parse_target(target).horizon_minutes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
