"""The service's Prometheus series, served on ``/metrics`` (with the API key).

Created in each worker after BentoML has set ``PROMETHEUS_MULTIPROC_DIR``, so every worker's
values land in the shared directory and ``/metrics`` on any worker shows the sum over all of
them. BentoML's own per-request metrics middleware is switched off (it costs more than the rest
of an answer); the request counts and durations it gave are here as
``pricebot_http_requests_total`` and ``pricebot_http_request_duration_seconds``.

The request path never touches a Prometheus value itself. In multiprocess mode every update
takes a lock and a ``getpid()`` system call (several per request, a hundred for a batch), so
the request path adds to plain dictionaries and a daemon thread writes them to the Prometheus
values once a second (``FLUSH_SECONDS``): counters as one increment per series, histograms as
one increment per touched bucket plus the sum. A scrape therefore lags by at most that second.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections import defaultdict
from typing import Any

from pricebot.champion import REGISTRY_UNREACHABLE, SWAP_FAILED, SWAPPED
from pricebot.predictions import DROPPED, FAILED, LOST_AT_EXIT, REJECTED, WRITTEN

log = logging.getLogger("pricebot.service")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_SECONDS = 1.0

_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SLOW = (*_FAST, 2.5, 5.0, 10.0)
INF = float("inf")


class _Histogram:
    """Observations of one histogram series, bucketed in memory until the next flush."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


class Metrics:
    def __init__(self, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        import prometheus_client as prom

        self.requests = prom.Counter(
            "pricebot_http_requests_total", "HTTP requests answered.", ["route", "status"]
        )
        self.duration = prom.Histogram(
            "pricebot_http_request_duration_seconds",
            "Time from a request's first byte in to its answer's last byte out, per route.",
            ["route"],
            buckets=_SLOW,
        )
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
        self.registry_unreachable = prom.Counter(
            "pricebot_registry_unreachable_total",
            "Alias look-ups that could not reach the model registry.",
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
            buckets=_FAST,
        )
        self._bounds = {self.duration: (*_SLOW, INF), self.stage: (*_FAST, INF)}
        self.log_rows = prom.Counter(
            "pricebot_prediction_log_rows_total",
            "Prediction-log rows by outcome: written; dropped (the queue was full while the "
            "database was away); rejected (the database refused the row); lost_at_exit "
            "(still queued when the service stopped).",
            ["outcome"],
        )
        self.log_failed_writes = prom.Counter(
            "pricebot_prediction_log_failed_writes_total",
            "Prediction-log write attempts that failed (each is retried after a back-off).",
        )
        self._lock = threading.Lock()
        self._counts: defaultdict[tuple[Any, tuple[str, ...]], float] = defaultdict(float)
        self._gauges: dict[tuple[Any, tuple[str, ...]], float] = {}
        self._histograms: dict[tuple[Any, tuple[str, ...]], _Histogram] = {}
        self._flush_seconds = flush_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Metrics:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the writer and write what is buffered."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            try:
                self.flush()
            except Exception:  # metrics must never take the service down
                log.exception("writing the metrics failed; retrying next second")

    def flush(self) -> None:
        """Write the buffered updates to the Prometheus values."""
        with self._lock:
            counts, self._counts = self._counts, defaultdict(float)
            gauges, self._gauges = self._gauges, {}
            histograms, self._histograms = self._histograms, {}
        for (metric, labels), amount in counts.items():
            (metric.labels(*labels) if labels else metric).inc(amount)
        for (metric, labels), value in gauges.items():
            metric.labels(*labels).set(value)
        for (metric, labels), buffered in histograms.items():
            _write_histogram(metric.labels(*labels), buffered)

    # -- the request path ----------------------------------------------------------------------

    def answered(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counts[(self.requests, (route, str(status)))] += 1
            self._observe(self.duration, (route,), seconds)

    def served(self, symbol: str, target: str, version: str, age_seconds: float) -> None:
        with self._lock:
            self._counts[(self.predictions, (symbol, target, version))] += 1
            self._gauges[(self.feature_age, (symbol,))] = age_seconds

    def served_many(self, answers: list[tuple[str, str, str, float]]) -> None:
        """``served`` for every answer of a batch, under one lock."""
        with self._lock:
            counts, gauges = self._counts, self._gauges
            for symbol, target, version, age_seconds in answers:
                counts[(self.predictions, (symbol, target, version))] += 1
                gauges[(self.feature_age, (symbol,))] = age_seconds

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._observe(self.stage, (stage,), seconds)

    def _observe(self, metric: Any, labels: tuple[str, ...], seconds: float) -> None:
        key = (metric, labels)
        buffered = self._histograms.get(key)
        if buffered is None:
            buffered = self._histograms[key] = _Histogram(self._bounds[metric])
        buffered.observe(seconds)

    # -- events from the core (rare: written at once) ------------------------------------------

    def on_model_event(self, event: str, slot: Any) -> None:
        if event == SWAPPED:
            self.swaps.labels(slot.name).inc()
        elif event == SWAP_FAILED:
            self.swap_failures.labels(slot.name).inc()
        elif event == REGISTRY_UNREACHABLE:
            self.registry_unreachable.labels(slot.name).inc()

    def on_log_event(self, kind: str, rows: int) -> None:
        if kind == FAILED:
            self.log_failed_writes.inc()
        elif kind in (WRITTEN, DROPPED, REJECTED, LOST_AT_EXIT):
            self.log_rows.labels(kind).inc(rows)


def _write_histogram(child: Any, buffered: _Histogram) -> None:
    """Add bucketed observations to a histogram child: one increment per touched bucket.

    prometheus_client has no bulk observe; its children keep one value per bucket
    (``_buckets``, non-cumulative) and the sum (``_sum``), which are what ``observe`` increments.
    Without them (another client version), each observation is replayed at its bucket's bound.
    """
    buckets, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if buckets is None or total is None or len(buckets) != len(buffered.counts):
        for bound, count in zip(buffered.bounds, buffered.counts, strict=True):
            for _ in range(count):
                child.observe(bound)
        return
    for value, count in zip(buckets, buffered.counts, strict=True):
        if count:
            value.inc(count)
    total.inc(buffered.total)


def exposition() -> bytes:
    """The text exposition of every worker's series (one worker's when not multiprocess)."""
    import prometheus_client as prom

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = prom.CollectorRegistry()
        MultiProcessCollector(registry)
        return prom.generate_latest(registry)
    return prom.generate_latest()
