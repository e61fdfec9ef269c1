"""``pricebot train``: the training job's command, contributed to the ``pricebot`` CLI through
the ``pricebot.commands`` entry point.

The job itself (:mod:`pricebot_training.job`) is imported inside the command so that
``pricebot --help`` starts without MLflow, XGBoost or Optuna loaded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _target(target: str | None) -> str:
    """The canonical target name (default: the first of PRICEBOT_TARGETS)."""
    from pricebot.settings import get_settings
    from pricebot.targets import parse_target

    return parse_target(target or get_settings().targets[0]).name


def register(app: typer.Typer) -> None:
    register_model_command(app)

    @app.command("train")
    def train_command(
        symbol: str = typer.Option(None, "--symbol", help="e.g. AVAXUSDT", show_default=False),
        symbols: str = typer.Option(
            None,
            "--symbols",
            help="A pool: one model over these symbols' rows, e.g. ALGOUSDT,DOTUSDT,LINKUSDT.",
            show_default=False,
        ),
        pool_label: str = typer.Option(
            None,
            "--pool-label",
            help="Names the pool's model pricebot-pool-<label>-<target>.",
            show_default="a hash of the symbols",
        ),
        candidates: str = typer.Option(
            None,
            "--candidates",
            help="Candidate families, comma-separated (e.g. ridge,xgboost,lightgbm).",
            show_default="every installed one",
        ),
        target: str = typer.Option(
            None, "--target", help="Target spec, e.g. ret24h, up2pct24h.", show_default="ret24h"
        ),
        trials: int = typer.Option(
            30, "--trials", min=0, help="Optuna trials, shared by the tunable candidates."
        ),
        folds: int = typer.Option(
            5, "--folds", min=1, help="Walk-forward folds (at least 2: the newest is held out)."
        ),
        start: Annotated[
            datetime | None, typer.Option("--start", formats=DATE_FORMATS, help="UTC.")
        ] = None,
        end: Annotated[
            datetime | None, typer.Option("--end", formats=DATE_FORMATS, help="UTC.")
        ] = None,
        seed: int = typer.Option(42, "--seed"),
        fee: float = typer.Option(0.001, "--fee", min=0.0, max=0.1, help="Fee per side."),
        class_weight: str = typer.Option(
            "balanced",
            "--class-weight",
            help="Classifiers: balanced (each class weighs half) or none (calibrated).",
        ),
        train_step: int = typer.Option(
            None, "--train-step", min=1, help="Train on every Nth minute.", show_default="H/24"
        ),
        database_url: str = typer.Option(
            None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
        ),
        no_register: bool = typer.Option(False, "--no-register", help="Evaluate and log only."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        report_json: Annotated[
            Path | None,
            typer.Option(
                "--report-json",
                help="Also write the training report (figures, winner, decision) as JSON here.",
                dir_okay=False,
            ),
        ] = None,
    ) -> None:
        """Train, evaluate walk-forward against baselines, register, promote if earned."""

        from pricebot.errors import MissingExtraError, UsageError

        target_name = _target(target)
        if (symbol is None) == (symbols is None):
            raise UsageError(
                "Give --symbol S for one symbol's model or --symbols A,B,C for a pooled one."
            )
        pool = None
        if symbols is not None:
            from pricebot.pooling import parse_symbols

            pool = parse_symbols(symbols)
        families = (
            [c.strip().lower() for c in candidates.split(",") if c.strip()] if candidates else None
        )
        if class_weight not in ("balanced", "none"):
            raise UsageError(f"--class-weight must be balanced or none, not {class_weight!r}")
        try:
            from pricebot_training import TrainingConfig, train
        except ImportError as exc:
            raise MissingExtraError(
                f"The training job cannot run ({exc}); install pricebot with the `train` extra."
            ) from None
        console = report_console()
        config = TrainingConfig(
            symbol=symbol.upper() if symbol else "",
            symbols=pool,
            pool_label=pool_label,
            candidates=families,
            target=target_name,
            trials=trials,
            folds=folds,
            start=_utc(start),
            end=_utc(end),
            seed=seed,
            fee=fee,
            train_step=train_step,
            class_weight=class_weight,  # type: ignore[arg-type]
            database_url=database_url,
            register=not no_register,
            show_progress=not quiet,
        )
        outcome = train(config)
        if report_json is not None:
            from pricebot.training_report import write_report

            write_report(outcome.report, report_json)
        print_report(console, outcome.report)


def register_model_command(app: typer.Typer) -> None:
    @app.command("register")
    def register_command(
        model: Annotated[
            Path,
            typer.Argument(
                help="A pickled scikit-learn-API estimator (fit/predict[_proba]).", dir_okay=False
            ),
        ],
        symbol: str = typer.Option(None, "--symbol", help="e.g. AVAXUSDT", show_default=False),
        symbols: str = typer.Option(
            None, "--symbols", help="A pool's symbols (the model takes the symbol= columns too)."
        ),
        target: str = typer.Option(None, "--target", help="e.g. ret24h.", show_default="ret24h"),
        label: str = typer.Option(
            None, "--name", help="The candidate's name (byo_<name>).", show_default="file name"
        ),
        requirement: list[str] = typer.Option(  # noqa: B008
            [], "--requirement", help="Extra pip requirement of the model (repeatable)."
        ),
        folds: int = typer.Option(5, "--folds", min=1, help="Walk-forward folds (at least 2)."),
        start: Annotated[
            datetime | None, typer.Option("--start", formats=DATE_FORMATS, help="UTC.")
        ] = None,
        end: Annotated[
            datetime | None, typer.Option("--end", formats=DATE_FORMATS, help="UTC.")
        ] = None,
        fee: float = typer.Option(0.001, "--fee", min=0.0, max=0.1, help="Fee per side."),
        pool_label: str = typer.Option(None, "--pool-label", help="Names a pool's model."),
        database_url: str = typer.Option(
            None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
        ),
        report_json: Annotated[
            Path | None, typer.Option("--report-json", dir_okay=False, help="Write the report.")
        ] = None,
    ) -> None:
        """Evaluate a model trained elsewhere walk-forward, gate it, register it as challenger."""

        from pricebot.errors import MissingExtraError, UsageError
        from pricebot.features import feature_names
        from pricebot.pooling import indicator_columns, parse_symbols
        from pricebot.settings import get_settings
        from pricebot.targets import parse_target

        if (symbol is None) == (symbols is None):
            raise UsageError("Give --symbol S or --symbols A,B,C for the model's data.")
        try:
            from pricebot_training import TrainingConfig, train
            from pricebot_training.byo import external_family
        except ImportError as exc:
            raise MissingExtraError(
                f"Registering needs the training job ({exc}); install pricebot[train]."
            ) from None
        spec = parse_target(_target(target))
        pool = parse_symbols(symbols) if symbols else None
        columns = feature_names(get_settings().feature_set)
        if pool:
            columns = [*columns, *indicator_columns(pool)]
        family, tags = external_family(model, spec, columns, requirement, label)
        outcome = train(
            TrainingConfig(
                symbol=symbol.upper() if symbol else "", symbols=pool, pool_label=pool_label,
                target=spec.name, trials=0, folds=folds, start=_utc(start), end=_utc(end),
                fee=fee, families=[family], extra_tags=tags, database_url=database_url,
                show_progress=False,
            )
        )  # fmt: skip
        if report_json is not None:
            from pricebot.training_report import write_report

            write_report(outcome.report, report_json)
        print_report(report_console(), outcome.report)


def report_console() -> Any:
    """A console for the report: a terminal's own width; piped or captured, wide enough for
    the table's columns (seven families' names included) rather than rich's 80."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 150))


