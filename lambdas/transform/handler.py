"""Transform Lambda: bring features up to date and fill in outcomes of logged predictions.

Triggered by ``KlinesIngested`` (for the symbols it names) and by a slower schedule as a safety
net (for every configured symbol). Both steps are idempotent, so a duplicate delivery writes no
feature row twice and scores no prediction twice.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pricebot import cloud
from pricebot.predictions import score_predictions
from pricebot.transform import update_features

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@lru_cache(maxsize=1)
def settings() -> cloud.LambdaSettings:
    return cloud.LambdaSettings()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = settings()
    symbols = cloud.symbols_for(event, config, "transform")
    url = cloud.database_url(config)
    rows = update_features(url, symbols, config.feature_set)
    scored = score_predictions(url)
    metrics.add_metric("FeatureRows", MetricUnit.Count, sum(rows.values()))
    metrics.add_metric("PredictionsScored", MetricUnit.Count, scored)
    logger.info("transformed", extra={"feature_rows": rows, "predictions_scored": scored})
    return {"feature_rows": rows, "predictions_scored": scored}
