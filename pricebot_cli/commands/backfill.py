"""``pricebot backfill``: history from Binance Vision archives (monthly and daily, checksummed,
resumable) into the database, through the same import as ``pricebot import``."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("backfill")(backfill)


def parse_day(option: str, value: str) -> date:
    from pricebot.errors import UsageError

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not a date: use YYYY-MM-DD, e.g. 2024-01-01"
        ) from None


def backfill(
    symbols: str = typer.Option(
        ..., "--symbols", help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.", show_default=False
    ),
    since: str = typer.Option(
        ..., "--since", help="First UTC day to load, YYYY-MM-DD.", show_default=False
    ),
    until: str = typer.Option(
        None,
        "--until",
        help="Last UTC day to load, YYYY-MM-DD (default: yesterday, the last day published).",
        show_default=False,
    ),
    directory: Path = typer.Option(  # noqa: B008 - typer reads its defaults this way
        None,
        "--dir",
        help="Where archives are kept between runs (default: PRICEBOT_HOME/archives).",
        show_default=False,
    ),
    jobs: int = typer.Option(
        min(4, os.cpu_count() or 1), "--jobs", "-j", min=1, help="Files imported at once."
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Download Binance Vision 1m kline archives with their .CHECKSUM and import them.

    Whole months come as monthly files, partial months and the current month as daily ones.
    Files already downloaded and verified are kept; a cut-off download is resumed. Running it
    again fetches and writes only what is missing.
    """
    from datetime import UTC, timedelta

    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from pricebot.backfill import backfill as run_backfill
    from pricebot.db import redact
    from pricebot.errors import UsageError
    from pricebot.settings import Settings, get_settings, split_csv
    from pricebot.vision import VisionClient
    from pricebot_cli.output import console

    settings = get_settings()
    try:
        chosen = Settings.model_validate(
            {**settings.model_dump(), "symbols": split_csv(symbols)}
        ).symbols
    except ValueError as exc:
        raise UsageError(f"--symbols {symbols!r}: {exc.errors()[0]['msg']}") from None
    first = parse_day("--since", since)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    last = parse_day("--until", until) if until else yesterday
    if last < first:
        raise UsageError(f"--until {last} is before --since {first}: nothing to load")
    if first > yesterday:
        raise UsageError(
            f"--since {first} has not been published yet: Binance Vision has days up to "
            f"{yesterday} (use `pricebot ingest` for the newest minutes)"
        )
    url = database_url or settings.database_url
    where = directory or settings.home / "archives"
    console.print(
        f"backfilling {', '.join(chosen)} {first}..{min(last, yesterday)} from "
        f"{settings.vision_url} via {where} into {redact(url)}"
    )

    def on_download(download: object) -> None:
        status, name = download.status, download.file.name  # type: ignore[attr-defined]
        style = {"missing": "yellow", "bad-checksum": "red"}.get(status, "green")
        console.print(f"  [{style}]{status:>12}[/] {name}")

    with VisionClient(settings.vision_url, where) as client:
        results = run_backfill(url, client, chosen, first, last, jobs=jobs,
                               on_download=on_download)  # fmt: skip

    table = Table(title="backfill", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("symbol", "files", "kept", "fetched", "missing", "refused", "rows new"):
        table.add_column(column, justify="left" if column == "symbol" else "right")
    for r in results:
        fetched = sum(d.status in ("downloaded", "resumed") for d in r.downloads)
        table.add_row(r.symbol, str(len(r.downloads)),
                      str(sum(d.status == "kept" for d in r.downloads)), str(fetched),
                      str(len(r.missing)), str(len(r.refused) + len(r.failed_imports)),
                      f"{r.rows_new:,}")  # fmt: skip
    console.print(table)
    problems = [f"{d.file.name}: {d.problem}" for r in results for d in r.refused]
    problems += [str(i.error) for r in results for i in r.failed_imports]
    empty = [r.symbol for r in results if r.downloads and len(r.missing) == len(r.downloads)]
    for problem in problems:
        console.print(f"[bold red]refused:[/] {escape(problem)}")
    if problems:
        raise UsageError(
            f"{len(problems)} file(s) not imported (nothing was written from them); run the "
            "backfill again to fetch them anew: verified files are kept, stored ones skipped"
        )
    if empty:
        raise UsageError(
            f"Binance Vision has no archive of {', '.join(empty)} between {first} and {last}: "
            "check the symbol (spot, e.g. BTCUSDT) and that it was listed then"
        )
