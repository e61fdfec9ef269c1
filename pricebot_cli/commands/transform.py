"""``pricebot transform``: compute the features table from the stored candles."""

from __future__ import annotations

import typer

from pricebot import errors
from pricebot.settings import get_settings, split_csv


def register(app: typer.Typer) -> None:
    app.command("transform")(transform)


def transform(
    symbols: str = typer.Option(
        None,
        "--symbols",
        help="Comma-separated symbols; default PRICEBOT_SYMBOLS.",
        show_default=False,
    ),
    full: bool = typer.Option(
        False, "--full", help="Recompute every row (after a back-fill or a definition change)."
    ),
    feature_set: str = typer.Option(
        None,
        "--feature-set",
        help="Feature-set version; default PRICEBOT_FEATURE_SET.",
        show_default=False,
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Bring the features table up to the newest candles (incremental unless --full)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from pricebot import db
    from pricebot.errors import UnknownFeatureSetError, UsageError
    from pricebot.features import feature_names, warmup_minutes
    from pricebot.transform import TransformResult, update_symbol
    from pricebot_cli.output import console

    settings = get_settings()
    url = database_url or settings.database_url
    feature_set = feature_set or settings.feature_set
    chosen = [s.upper() for s in split_csv(symbols)] if symbols else list(settings.symbols)
    bad = [s for s in chosen if not s.isalnum()]
    if bad or not chosen:
        raise UsageError(f"--symbols takes symbols like BTCUSDT,ETHUSDT; got {symbols!r}.")
    try:
        feature_names(feature_set)
    except UnknownFeatureSetError as exc:
        raise UsageError(str(exc)) from None

    try:
        conn = db.connect(url, autocommit=True)
    except errors.DatabaseUnavailableError as exc:
        raise UsageError(str(exc)) from None
    results: list[TransformResult] = []
    with conn:
        stored = {
            row[0]
            for row in conn.execute(
                "SELECT s FROM unnest(%s::text[]) AS s"
                " WHERE EXISTS (SELECT 1 FROM klines WHERE symbol = s)",
                (chosen,),
            )
        }
        missing = [s for s in chosen if s not in stored]
        if missing:
            raise UsageError(
                f"No candles stored for {', '.join(missing)}. Load them first with "
                f"`pricebot ingest --symbols {','.join(missing)}` (or `pricebot import`)."
            )
        mode = "full recompute" if full else "incremental"
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/"
            "{task.total} symbols"), TimeElapsedColumn(), console=console, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task(f"features {feature_set} ({mode})", total=len(chosen))
            for symbol in chosen:
                progress.update(task, description=f"features {feature_set} {symbol} ({mode})")
                results.append(update_symbol(conn, symbol, feature_set, full=full))
                progress.advance(task)

    table = Table(title=f"features {feature_set} ({mode})")
    columns = ["symbol", "candles read", "rows written",
               *(["unchanged", "compared"] if full else []), "newest row", "seconds"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "symbol" else "right")
    for r in results:
        newest = r.newest.strftime("%Y-%m-%d %H:%M") if r.newest else "none yet"
        kept = [f"{r.rows_kept:,}", f"{r.rows_compared:,}"] if full else []
        table.add_row(
            r.symbol, f"{r.candles_read:,}", f"{r.rows_written:,}", *kept, newest,
            f"{r.seconds:.2f}",
        )  # fmt: skip
    console.print(table)
    days = warmup_minutes(feature_set) / 1440
    for r in results:
        if r.newest is None:
            console.print(
                f"{r.symbol}: no feature rows yet: a row needs {days:g} days of candles before "
                f"it and {r.candles_read:,} minutes are stored."
            )
    total = sum(r.rows_written for r in results)
    kept = sum(r.rows_kept for r in results)
    compared = sum(r.rows_compared for r in results)
    unchanged = (
        f"; {kept:,} recomputed rows identical to those stored were kept; {compared:,} stored "
        "rows were read back to compare (days whose digest did not match)"
        if full
        else ""
    )
    console.print(
        f"{total:,} feature rows written for {len(results)} symbol(s){unchanged}.", soft_wrap=True
    )
