"""Ingest Lambda: catch up 1-minute candles for a batch of symbols and announce what was written.

Triggered by the EventBridge schedule (every 5 minutes) or by an ``IngestBatchRequested`` event.
A scheduled run over more symbols than one invocation should handle fans out: it puts one
``IngestBatchRequested`` event per batch and returns, and each batch arrives as its own invocation.
A failure raises, so the invocation is retried and ends in the dead-letter queue; each page of
candles is its own transaction, so nothing is half-written and the next run resumes.

Imports neither numpy nor pandas: this is the cold-start path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pricebot import cloud
from pricebot.db import connect
from pricebot.ingest import catch_up

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
    symbols = cloud.symbols_for(event, config, "ingest")
    if len(symbols) > config.batch_size:
        batches = cloud.batches(symbols, config.batch_size)
        cloud.put_events(config.event_bus, cloud.INGEST_BATCH, ({"symbols": b} for b in batches))
        logger.info("fanned out", extra={"symbols": len(symbols), "batches": len(batches)})
        return {"fanned_out": len(batches)}

    with connect(cloud.database_url(config), autocommit=True) as conn:
        results = catch_up(conn, symbols)
    now = datetime.now(UTC)
    written = [r for r in results if r.rows_written]
    metrics.add_metric("CandlesWritten", MetricUnit.Count, sum(r.rows_written for r in results))
    metrics.add_metric("Pages", MetricUnit.Count, sum(r.pages for r in results))
    metrics.add_metric("Retries", MetricUnit.Count, sum(r.retries for r in results))
    metrics.add_metric("Gaps", MetricUnit.Count, sum(r.gaps for r in results))
    newest = [r.end for r in results if r.end is not None]
    if newest:
        metrics.add_metric("LagSeconds", MetricUnit.Seconds, (now - min(newest)).total_seconds())
    if written:
        detail = cloud.KlinesIngestedDetail(
            symbols=[
                cloud.SymbolRange(symbol=r.symbol, start=r.start, end=r.end, rows=r.rows_written)
                for r in written
            ]
        )
        cloud.put_events(config.event_bus, cloud.KLINES_INGESTED, [detail.model_dump(mode="json")])
    logger.info(
        "caught up",
        extra={"symbols": len(symbols), "candles": sum(r.rows_written for r in results)},
    )
    return {"symbols": len(symbols), "candles_written": sum(r.rows_written for r in results)}
