"""``pricebot import PATH...``: load Binance Vision kline archives (files or directories)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from pricebot import errors
from pricebot.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("import")(import_archives)


def import_archives(
    paths: list[Path] = typer.Argument(  # noqa: B008 - typer reads its defaults this way
        ...,
        help="Archive files (SYMBOL-1m-YYYY-MM[-DD].zip or .csv) or directories holding them.",
        show_default=False,
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
    jobs: int = typer.Option(
        min(4, os.cpu_count() or 1),
        "--jobs",
        "-j",
        min=1,
        help="Files loaded at once, each on its own connection.",
    ),
    stop_on_error: bool = typer.Option(
        False, "--stop-on-error", help="Stop at the first bad file instead of skipping it."
    ),
    market: str = typer.Option(
        "binance-vision",
        "--market",
        help="Where the files' candles came from, as recorded with them: binance-vision, or "
        "simulated:<mode> for files packaged from the simulated exchange.",
    ),
) -> None:
    """Bulk-load Binance Vision 1m kline archives (spot or futures) with COPY.

    One transaction per file: a bad file writes nothing and is reported, the others load.
    Importing a file again writes nothing new.
    """
    import psycopg
    from rich import box
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.table import Table

    from pricebot import archive, provenance
    from pricebot.db import redact
    from pricebot.errors import DatabaseUnavailableError, UsageError
    from pricebot_cli.output import console

    url = database_url or get_settings().database_url
    provenance.check_market(market)
    try:
        files = archive.find_archives(paths)
    except errors.ArchiveError as exc:
        raise UsageError(f"{exc}") from None
    if not files:
        raise UsageError(
            f"no .zip or .csv archives found under {', '.join(map(str, paths))}; expected files "
            "named like BTCUSDT-1m-2024-01.zip"
        )
    total_bytes = sum(archive.csv_size(path) for path in files)
    rows_done = 0

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task(f"importing {_files(len(files))}", total=total_bytes, rows=0)

    def on_result(result: archive.ImportResult) -> None:
        nonlocal rows_done
        rows_done += result.rows
        progress.update(task, rows=rows_done)
        if result.error is not None:
            progress.console.print(f"[bold red]failed:[/] {escape(str(result.error))}")

    try:
        with progress:
            results = archive.import_archives(
                url,
                files,
                market=market,
                on_bytes=lambda n: progress.advance(task, n),
                on_result=on_result,
                stop_on_error=stop_on_error,
                jobs=jobs,
            )
            progress.update(task, completed=total_bytes)  # failed files stop short of their size
    except DatabaseUnavailableError as exc:
        raise UsageError(str(exc)) from None
    except psycopg.OperationalError as exc:
        raise UsageError(
            f"the database connection broke during the import ({str(exc).strip()}); the files "
            "finished before are stored, the one in progress wrote nothing: re-run the same "
            "command to continue (stored files are skipped)"
        ) from None
    except errors.ArchiveError as exc:
        raise UsageError(f"{exc}") from None

    bad = [r for r in results if r.error is not None]
    table = Table(
        title=f"archive import into {redact(url)}",
        caption="skipped: rows already stored (earlier import or REST), left as they were",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("file", no_wrap=True)
    table.add_column("symbol", no_wrap=True)
    for column in ("rows", "new", "skipped", "gaps"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("checksum", no_wrap=True)
    if bad:
        table.add_column("status")
    for r in results:
        if r.error is not None:
            cells = ["-"] * 5 + [f"[red]{r.error.label}[/]"]
        else:
            gaps = f"{r.gaps} ({r.gap_minutes:,} min)" if r.gaps else "0"
            cells = [f"{r.rows:,}", f"{r.rows_new:,}", f"{r.rows_skipped:,}", gaps, r.checksum]
            cells += ["imported"] if bad else []
        table.add_row(r.path.name, r.symbol, *cells)
    ok = [r for r in results if r.error is None]
    table.add_section()
    totals = [
        f"{sum(r.rows for r in ok):,}",
        f"{sum(r.rows_new for r in ok):,}",
        f"{sum(r.rows_skipped for r in ok):,}",
        str(sum(r.gaps for r in ok)),
        "",
    ]
    table.add_row(f"{len(ok)} of {_files(len(results))}", "", *totals, *([""] if bad else []))
    console.print(table)
    if bad:
        raise UsageError(
            f"{len(bad)} of {_files(len(results))} not imported (nothing was written from "
            f"them: {', '.join(r.path.name for r in bad)}); fix or download them again and "
            "re-run: the files already imported are skipped"
        )


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"
