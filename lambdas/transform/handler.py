"""Transform Lambda: bring features up to date and fill in outcomes of logged predictions.

Triggered by ``KlinesIngested`` (for the symbols it names) and by a slower schedule as a safety
net (for every configured symbol). Both steps are idempotent, so a duplicate delivery writes no
feature row twice and scores no prediction twice.

As for the ingest function, importing this module costs only Powertools' Logger and Metrics:
the computing stack (numpy, pandas, psycopg, :data:`DEFERRED`) is imported by the first
invocation, and the Tracer with the X-Ray SDK only when tracing is on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit

from lambdas import instrument

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pricebot import cloud

#: What the first invocation imports rather than the module (the benchmark measures both).
DEFERRED = ("pricebot.cloud", "pricebot.predictions", "pricebot.transform")

logger = Logger()
metrics = Metrics()


@lru_cache(maxsize=1)
def settings() -> cloud.LambdaSettings:
    from pricebot import cloud

    return cloud.LambdaSettings()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The entry point: :func:`transform` inside Powertools' logging, tracing and metrics."""
    return _instrumented()(event, context)


@lru_cache(maxsize=1)
def _instrumented() -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Powertools decorators around :func:`transform`, applied once, on the first call."""
    return instrument(transform, logger, metrics)


def transform(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from pricebot import cloud
    from pricebot.predictions import score_predictions
    from pricebot.transform import update_features

    config = settings()
    symbols = cloud.symbols_for(event, config, "transform")
    url = cloud.database_url(config)
    rows = update_features(url, symbols, config.feature_set)
    scored = score_predictions(url)
    metrics.add_metric("FeatureRows", MetricUnit.Count, sum(rows.values()))
    metrics.add_metric("PredictionsScored", MetricUnit.Count, scored)
    logger.info("transformed", extra={"feature_rows": rows, "predictions_scored": scored})
    return {"feature_rows": rows, "predictions_scored": scored}
