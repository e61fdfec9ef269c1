"""``pricebot bootstrap``: what a new deployment needs before it can serve, done once.

The deploy runs it after every ``pulumi up`` (the stack's bootstrap task, inside the VPC). It
asks :func:`pricebot.bootstrap.plan_bootstrap` what is missing for the configured symbols and
targets and does only that: history from the Binance Vision archives for a symbol whose candles
do not reach back ``--history-days``, then that symbol's features recomputed over it, then one
training, through the promotion gate, of every pair that was never trained. On a stack that has
all of it, it only looks (a few registry calls and two queries) and exits.

Training is the ``train`` command of this CLI (contributed by the training job), called in this
process with the same database login and tracking server: the host reaches it through its own
command tree, not by importing the training job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pricebot.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("bootstrap")(bootstrap)


def bootstrap(
    ctx: typer.Context,
    history_days: int = typer.Option(
        90, "--history-days", min=1, help="Days of history every configured symbol must have."
    ),
    trials: int = typer.Option(
        30, "--trials", min=0, help="Optuna trials of each first training (pricebot train)."
    ),
    directory: Path = typer.Option(  # noqa: B008 - typer reads its defaults this way
        None,
        "--dir",
        help="Where archives are kept between runs (default: PRICEBOT_HOME/archives).",
        show_default=False,
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Load history and train a first model for every configured symbol and target lacking one.

    History comes from Binance Vision (PRICEBOT_VISION_URL) up to yesterday; a pair that was
    trained before but never promoted is left to the daily retrain.
    """
    from pricebot import db
    from pricebot.bootstrap import history_until, load_history, plan_bootstrap
    from pricebot.errors import BootstrapError, PricebotError
    from pricebot.registry import Registry
    from pricebot.targets import parse_target
    from pricebot.transform import update_features
    from pricebot_cli.output import console

    settings = get_settings()
    url = database_url or settings.database_url
    targets = list(dict.fromkeys(parse_target(t).name for t in settings.targets))
    train = _train_command(ctx)
    registry = Registry(settings.tracking_uri())
    registry.check()
    with db.connect(url) as conn:
        plan = plan_bootstrap(
            conn, registry, settings.symbols, targets, history_days=history_days,
            alias=settings.model_alias,
        )  # fmt: skip
    for note in plan.notes:
        console.print(f"  {note}")
    if plan.empty:
        console.print("bootstrap: nothing to do, every symbol has history and every pair a model")
        return

    if plan.backfill:
        until = history_until()
        console.print(
            f"history: {', '.join(plan.backfill)} from {plan.since:%Y-%m-%d} to {until} "
            f"({settings.vision_url})"
        )
        rows = load_history(
            url, plan.backfill, plan.since.date(), until, vision_url=settings.vision_url,
            directory=directory or settings.home / "archives",
            on_download=lambda d: console.print(f"  {d.status:>12} {d.file.name}"),
        )  # fmt: skip
        for symbol, count in rows.items():
            console.print(f"  {symbol}: {count:,} candles imported")
    # Archives are older than what the features table may hold already (the ingest function
    # runs from the first deploy on), so a backfilled symbol's features are recomputed whole;
    # a symbol only to be trained is brought up to date.
    fresh = [s for s, _ in plan.train if s not in plan.backfill]
    for symbols, full in ((plan.backfill, True), (list(dict.fromkeys(fresh)), False)):
        if symbols:
            written = update_features(url, symbols, settings.feature_set, full=full)
            for symbol, count in written.items():
                console.print(f"  {symbol}: {count:,} feature rows ({settings.feature_set})")

    failed = []
    for symbol, target in plan.train:
        console.print(f"training {symbol} {target} ({trials} trials)")
        args = ["--symbol", symbol, "--target", target, "--trials", str(trials), "--quiet"]
        if database_url:
            args += ["--database-url", database_url]
        try:
            with train.make_context("train", args, parent=ctx) as sub:
                train.invoke(sub)
        except PricebotError as exc:
            console.print(f"[bold red]{symbol} {target}: {exc}[/]")
            failed.append(f"{symbol} {target}: {exc}")
    if failed:
        raise BootstrapError(
            f"{len(failed)} of {len(plan.train)} first trainings failed: {'; '.join(failed)}"
        )


def _train_command(ctx: typer.Context) -> Any:
    """The CLI's ``train`` command (the training job's plug-in), or why it is not there.

    Typed loosely: typer carries its own copy of click, whose command class is not public.
    """
    from pricebot.errors import MissingExtraError

    root = ctx.find_root()
    group = root.command
    train = group.get_command(root, "train") if hasattr(group, "get_command") else None
    if train is None:
        raise MissingExtraError(
            "pricebot bootstrap trains with `pricebot train`, which is not installed: install "
            "pricebot with the `train` extra (the job image has it)"
        )
    return train
