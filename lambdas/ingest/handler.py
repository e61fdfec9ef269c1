"""Ingest Lambda: catch up 1-minute candles for a batch of symbols and announce what was written.

Triggered by the EventBridge schedule (every 5 minutes) or by an ``IngestBatchRequested`` event.
A scheduled run over more symbols than one invocation should handle fans out: it puts one
``IngestBatchRequested`` event per batch and returns, and each batch arrives as its own invocation.
A failure raises, so the invocation is retried and ends in the dead-letter queue; each page of
candles is its own transaction, so nothing is half-written and the next run resumes. A ban by
the exchange is not a failure: the answer says when ingestion resumes (retrying would only ask
a banning exchange again).

Importing this module costs only what every invocation uses: Powertools' Logger and Metrics.
The rest is imported when first used (:data:`DEFERRED`): the ingestion stack (httpx, psycopg,
pydantic's settings) by the first invocation that ingests, boto3 by the first fan-out, and
Powertools' Tracer with the X-Ray SDK (and botocore) only when tracing is on, once. Neither
numpy nor pandas is ever imported here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit

from lambdas import instrument

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pricebot import cloud

#: Seconds before the invocation's timeout at which waiting for the exchange stops.
DEADLINE_MARGIN_SECONDS = 30
#: What the first invocation imports rather than the module (the benchmark measures both).
DEFERRED = ("pricebot.cloud", "pricebot.db", "pricebot.ingest")

logger = Logger()
metrics = Metrics()


@lru_cache(maxsize=1)
def settings() -> cloud.LambdaSettings:
    from pricebot import cloud

    return cloud.LambdaSettings()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The entry point: :func:`ingest` inside Powertools' logging, tracing and metrics."""
    return _instrumented()(event, context)


@lru_cache(maxsize=1)
def _instrumented() -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Powertools decorators around :func:`ingest`, applied once, on the first call."""
    return instrument(ingest, logger, metrics)


def ingest(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from pricebot import cloud
    from pricebot.db import connect
    from pricebot.ingest import BUSY, catch_up

    config = settings()
    symbols = cloud.symbols_for(event, config, "ingest")
    if len(symbols) > config.batch_size:
        batches = cloud.batches(symbols, config.batch_size)
        cloud.put_events(config.event_bus, cloud.INGEST_BATCH, ({"symbols": b} for b in batches))
        logger.info("fanned out", extra={"symbols": len(symbols), "batches": len(batches)})
        return {"fanned_out": len(batches)}

    with connect(cloud.database_url(config), autocommit=True) as conn:
        results = catch_up(conn, symbols, deadline=_deadline(context))
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
    answer: dict[str, Any] = {
        "symbols": len(symbols),
        "candles_written": sum(r.rows_written for r in results),
    }
    busy = [r.symbol for r in results if r.skipped == BUSY]
    if busy:
        answer["skipped_busy"] = busy
    resume = max((r.resume_at for r in results if r.resume_at is not None), default=None)
    if resume is not None:
        # Not a failure: retrying would only ask a banning exchange again. The next scheduled
        # run after the ban's end resumes; until then every run returns here without a request.
        answer["resume_at"] = resume.isoformat()
        metrics.add_metric("BannedSeconds", MetricUnit.Seconds, (resume - now).total_seconds())
        logger.warning(
            "banned by the exchange: no request until the ban ends; ingestion resumes then",
            extra={"resume_at": resume.isoformat(),
                   "not_caught_up": [r.symbol for r in results if r.resume_at is not None]},
        )  # fmt: skip
    logger.info("caught up", extra={"symbols": len(symbols), "candles": answer["candles_written"]})
    return answer


def _deadline(context: LambdaContext) -> float | None:
    """When this invocation must stop waiting (epoch seconds): its timeout less a margin for
    recording the ban and announcing what was written. None outside Lambda."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.time() + remaining() / 1000 - DEADLINE_MARGIN_SECONDS
