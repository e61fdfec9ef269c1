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

This module plans and loads history (:func:`load_history`, the Binance Vision backfill);
``pricebot bootstrap`` runs the plan, handing the training to the ``train`` command of the CLI
(the core does not import the training job).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from pricebot.errors import BootstrapError
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


def history_until(now: datetime | None = None) -> date:
    """The last day Binance Vision has published: yesterday (UTC). The minutes since then come
    from the exchange's REST API, which the ingest function catches up every few minutes."""
    return (now or datetime.now(UTC)).date() - timedelta(days=1)


def load_history(
    url: str,
    symbols: Sequence[str],
    since: date,
    until: date,
    *,
    vision_url: str,
    directory: Path,
    on_download: Callable[[Any], None] | None = None,
) -> dict[str, int]:
    """Backfill ``symbols`` from ``since`` to ``until`` from Binance Vision; new rows per symbol.

    The one way the bootstrap loads history (:mod:`pricebot.backfill`: monthly and daily
    archives with their checksums, resumable, through the one import path), so a bootstrap run
    again after a failure downloads only what is missing. Raises :class:`BootstrapError` naming
    every file refused and every symbol with no archive at all; what was imported stays.
    """
    from pricebot.backfill import backfill
    from pricebot.vision import VisionClient

    with VisionClient(vision_url, directory) as client:
        results = backfill(url, client, symbols, since, until, on_download=on_download)
    problems = []
    for result in results:
        problems += [f"{d.file.name}: {d.problem}" for d in result.refused]
        problems += [str(i.error) for i in result.failed_imports]
        if result.downloads and len(result.missing) == len(result.downloads):
            problems.append(
                f"{result.symbol}: {vision_url} has no archive between {since} and {until} "
                "(is it a spot symbol, listed then?)"
            )
    if problems:
        raise BootstrapError(
            f"history not loaded from {vision_url}: {'; '.join(problems)}. Run the bootstrap "
            "again: verified files are kept and stored candles skipped"
        )
    return {result.symbol: result.rows_new for result in results}
