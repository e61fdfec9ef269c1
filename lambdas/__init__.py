"""AWS Lambda adapters: Powertools handlers that make one call into the core each.

What every handler wraps its work in lives here (each function's zip carries this file beside
its own ``lambdas/<function>/``); importing it costs nothing beyond ``os``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.logging import Logger
    from aws_lambda_powertools.metrics import Metrics
    from aws_lambda_powertools.utilities.typing import LambdaContext

    Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def tracing_enabled() -> bool:
    """Whether X-Ray tracing is wanted: off with POWERTOOLS_TRACE_DISABLED, as Powertools says."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() not in ("1", "true")


def instrument(work: Handler, logger: Logger, metrics: Metrics) -> Handler:
    """``work`` inside Powertools' metrics, tracing (only when enabled: the Tracer brings the
    X-Ray SDK and botocore) and logging with the EventBridge correlation id."""
    from aws_lambda_powertools.logging import correlation_paths

    handler = metrics.log_metrics(capture_cold_start_metric=True)(work)
    if tracing_enabled():
        from aws_lambda_powertools.tracing import Tracer

        handler = Tracer().capture_lambda_handler(handler)
    return logger.inject_lambda_context(
        correlation_id_path=correlation_paths.EVENT_BRIDGE, log_event=False
    )(handler)
