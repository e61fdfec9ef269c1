"""The pricebot prediction service: BentoML hosts it, :mod:`pricebot.serving` decides.

Everything that decides something (which model, which features, what to log, when to swap)
lives in the core; :mod:`pricebot_service.http` answers the API's routes (an ASGI layer in front
of BentoML's router, for speed: see its docstring), :mod:`pricebot_service.openapi` documents
them, :mod:`pricebot_service.access` checks the API key.

What BentoML provides and is kept: ``bentoml serve`` and the Bento, one worker per core
(``workers="cpu_count"``; each worker holds its own models, cache and log writer), the
lifecycle (this class is built in each worker; ``on_shutdown`` writes the queued predictions),
``/readyz`` (``__is_ready__``), ``/livez``, the docs page at ``/``, the traffic timeout.

Switched off, and why: BentoML's per-request metrics middleware (our own request series replace
it, at a fraction of the cost), tracing of the API routes (no exporter is configured; the span
machinery alone cost more than an answer) and the access log (one log line per request at
thousands per second; the load balancer keeps access logs).

Run it with ``pricebot serve`` (or ``bentoml serve pricebot_service.service:PriceBot``).
"""

from __future__ import annotations

import gc
import logging
import os

import bentoml

from pricebot_service.middleware import ApiMiddleware

log = logging.getLogger("pricebot.service")

API_ROUTES = ["/predict", "/predict_batch", "/models", "/metrics", "/docs.json"]
#: Longest a worker waits for its first look at the registry before it serves anyway (then
#: not ready, and answering 503 "still loading" for what has not loaded).
FIRST_LOAD_SECONDS = 300.0


@bentoml.service(
    name="pricebot",
    workers="cpu_count",
    traffic={"timeout": 30},
    metrics={"enabled": False},
    tracing={"excluded_urls": API_ROUTES},
    logging={"access": {"enabled": False}},
)
class PriceBot:
    """Predictions from the champion model of each served symbol and target."""

    def __init__(self) -> None:
        from pricebot.serving import Predictor
        from pricebot.settings import get_settings
        from pricebot_service.access import ApiKeys
        from pricebot_service.http import Api
        from pricebot_service.metrics import Metrics
        from pricebot_service.openapi import build_spec

        logging.getLogger("pricebot").setLevel(logging.INFO)
        # MLflow retries an unreachable server for minutes by default; the poller retries by
        # itself every poll, so fail a look-up fast and report the registry unreachable.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        settings = get_settings()
        keys = ApiKeys.from_settings(settings)  # refuses to start open when a key is required
        if not keys.enabled:
            log.warning(
                "PRICEBOT_API_KEYS is not set: the prediction API is OPEN to anyone who can "
                "reach this port. Set PRICEBOT_API_KEYS (and PRICEBOT_REQUIRE_API_KEY=true "
                "wherever it is deployed)."
            )
        self.metrics = metrics = Metrics().start()
        # Each worker takes connections only once it is started (the workers share one
        # listening socket), so a worker that has not loaded its models yet never answers a
        # request with "still loading" while another one says the service is ready.
        self.predictor = Predictor.from_settings(
            settings,
            observe=metrics.observe,
            on_event=metrics.on_model_event,
            on_log_event=metrics.on_log_event,
        ).start(wait_seconds=FIRST_LOAD_SECONDS)
        spec = build_spec(settings, keys_enabled=keys.enabled, version=_version())
        self.api = Api(settings, self.predictor, keys, metrics, spec)
        # The loaded models are a large, long-lived heap that every full collection of the
        # cyclic garbage collector would walk again; move what exists now out of its sight.
        gc.collect()
        gc.freeze()

    @bentoml.on_deployment
    def check_configuration() -> None:  # type: ignore[misc]  # a static hook, no self
        """Run once by ``bentoml serve`` before any worker starts: a configuration the service
        must not run with (an API key required and none set) stops the whole server with the
        message, instead of leaving it restarting workers that refuse to start."""
        from pricebot.settings import get_settings
        from pricebot_service.access import ApiKeys

        ApiKeys.from_settings(get_settings())

    async def __is_ready__(self) -> bool:
        """/readyz: every served model is loaded or known to be absent or broken in the
        registry; a registry that could not be asked yet keeps the service not ready."""
        return self.predictor.ready()

    @bentoml.on_shutdown
    def close(self) -> None:
        """Stop polling and write every logged prediction before the process exits."""
        self.predictor.close()
        self.metrics.stop()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pricebot")
    except PackageNotFoundError:
        return "0"


PriceBot.add_asgi_middleware(ApiMiddleware)
