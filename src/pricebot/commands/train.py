"""``pricebot train``, ``models``, ``promote``, ``rollback``: the model life cycle by hand.

The training job lives in the ``training`` package (an adapter); it is imported inside the
command so the core CLI starts without MLflow, XGBoost or Optuna loaded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _target(target: str | None) -> str:
    """The canonical target name; a spec that does not parse ends the command."""
    from pricebot.cli import fail
    from pricebot.settings import get_settings
    from pricebot.targets import TargetSpecError, parse_target

    try:
        return parse_target(target or get_settings().targets[0]).name
    except TargetSpecError as exc:
        raise fail(str(exc)) from None


def _client():  # -> mlflow.MlflowClient, after checking the server answers
    from pricebot.cli import fail

    try:
        import mlflow
        from mlflow import MlflowClient

        from training.tracking import TrackingUnavailableError, check_tracking
    except ImportError as exc:
        raise fail(f"MLflow is not installed ({exc}); install the `train` extra.") from None
    try:
        check_tracking(mlflow.get_tracking_uri())
    except TrackingUnavailableError as exc:
        raise fail(str(exc)) from None
    return MlflowClient()


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        symbol: str = typer.Option(..., "--symbol", help="e.g. AVAXUSDT"),
        target: str = typer.Option(
            None, "--target", help="Target spec, e.g. ret24h, up2pct24h.", show_default="ret24h"
        ),
        trials: int = typer.Option(30, "--trials", min=0, help="Optuna trials for XGBoost."),
        folds: int = typer.Option(5, "--folds", min=1, help="Walk-forward folds."),
        start: Annotated[
            datetime | None, typer.Option("--start", formats=DATE_FORMATS, help="UTC.")
        ] = None,
        end: Annotated[
            datetime | None, typer.Option("--end", formats=DATE_FORMATS, help="UTC.")
        ] = None,
        seed: int = typer.Option(42, "--seed"),
        fee: float = typer.Option(0.001, "--fee", min=0.0, max=0.1, help="Fee per side."),
        train_step: int = typer.Option(
            None, "--train-step", min=1, help="Train on every Nth minute.", show_default="H/24"
        ),
        database_url: str = typer.Option(
            None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
        ),
        no_register: bool = typer.Option(False, "--no-register", help="Evaluate and log only."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    ) -> None:
        """Train, evaluate walk-forward against baselines, register, promote if earned."""
        from pricebot.cli import console, fail
        from pricebot.dataset import NoFeaturesError, UnknownSymbolError
        from pricebot.db import DatabaseUnavailableError
        from pricebot.evaluation import InsufficientDataError, render_table

        target_name = _target(target)
        try:
            from training import TrainingConfig, train
            from training.candidates import DegenerateTargetError
            from training.tracking import TrackingUnavailableError
        except ImportError as exc:
            raise fail(
                f"The training job is not installed ({exc}); install the `train` extra."
            ) from None
        config = TrainingConfig(
            symbol=symbol.upper(),
            target=target_name,
            trials=trials,
            folds=folds,
            start=_utc(start),
            end=_utc(end),
            seed=seed,
            fee=fee,
            train_step=train_step,
            database_url=database_url,
            register=not no_register,
            show_progress=not quiet,
        )
        try:
            outcome = train(config)
        except (
            TrackingUnavailableError,
            UnknownSymbolError,
            NoFeaturesError,
            InsufficientDataError,
            DatabaseUnavailableError,
            DegenerateTargetError,
        ) as exc:
            raise fail(str(exc)) from None
        lineage = outcome.lineage
        console.print(
            render_table(
                outcome.table,
                f"{config.symbol} {target_name}: walk-forward, {folds} folds, "
                f"{lineage['rows']} rows {lineage['start']} .. {lineage['end']}",
            )
        )
        console.print(f"winner: [bold]{outcome.winner}[/] (run {outcome.winner_run_id})")
        if outcome.version is not None:
            console.print(f"registered {outcome.model_name} version {outcome.version} @challenger")
        verdict = "[green]promoted to champion[/]" if outcome.promoted else "[yellow]not promoted"
        console.print(f"{verdict}: {outcome.decision.reason}")

    @app.command("models")
    def models_command() -> None:
        """Registered models with their versions, aliases and headline metrics."""
        from rich.table import Table

        from pricebot.cli import console
        from pricebot.registry import list_models

        summaries = list_models(_client())
        if not summaries:
            console.print("no registered pricebot models yet: run `pricebot train --symbol S`")
            return
        for summary in summaries:
            table = Table(title=summary.name, title_justify="left")
            for column in ("version", "aliases", "candidate", "created (UTC)"):
                table.add_column(column, justify="right" if column == "version" else "left")
            for column in ("newest pool net", "mean pool net", "dir. accuracy", "mae"):
                table.add_column(column, justify="right")
            for v in summary.versions:
                m = v.metrics

                def cell(key: str, m: dict = m) -> str:
                    return f"{m[key]:.4f}" if key in m else "–"

                table.add_row(
                    v.version, ", ".join(v.aliases) or "–", v.tags.get("candidate", "–"),
                    f"{v.created:%Y-%m-%d %H:%M}" if v.created else "–",
                    cell("newest_pool_value_net"), cell("pool_value_net"),
                    cell("directional_accuracy"), cell("mae"),
                )  # fmt: skip
            console.print(table)

    @app.command("promote")
    def promote_command(
        symbol: str = typer.Option(..., "--symbol"),
        version: int = typer.Option(..., "--version", min=1),
        reason: str = typer.Option(..., "--reason", help="Why: kept in the alias history."),
        target: str = typer.Option(None, "--target", show_default="ret24h"),
    ) -> None:
        """Make VERSION the champion by hand (recorded with who, when and why)."""
        _move(symbol, target, reason, version)

    @app.command("rollback")
    def rollback_command(
        symbol: str = typer.Option(..., "--symbol"),
        reason: str = typer.Option(..., "--reason", help="Why: kept in the alias history."),
        target: str = typer.Option(None, "--target", show_default="ret24h"),
    ) -> None:
        """Give the champion alias back to the version that held it before the latest move."""
        _move(symbol, target, reason, None)


def _move(symbol: str, target: str | None, reason: str, version: int | None) -> None:
    from pricebot.cli import console, fail
    from pricebot.db import DatabaseUnavailableError, connect
    from pricebot.registry import (
        CHAMPION,
        AliasMoveError,
        alias_version,
        default_actor,
        model_name,
        move_alias,
        rollback_target,
    )
    from pricebot.settings import get_settings

    name = model_name(symbol.upper(), _target(target))
    client = _client()
    url = get_settings().database_url
    try:
        current = alias_version(client, name, CHAMPION)
        if version is None:
            with connect(url) as conn:
                chosen = rollback_target(conn, name, current)
        else:
            chosen = str(version)
        event = move_alias(client, url, name, CHAMPION, chosen, reason=reason,
                           moved_by=default_actor())  # fmt: skip
    except (AliasMoveError, DatabaseUnavailableError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"{name}: champion v{event.previous_version or '–'} -> v{event.version} "
        f"by {event.moved_by}: {event.reason}"
    )
