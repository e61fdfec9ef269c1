"""What a deployment must do before it can serve: load history, train a first model.

A new stack has an empty database and an empty registry, so the service answers 503 for every
symbol. The deploy runs a bootstrap job once per deploy (``pricebot bootstrap``, on the job
image inside the VPC); it asks :func:`plan_bootstrap` what is missing and does only that:

- a configured symbol whose candles do not reach back ``history_days`` is backfilled from the
  Binance Vision archives (``pricebot backfill``), then its features are computed;
- a configured (symbol, target) with no champion *and no registered version at all* is trained
  once (``pricebot train``), through the same promotion gate as every training.

A pair that has been trained but whose models never passed the gate is left to the daily
retrain: training it again on every deploy would cost the same half hour and meet the same gate.
So the job is cheap (a few registry look-ups and two queries) once a stack is bootstrapped, and
the deploy can run it every time.

This module plans; the adapter that owns training executes (the core does not import it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from pricebot.registry import CHAMPION, Registry, model_name

# Candles up to this much younger than the wanted start still count as reaching it (the first
# archive day may be partial, and a listing date can be later than the wanted start).
START_TOLERANCE = timedelta(days=2)


@dataclass(frozen=True)
class BootstrapPlan:
    """Symbols to backfill (with the day to start from) and pairs to train, with reasons."""

    since: datetime
    backfill: list[str] = field(default_factory=list)
    train: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.backfill and not self.train


def first_candles(conn: psycopg.Connection, symbols: Sequence[str]) -> dict[str, datetime]:
    """The open time of each symbol's oldest stored candle (symbols without any are absent)."""
    rows = conn.execute(
        "SELECT symbol, (SELECT min(open_time) FROM klines k WHERE k.symbol = s.symbol)"
        " FROM unnest(%s::text[]) AS s(symbol)",
        (list(symbols),),
    ).fetchall()
    return {symbol: first for symbol, first in rows if first is not None}


def plan_bootstrap(
    conn: psycopg.Connection,
    registry: Registry,
    symbols: Sequence[str],
    targets: Sequence[str],
    *,
    history_days: int,
    alias: str = CHAMPION,
    now: datetime | None = None,
) -> BootstrapPlan:
    """What is missing for the configured symbols and (canonical) targets."""
    now = now or datetime.now(UTC)
    since = (now - timedelta(days=history_days)).replace(hour=0, minute=0, second=0, microsecond=0)
    plan = BootstrapPlan(since=since)
    firsts = first_candles(conn, symbols)
    for symbol in symbols:
        first = firsts.get(symbol)
        if first is None or first > since + START_TOLERANCE:
            plan.backfill.append(symbol)
            plan.notes.append(
                f"{symbol}: candles from {first:%Y-%m-%d}" if first else f"{symbol}: no candles"
            )
        for target in targets:
            name = model_name(symbol, target)
            champion = registry.alias_version(name, alias)
            if champion is not None:
                plan.notes.append(f"{name}: served (@{alias} = v{champion})")
            elif registry.versions(name):
                plan.notes.append(f"{name}: trained, not promoted yet (left to the daily retrain)")
            else:
                plan.train.append((symbol, target))
                plan.notes.append(f"{name}: never trained")
    return plan
