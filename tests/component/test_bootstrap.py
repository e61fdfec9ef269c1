"""The bootstrap plan against the real PostgreSQL and MLflow: only what is missing is done."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pricebot.bootstrap import plan_bootstrap
from pricebot.registry import Registry, model_name

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def registry(tracking_uri: str) -> Registry:
    return Registry(tracking_uri)


@pytest.fixture
def symbols() -> list[str]:
    """Symbols no other test registered models for (the tracking server is shared)."""
    tag = uuid.uuid4().hex[:8].upper()
    return [f"AAA{tag}", f"BBB{tag}", f"CCC{tag}"]


def store_candle(conn: psycopg.Connection, symbol: str, when: datetime) -> None:
    conn.execute(
        "INSERT INTO klines VALUES (%s, %s, 1, 1, 1, 1, 1, %s, 1, 1, 1, 1, '0', 'test')",
        (symbol, when, when + timedelta(seconds=59)),
    )


def register(registry: Registry, symbol: str, *, champion: bool) -> None:
    """A registered version (its artifact is never loaded: the plan only asks the registry)."""
    client = registry.client
    name = model_name(symbol, "ret1h")
    experiment = client.create_experiment(f"bootstrap-{symbol}")
    run = client.create_run(experiment)
    client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    if champion:
        client.set_registered_model_alias(name, "champion", version.version)


def test_a_new_stack_backfills_and_trains_everything(
    database_url: str, registry: Registry, symbols: list[str]
) -> None:
    with psycopg.connect(database_url) as conn:
        plan = plan_bootstrap(conn, registry, symbols, ["ret1h"], history_days=30, now=NOW)

    assert plan.backfill == symbols
    assert plan.train == [(s, "ret1h") for s in symbols]
    assert plan.since == datetime(2026, 11, 1, tzinfo=UTC)


def test_a_bootstrapped_stack_has_nothing_to_do(
    database_url: str, registry: Registry, symbols: list[str]
) -> None:
    # Given history reaching back far enough and a champion for every symbol
    with psycopg.connect(database_url) as conn:
        for symbol in symbols:
            store_candle(conn, symbol, NOW - timedelta(days=31))
            register(registry, symbol, champion=True)
        plan = plan_bootstrap(conn, registry, symbols, ["ret1h"], history_days=30, now=NOW)

    assert plan.empty
    assert all("served (@champion = v1)" in note for note in plan.notes)


def test_only_the_missing_pieces_are_planned(
    database_url: str, registry: Registry, symbols: list[str]
) -> None:
    a, b, c = symbols
    with psycopg.connect(database_url) as conn:
        store_candle(conn, a, NOW - timedelta(days=30))  # long enough (the tolerance)
        store_candle(conn, b, NOW - timedelta(days=3))  # too short: backfill
        register(registry, a, champion=True)
        register(registry, b, champion=False)  # trained, not promoted: not retrained here
        plan = plan_bootstrap(conn, registry, symbols, ["ret1h"], history_days=30, now=NOW)

    assert plan.backfill == [b, c]
    assert plan.train == [(c, "ret1h")]
    assert any("trained, not promoted yet" in note for note in plan.notes)
