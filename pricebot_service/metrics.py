"""The service's Prometheus series, served on ``/metrics`` (with the API key).

Created in each worker after BentoML has set ``PROMETHEUS_MULTIPROC_DIR``, so every worker's
values land in the shared directory and ``/metrics`` on any worker shows the sum over all of
them. BentoML's own per-request metrics middleware is switched off (it costs more than the rest
of an answer); the request counts and durations it gave are here as
``pricebot_http_requests_total`` and ``pricebot_http_request_duration_seconds``.

Label children are looked up once and reused: ``labels()`` takes a lock and builds a key on
every call, which the hot path does not need to pay for.
"""

from __future__ import annotations

import os
from typing import Any

from pricebot.champion import REGISTRY_UNREACHABLE, SWAP_FAILED, SWAPPED
from pricebot.predictions import DROPPED, FAILED, LOST_AT_EXIT, REJECTED, WRITTEN

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self) -> None:
        import prometheus_client as prom

        self.requests = prom.Counter(
            "pricebot_http_requests_total", "HTTP requests answered.", ["route", "status"]
        )
        self.duration = prom.Histogram(
            "pricebot_http_request_duration_seconds",
            "Time from a request's first byte in to its answer's last byte out, per route.",
            ["route"],
            buckets=(*_FAST, 2.5, 5.0, 10.0),
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
        self._stages: dict[str, Any] = {}
        self._routes: dict[str, Any] = {}
        self._statuses: dict[tuple[str, int], Any] = {}
        self._served: dict[tuple[str, str, str], Any] = {}
        self._ages: dict[str, Any] = {}

    # -- the request path ----------------------------------------------------------------------

    def answered(self, route: str, status: int, seconds: float) -> None:
        counter = self._statuses.get((route, status))
        if counter is None:
            counter = self._statuses[(route, status)] = self.requests.labels(route, str(status))
        counter.inc()
        histogram = self._routes.get(route)
        if histogram is None:
            histogram = self._routes[route] = self.duration.labels(route)
        histogram.observe(seconds)

    def served(self, symbol: str, target: str, version: str, age_seconds: float) -> None:
        key = (symbol, target, version)
        counter = self._served.get(key)
        if counter is None:
            counter = self._served[key] = self.predictions.labels(symbol, target, version)
        counter.inc()
        gauge = self._ages.get(symbol)
        if gauge is None:
            gauge = self._ages[symbol] = self.feature_age.labels(symbol)
        gauge.set(age_seconds)

    def observe(self, stage: str, seconds: float) -> None:
        histogram = self._stages.get(stage)
        if histogram is None:
            histogram = self._stages[stage] = self.stage.labels(stage)
        histogram.observe(seconds)

    # -- events from the core ------------------------------------------------------------------

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
            return
        if kind in (WRITTEN, DROPPED, REJECTED, LOST_AT_EXIT):
            self.log_rows.labels(kind).inc(rows)


def exposition() -> bytes:
    """The text exposition of every worker's series (one worker's when not multiprocess)."""
    import prometheus_client as prom

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = prom.CollectorRegistry()
        MultiProcessCollector(registry)
        return prom.generate_latest(registry)
    return prom.generate_latest()
