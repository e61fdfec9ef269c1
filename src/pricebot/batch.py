"""Batch predictions: every served symbol and target into the prediction log, without callers.

Live performance accrues only when predictions are logged; a service nobody calls logs none. A
scheduled batch (hourly in the cloud, on the stack's loop locally: ``pricebot predict``) makes
one prediction per (symbol, target) through exactly the path a request takes
(:class:`pricebot.serving.Predictor`: the champion pool, the newest feature row, the same
:class:`pricebot.predictions.PredictionLog`), so what the monitoring page scores is what the
service would have answered at that minute.

A (symbol, target) that cannot be predicted (no champion yet, no features yet, the database
away) is reported and skipped; the others are still predicted and logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pricebot.errors import (
    DatabaseUnavailableError,
    NoChampionError,
    NoFeaturesError,
    UnknownModelError,
)
from pricebot.model_health import BATCH_PREDICTED, BATCH_SKIPPED
from pricebot.serving import Prediction, Predictor
from pricebot.settings import Settings

#: What makes one (symbol, target) unpredictable for now, as opposed to the batch failing.
SKIPPED = (NoChampionError, NoFeaturesError, UnknownModelError, DatabaseUnavailableError)


@dataclass
class BatchResult:
    predictions: list[Prediction] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # symbol, target, why
    logged: bool = True  # every logged prediction was written before the batch returned


def predict_all(predictor: Predictor) -> BatchResult:
    """One prediction per served (symbol, target), logged; waits until the log has them."""
    result = BatchResult()
    for symbol in predictor.models.symbols:
        for target in predictor.models.targets:
            try:
                result.predictions.append(predictor.predict(symbol, target))
            except SKIPPED as exc:
                result.skipped.append((symbol, target, str(exc)))
    result.logged = predictor.predictions.flush()
    return result


def run_batch(settings: Settings, *, load_timeout: float = 120.0) -> BatchResult:
    """Start a predictor on ``settings`` (symbols, targets, alias, database, registry), load
    every champion once, predict everything, write the log and stop."""
    predictor = Predictor.from_settings(settings)
    predictor.models.refresh()  # load now, in this thread: a batch has nothing to serve early
    predictor.start()
    try:
        predictor.models.wait_first_pass(load_timeout)
        return predict_all(predictor)
    finally:
        predictor.close()


def batch_metric_data(result: BatchResult, now: datetime) -> list[dict[str, Any]]:
    """The batch's heartbeat for CloudWatch: pairs predicted *and* logged, pairs skipped.

    A batch whose log did not confirm its write counts no prediction: what the monitoring page
    cannot score was not delivered. The stack's alarm fires on hours without a positive count,
    so a job that stopped running, fails, or predicts nothing all look the same to it.
    """
    logged = len(result.predictions) if result.logged else 0
    return [
        {"MetricName": BATCH_PREDICTED, "Timestamp": now, "Value": float(logged), "Unit": "Count"},
        {"MetricName": BATCH_SKIPPED, "Timestamp": now, "Value": float(len(result.skipped)),
         "Unit": "Count"},
    ]  # fmt: skip
