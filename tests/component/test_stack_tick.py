"""The local stack's scheduler tick runs the batch predictions (``pricebot predict``, as the
cloud's hourly job) on its own turn: real PostgreSQL (a ``pricebot`` database where the stack
looks for it), a real MLflow server with a registered champion, the command in its own process.

The stack's other parts (the service, the page, the exchange) are not started: the tick needs
only the database and the registry, and its market is unreachable here, which is also the case
where the predictions must still be made from the newest feature rows there are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest

from pricebot import db
from pricebot.settings import Settings
from pricebot_local.localdb import LocalPostgres
from pricebot_local.stack import Stack, StackOptions
from tests.conftest import TEMPLATE_DB, free_port
from tests.fixtures.models import RegisteredModel, minutes_back, write_feature_rows

TARGET = "ret19m"  # this module's own target: no other module registers it
SYMBOL = "TCKAUSDT"


@pytest.fixture
def stack_database(postgres: LocalPostgres) -> Iterator[str]:
    """The database the stack uses (``pricebot`` on the stack's PostgreSQL port), fresh."""
    url = postgres.create_database("pricebot", template=TEMPLATE_DB)
    yield url
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "pricebot" WITH (FORCE)')


@pytest.fixture
def stack(postgres: LocalPostgres, stack_database: str, tracking_uri: str, tmp_path: Path) -> Stack:
    settings = Settings(
        database_url=stack_database,
        postgres_port=postgres.port,
        mlflow_port=urlparse(tracking_uri).port,
        symbols=[SYMBOL],
        targets=[TARGET],
        home=tmp_path / "home",
        feature_cache_seconds=0,
        max_retries=0,  # the unreachable market fails at once
    )
    stack = Stack(settings, StackOptions(predict_every=timedelta(hours=1)))
    stack.market_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: ingest fails
    stack.logs.mkdir(parents=True)
    return stack


def logged(url: str) -> list[tuple]:
    with db.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, target, model_name, model_version, alias FROM predictions ORDER BY id"
        ).fetchall()


def test_the_first_tick_logs_a_batch_prediction_of_every_served_pair_and_says_so(
    stack: Stack,
    stack_database: str,
    registered_model: Callable[..., RegisteredModel],
) -> None:
    # Given a champion and its feature rows, and a market that does not answer
    model = registered_model(SYMBOL, TARGET, seed=3)
    write_feature_rows(stack_database, SYMBOL, minutes_back(datetime.now(UTC), 3))

    # When the scheduler ticks for the first time
    stack.tick()

    # Then the ingest failed, but the champion's prediction is in the log, and the events say so
    assert logged(stack_database) == [(SYMBOL, TARGET, model.name, model.version, "champion")]
    assert any("tick failed" in event for event in stack.events)
    assert stack.events[-1].endswith(" 1 predictions logged")


def test_the_next_batch_waits_for_predict_every(
    stack: Stack,
    stack_database: str,
    registered_model: Callable[..., RegisteredModel],
) -> None:
    registered_model(SYMBOL, TARGET, seed=4)
    write_feature_rows(stack_database, SYMBOL, minutes_back(datetime.now(UTC), 2))
    stack.tick()

    # When it ticks again within the hour
    stack.tick()

    # Then no second batch was made
    assert len(logged(stack_database)) == 1
    assert sum("predictions logged" in event for event in stack.events) == 1


def test_a_failed_batch_is_reported_with_where_its_output_is(stack: Stack) -> None:
    # Given no champion for the served pair: `pricebot predict` can predict nothing and fails
    count = stack.predict_batch()

    assert count is None
    log = stack.logs / "predict.log"
    assert stack.events[-1].endswith(f"batch predictions failed (see {log})")
    assert "Nothing could be predicted" in log.read_text()