def print_report(console: Any, report: Any) -> None:
    """The training report for the terminal: the table, the winner, the decision."""
    from rich.table import Table

    from pricebot.training_report import (
        cross_section_line,
        report_cells,
        report_symbol_cells,
        report_title,
    )

    headings, rows = report_cells(report)
    table = Table(title=report_title(report), title_justify="left")
    for i, heading in enumerate(headings):  # names whole; figures share what width is left
        table.add_column(heading, justify="left" if i < 2 else "right", no_wrap=i < 2)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for symbol, cells in report_symbol_cells(report).items():
        per = Table(title=f"{symbol} (the pooled candidates on its own rows)", title_justify="left")
        for i, heading in enumerate(cells[0]):
            per.add_column(heading, justify="left" if i < 2 else "right", no_wrap=i < 2)
        for row in cells[1]:
            per.add_row(*row)
        console.print(per)
    line = cross_section_line(report)
    if line:
        console.print(line)
    console.print(f"winner: [bold]{report.winner.name}[/] ({report.winner.reason})")
    registration = report.registration
    if registration is not None and registration.version is not None:
        console.print(
            f"registered {registration.model_name} version {registration.version} @challenger"
        )
    promoted = registration is not None and registration.promoted
    verdict = "[green]promoted to champion[/]" if promoted else "[yellow]not promoted[/]"
    console.print(f"{verdict}: {report.decision.reason}")
