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


def symbols_for(event: dict[str, Any], config: cloud.LambdaSettings) -> list[str]:
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return list(config.symbols)
    if (
        event.get("source") == cloud.EVENT_SOURCE
        and event.get("detail-type") == cloud.KLINES_INGESTED
    ):
        detail = cloud.parse_detail(event, cloud.KlinesIngestedDetail)
        return list(dict.fromkeys(s.symbol for s in detail.symbols))
    raise cloud.UnexpectedEventError(
        f"The transform function takes {cloud.KLINES_INGESTED} events and its schedule, "
        f"not source={event.get('source')!r} detail-type={event.get('detail-type')!r}"
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = settings()
    symbols = symbols_for(event, config)
    url = cloud.database_url(config)
    rows = update_features(url, symbols, config.feature_set)
    scored = score_predictions(url)
    metrics.add_metric("FeatureRows", MetricUnit.Count, sum(rows.values()))
    metrics.add_metric("PredictionsScored", MetricUnit.Count, scored)
    logger.info("transformed", extra={"feature_rows": rows, "predictions_scored": scored})
    return {"feature_rows": rows, "predictions_scored": scored}
