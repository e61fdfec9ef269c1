"""Alias moves with history (table model_alias_events + version tags), listings, and the
promote / rollback / models commands, against a real MLflow server and PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from pricebot.errors import AliasMoveError
from pricebot.registry import (
    CHAMPION,
    Registry,
    alias_history,
    model_name,
)
from pricebot_cli import app
from tests.fixtures.models import register_model

TARGET = "ret17m"  # used by this module only: the MLflow server is shared by the session


def flat(output: str) -> str:
    return " ".join(output.split())


def events(url: str, name: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return [
            (e.alias, e.version, e.previous_version, e.reason) for e in alias_history(conn, name)
        ]


def test_moving_an_alias_records_who_when_and_why(tracking_uri: str, database_url: str) -> None:
    first = register_model(tracking_uri, "REGAUSDT", TARGET, alias=None)
    second = register_model(tracking_uri, "REGAUSDT", TARGET, seed=1, alias=None)
    client = MlflowClient(tracking_uri)
    registry = Registry(client=client)

    registry.move_alias(database_url, first.name, CHAMPION, first.version, reason="first",
                        moved_by="ana@lab")  # fmt: skip
    event = registry.move_alias(database_url, first.name, CHAMPION, second.version,
                                reason="better on the newest fold", moved_by="ana@lab")  # fmt: skip

    assert Registry(client=client).alias_version(first.name, CHAMPION) == second.version
    assert events(database_url, first.name) == [
        ("champion", first.version, None, "first"),
        ("champion", second.version, first.version, "better on the newest fold"),
    ]
    tags = client.get_model_version(first.name, second.version).tags
    assert tags["champion.moved_by"] == "ana@lab"
    assert tags["champion.reason"] == "better on the newest fold"
    assert tags["champion.previous_version"] == first.version
    assert tags["champion.moved_at"] == event.moved_at.isoformat(timespec="seconds")


def test_a_move_to_a_missing_version_changes_nothing(tracking_uri: str, database_url: str) -> None:
    model = register_model(tracking_uri, "REGBUSDT", TARGET, alias=CHAMPION)
    client = MlflowClient(tracking_uri)

    with pytest.raises(AliasMoveError, match="has no version 99"):
        Registry(client=client).move_alias(database_url, model.name, CHAMPION, 99, reason="typo")

    assert Registry(client=client).alias_version(model.name, CHAMPION) == model.version
    assert events(database_url, model.name) == []


def test_a_move_without_a_reason_is_refused(tracking_uri: str, database_url: str) -> None:
    model = register_model(tracking_uri, "REGCUSDT", TARGET, alias=None)

    with pytest.raises(AliasMoveError, match="reason is needed"):
        Registry(tracking_uri).move_alias(database_url, model.name, CHAMPION, 1, reason=" ")


def test_listing_shows_versions_aliases_and_headline_metrics(tracking_uri: str) -> None:
    metrics = {"pool_value_net": 1.02, "directional_accuracy": 0.55, "mae": 0.01}
    register_model(tracking_uri, "REGDUSDT", TARGET, alias=None, metrics=metrics)
    second = register_model(tracking_uri, "REGDUSDT", TARGET, seed=1, alias=CHAMPION)

    summary = next(s for s in Registry(tracking_uri).list_models() if s.name == second.name)

    assert [v.version for v in summary.versions] == [second.version, "1"]
    assert summary.versions[0].aliases == ["champion"]
    assert summary.versions[1].metrics == metrics
    assert summary.versions[1].tags["target"] == TARGET


def test_promote_then_rollback_by_hand_returns_the_champion_to_where_it_was(
    tracking_uri: str, settings_env: str
) -> None:
    first = register_model(tracking_uri, "REGEUSDT", TARGET, alias=None)
    second = register_model(tracking_uri, "REGEUSDT", TARGET, seed=1, alias=None)
    runner = CliRunner()
    common = ["--symbol", "regeusdt", "--target", TARGET]

    runner.invoke(app, ["promote", *common, "--version", first.version, "--reason", "start"])
    promoted = runner.invoke(
        app, ["promote", *common, "--version", second.version, "--reason", "try v2"]
    )
    rolled = runner.invoke(app, ["rollback", *common, "--reason", "v2 misbehaves live"])

    assert promoted.exit_code == 0, promoted.output
    assert rolled.exit_code == 0, rolled.output
    assert f"champion v{second.version} -> v{first.version}" in flat(rolled.output)
    assert Registry(tracking_uri).alias_version(first.name, CHAMPION) == first.version
    assert [e[3] for e in events(settings_env, first.name)] == [
        "start", "try v2", "v2 misbehaves live",
    ]  # fmt: skip


def test_rollback_without_history_says_to_promote_instead(
    tracking_uri: str, settings_env: str
) -> None:
    register_model(tracking_uri, "REGFUSDT", TARGET, alias=CHAMPION)  # set outside pricebot

    result = CliRunner().invoke(
        app, ["rollback", "--symbol", "REGFUSDT", "--target", TARGET, "--reason", "oops"]
    )

    assert result.exit_code == 1
    assert "No earlier champion" in flat(result.output)
    assert "pricebot promote" in flat(result.output)


def test_promote_to_a_missing_version_is_a_clear_error(
    tracking_uri: str, settings_env: str
) -> None:
    register_model(tracking_uri, "REGGUSDT", TARGET, alias=None)

    result = CliRunner().invoke(
        app,
        ["promote", "--symbol", "REGGUSDT", "--target", TARGET, "--version", "7", "--reason", "x"],
    )

    assert result.exit_code == 1
    assert f"Model {model_name('REGGUSDT', TARGET)} has no version 7" in flat(result.output)


def test_models_command_lists_registered_models(tracking_uri: str, settings_env: str) -> None:
    model = register_model(tracking_uri, "REGHUSDT", TARGET, alias=CHAMPION,
                           metrics={"pool_value_net": 1.0123})  # fmt: skip

    result = CliRunner().invoke(app, ["models"])

    assert result.exit_code == 0, result.output
    listing = result.output[result.output.index(model.name) :]
    line = next(row for row in listing.splitlines() if "champion" in row)
    assert "1.0123" in line
