"""Live model health: each champion's error against the no-change baseline, and feature drift,
computed from the database and published as CloudWatch metrics for the stack's alarms.

The scheduled scoring job (``pricebot score --publish-metrics``, hourly on ECS) first fills in
the outcomes of logged predictions (:func:`pricebot.predictions.score_predictions`), then calls
:func:`publish_model_health`.

Champion error. Over the predictions logged under the served alias whose outcome became known
in the last ``window`` (``feature_time + horizon`` inside it), one per (model version, feature
row) however many requests asked for it: the mean absolute error of the champion, and that of
the no-change baseline on the same rows. No change predicts a zero return (and "no event" for
an up/down target), as :data:`pricebot.evaluation.BASELINES`'s ``no_change`` does in the
walk-forward evaluation, so its error on a row is ``|actual|``. The published ratio
``ChampionErrorRatio = champion MAE / no-change MAE`` is above 1 when the champion does worse
than predicting nothing; the stack alarms when it stays there for a configured number of hours.
Fewer than ``min_scored`` rows publish only the count: too few points say nothing.

Feature drift. Per symbol, the population stability index of each feature between the last
``window`` of feature rows and the ``reference_days`` before it (ten bins at the reference's
deciles); the largest over the features is published (``FeatureDriftPSI``), the conventional
reading being < 0.1 stable, 0.1-0.25 moderate, > 0.25 a large shift.

Metrics (namespace ``pricebot/model``): ``ChampionErrorRatio``, ``ChampionMAE``,
``NoChangeMAE``, ``ScoredPredictions`` with dimensions ``Symbol`` and ``Target``;
``FeatureDriftPSI`` with ``Symbol`` and ``FeatureSet``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

NAMESPACE = "pricebot/model"
ERROR_RATIO = "ChampionErrorRatio"
CHAMPION_MAE = "ChampionMAE"
NO_CHANGE_MAE = "NoChangeMAE"
SCORED = "ScoredPredictions"
FEATURE_DRIFT = "FeatureDriftPSI"
#: The hourly batch's own heartbeat (``pricebot predict --publish-metrics``): how many (symbol,
#: target) pairs it predicted and logged, and how many it had to skip.
BATCH_PREDICTED = "BatchPredictionsLogged"
BATCH_SKIPPED = "BatchPredictionsSkipped"
PSI_BINS = 10
_PSI_FLOOR = 1e-4  # an empty bin counts as this share, so the index stays finite
_MAX_DATUMS_PER_CALL = 1000  # CloudWatch's PutMetricData limit


class ModelHealthSettings(BaseSettings):
    """The scoring job's knobs (``PRICEBOT_MODEL_HEALTH_*``)."""

    model_config = SettingsConfigDict(env_prefix="PRICEBOT_MODEL_HEALTH_", extra="ignore")

    window_hours: float = Field(24.0, gt=0, description="Rolling window of matured outcomes.")
    reference_days: float = Field(14.0, gt=0, description="Drift reference before the window.")
    min_scored: int = Field(30, ge=1, description="Fewest rows for an error to be published.")


@dataclass(frozen=True)
class ChampionHealth:
    """The served alias's live error for one (symbol, target) over the window."""

    symbol: str
    target: str
    scored: int
    champion_mae: float | None
    no_change_mae: float | None
    newest_version: str | None

    @property
    def error_ratio(self) -> float | None:
        """Champion MAE over no-change MAE; None when either is unknown or the baseline is 0."""
        if self.champion_mae is None or not self.no_change_mae:
            return None
        return self.champion_mae / self.no_change_mae


@dataclass(frozen=True)
class FeatureDrift:
    """The largest per-feature PSI for one symbol, and which feature it was."""

    symbol: str
    feature_set: str
    psi: float
    feature: str
    recent_rows: int
    reference_rows: int


_HEALTH_SQL = """
WITH matured AS (
    SELECT DISTINCT ON (symbol, target, model_version, feature_time)
           symbol, target, model_version, made_at, prediction, actual
    FROM predictions
    WHERE alias = %(alias)s
      AND actual IS NOT NULL
      AND feature_time + make_interval(mins => horizon_minutes) > %(since)s
      AND feature_time + make_interval(mins => horizon_minutes) <= %(now)s
      AND symbol = ANY(%(symbols)s) AND target = ANY(%(targets)s)
    ORDER BY symbol, target, model_version, feature_time, made_at DESC
)
SELECT symbol, target, count(*),
       avg(abs(prediction - actual)), avg(abs(actual)),
       (array_agg(model_version ORDER BY made_at DESC))[1]
FROM matured
GROUP BY symbol, target
"""


def champion_health(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    targets: Sequence[str],
    *,
    alias: str = "champion",
    window: timedelta = timedelta(hours=24),
    now: datetime | None = None,
    min_scored: int = 30,
) -> list[ChampionHealth]:
    """One entry per configured (symbol, target), in that order; unknown errors are None."""
    now = now or datetime.now(UTC)
    rows = conn.execute(
        _HEALTH_SQL,
        {"alias": alias, "since": now - window, "now": now, "symbols": list(symbols),
         "targets": list(targets)},
    ).fetchall()  # fmt: skip
    found = {(r[0], r[1]): r for r in rows}
    result = []
    for symbol in symbols:
        for target in targets:
            row = found.get((symbol, target))
            scored = int(row[2]) if row else 0
            enough = scored >= min_scored
            result.append(
                ChampionHealth(
                    symbol=symbol,
                    target=target,
                    scored=scored,
                    champion_mae=float(row[3]) if row and enough else None,
                    no_change_mae=float(row[4]) if row and enough else None,
                    newest_version=row[5] if row else None,
                )
            )
    return result


def population_stability_index(reference: np.ndarray, recent: np.ndarray) -> float:
    """PSI of one feature: bins at the reference's deciles, empty bins floored."""
    reference = reference[np.isfinite(reference)]
    recent = recent[np.isfinite(recent)]
    if reference.size == 0 or recent.size == 0:
        return math.nan
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    expected = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1
    )
    actual = np.bincount(np.searchsorted(edges, recent, side="right"), minlength=edges.size + 1)
    p = np.maximum(expected / reference.size, _PSI_FLOOR)
    q = np.maximum(actual / recent.size, _PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def _feature_values(
    conn: psycopg.Connection, symbol: str, feature_set: str, start: datetime, end: datetime
) -> np.ndarray:
    rows = conn.execute(
        "SELECT values FROM features WHERE symbol = %s AND feature_set = %s"
        " AND open_time > %s AND open_time <= %s",
        (symbol, feature_set, start, end),
    ).fetchall()
    if not rows:
        return np.empty((0, 0))
    return np.array([r[0] for r in rows], dtype="float64")


def feature_drift(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    feature_set: str,
    *,
    window: timedelta = timedelta(hours=24),
    reference: timedelta = timedelta(days=14),
    now: datetime | None = None,
    min_rows: int = 60,
) -> list[FeatureDrift]:
    """The largest feature PSI per symbol (symbols with too few rows on either side skipped)."""
    from pricebot.features import feature_names

    now = now or datetime.now(UTC)
    names = feature_names(feature_set)
    drifts = []
    for symbol in symbols:
        recent = _feature_values(conn, symbol, feature_set, now - window, now)
        past = _feature_values(conn, symbol, feature_set, now - window - reference, now - window)
        if len(recent) < min_rows or len(past) < min_rows:
            continue
        scores = [population_stability_index(past[:, i], recent[:, i]) for i in range(len(names))]
        finite = [(s, n) for s, n in zip(scores, names, strict=True) if math.isfinite(s)]
        if not finite:
            continue
        psi, feature = max(finite)
        drifts.append(FeatureDrift(symbol, feature_set, psi, feature, len(recent), len(past)))
    return drifts


def metric_data(
    healths: Iterable[ChampionHealth], drifts: Iterable[FeatureDrift], now: datetime
) -> list[dict[str, Any]]:
    """The CloudWatch datums for the health and drift figures."""
    data: list[dict[str, Any]] = []

    def datum(name: str, value: float, unit: str, dimensions: dict[str, str]) -> None:
        data.append(
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                "Timestamp": now,
                "Value": float(value),
                "Unit": unit,
            }
        )

    for h in healths:
        dims = {"Symbol": h.symbol, "Target": h.target}
        datum(SCORED, h.scored, "Count", dims)
        if h.champion_mae is not None and h.no_change_mae is not None:
            datum(CHAMPION_MAE, h.champion_mae, "None", dims)
            datum(NO_CHANGE_MAE, h.no_change_mae, "None", dims)
        if h.error_ratio is not None:
            datum(ERROR_RATIO, h.error_ratio, "None", dims)
    for d in drifts:
        datum(FEATURE_DRIFT, d.psi, "None", {"Symbol": d.symbol, "FeatureSet": d.feature_set})
    return data


def put_metrics(client: Any, data: Sequence[dict[str, Any]], namespace: str = NAMESPACE) -> int:
    """PutMetricData in batches CloudWatch accepts; returns how many datums were sent."""
    for start in range(0, len(data), _MAX_DATUMS_PER_CALL):
        client.put_metric_data(
            Namespace=namespace, MetricData=list(data[start : start + _MAX_DATUMS_PER_CALL])
        )
    return len(data)


@dataclass(frozen=True)
class HealthReport:
    healths: list[ChampionHealth]
    drifts: list[FeatureDrift]
    published: int


def publish_model_health(
    url: str,
    symbols: Sequence[str],
    targets: Sequence[str],
    feature_set: str,
    *,
    alias: str = "champion",
    settings: ModelHealthSettings | None = None,
    client: Any = None,
    now: datetime | None = None,
) -> HealthReport:
    """Compute every champion's live error and each symbol's drift, and publish them.

    ``targets`` are canonical target names (as the service logs them, e.g. ``ret24h``).
    """
    from pricebot.db import connect

    settings = settings or ModelHealthSettings()
    now = now or datetime.now(UTC)
    window = timedelta(hours=settings.window_hours)
    with connect(url) as conn:
        healths = champion_health(
            conn, symbols, targets, alias=alias, window=window, now=now,
            min_scored=settings.min_scored,
        )  # fmt: skip
        drifts = feature_drift(
            conn, symbols, feature_set, window=window,
            reference=timedelta(days=settings.reference_days), now=now,
        )  # fmt: skip
    if client is None:
        import boto3

        client = boto3.client("cloudwatch")
    published = put_metrics(client, metric_data(healths, drifts, now))
    for h in healths:
        log.info(
            "%s %s: %d scored, champion MAE %s, no-change MAE %s, ratio %s",
            h.symbol, h.target, h.scored, h.champion_mae, h.no_change_mae, h.error_ratio,
        )  # fmt: skip
    for d in drifts:
        log.info("%s drift: PSI %.3f (%s)", d.symbol, d.psi, d.feature)
    return HealthReport(healths, drifts, published)
