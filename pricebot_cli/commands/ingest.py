"""``pricebot ingest`` (REST catch-up with a progress display) and ``pricebot gaps``."""

from __future__ import annotations

from datetime import datetime

import typer


def parse_since(value: str | None) -> datetime | None:
    """``2026-01-01`` or any ISO 8601 moment; naive means UTC. Raises the CLI's clean error."""
    if value is None:
        return None
    from pricebot.errors import UsageError
    from pricebot.ingest import as_utc

    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise UsageError(
            f"--since {value!r} is not a date: use ISO 8601 like 2026-01-01 or "
            "2026-01-01T12:00 (UTC unless an offset is given)"
        ) from None


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        symbols: str = typer.Option(
            None,
            "--symbols",
            help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT (default: PRICEBOT_SYMBOLS).",
            show_default=False,
        ),
        since: str = typer.Option(
            None,
            "--since",
            help="Fetch from this UTC date/time (backfills older history too); default: resume "
            "after the newest stored candle, or PRICEBOT_LOOKBACK_DAYS for a new symbol.",
            show_default=False,
        ),
        database_url: str = typer.Option(
            None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
        ),
    ) -> None:
        """Catch up 1-minute candles from the Binance REST API (PRICEBOT_BINANCE_URL)."""
        import psycopg
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Table

        from pricebot.db import connect, redact
        from pricebot.errors import BinanceError, DatabaseUnavailableError, UsageError
        from pricebot.ingest import PageEvent, catch_up
        from pricebot.settings import Settings, get_settings, split_csv
        from pricebot_cli.output import console

        settings = get_settings()
        if symbols is not None:
            try:
                settings = Settings.model_validate(
                    {**settings.model_dump(), "symbols": split_csv(symbols)}
                )
            except ValueError as exc:
                raise UsageError(f"--symbols {symbols!r}: {exc.errors()[0]['msg']}") from None
        url = database_url or settings.database_url
        start = parse_since(since)

        progress = Progress(
            TextColumn("[bold]{task.fields[symbol]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("min  {task.fields[written]:>9,} new  {task.fields[pages]:>5} pages"),
            TimeElapsedColumn(),
            console=console,
        )
        tasks: dict[str, int] = {}
        written: dict[str, int] = {}

        def on_page(event: PageEvent) -> None:
            if event.symbol not in tasks:
                tasks[event.symbol] = progress.add_task(
                    "", total=event.minutes_planned, symbol=event.symbol, written=0, pages=0
                )
            written[event.symbol] = written.get(event.symbol, 0) + event.rows_written
            progress.update(
                tasks[event.symbol],
                advance=event.minutes_covered,
                written=written[event.symbol],
                pages=event.pages,
            )

        console.print(
            f"catching up {', '.join(settings.symbols)} from {settings.binance_url} "
            f"into {redact(url)}"
        )
        try:
            with connect(url, autocommit=True) as conn, progress:
                results = catch_up(conn, settings.symbols, since=start, settings=settings,
                                   on_page=on_page)  # fmt: skip
        except (BinanceError, DatabaseUnavailableError) as exc:
            raise UsageError(str(exc)) from None
        except psycopg.errors.UndefinedTable as exc:
            raise UsageError(
                f"{str(exc).strip()} in {redact(url)}: the schema is missing or old; run "
                "`pricebot db upgrade` first."
            ) from None
        except psycopg.Error as exc:
            raise UsageError(
                f"database error while writing candles: {str(exc).strip()}. Every page written "
                "before it is kept; run `pricebot ingest` again to resume."
            ) from None

        table = Table(title="catch-up")
        for column in ("symbol", "first new", "newest stored", "candles", "pages", "retries",
                       "gaps"):  # fmt: skip
            table.add_column(column, justify="right" if column in {"candles", "pages",
                             "retries", "gaps"} else "left")  # fmt: skip
        for r in results:
            table.add_row(
                r.symbol,
                _when(r.start),
                _when(r.end),
                f"{r.rows_written:,}",
                str(r.pages),
                str(r.retries),
                str(r.gaps),
            )
        console.print(table)

    @app.command("gaps")
    def gaps(
        symbol: str = typer.Option(..., "--symbol", help="The symbol, e.g. BTCUSDT."),
        since: str = typer.Option(
            None, "--since", help="Only gaps ending at or after this UTC date/time."
        ),
        database_url: str = typer.Option(
            None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
        ),
    ) -> None:
        """List the minutes the exchange had no candle for (recorded by ingest and import)."""
        from rich.table import Table

        from pricebot.db import connect
        from pricebot.errors import DatabaseUnavailableError, UsageError
        from pricebot.gaps import list_gaps
        from pricebot.settings import get_settings
        from pricebot_cli.output import console

        url = database_url or get_settings().database_url
        start = parse_since(since)
        try:
            with connect(url) as conn:
                found = list_gaps(conn, symbol.upper(), start)
        except DatabaseUnavailableError as exc:
            raise UsageError(str(exc)) from None
        if not found:
            console.print(
                f"no gaps recorded for {symbol.upper()}"
                + (f" since {start:%Y-%m-%d %H:%M}" if start else "")
            )
            return
        table = Table(title=f"gaps in {symbol.upper()} (UTC)")
        table.add_column("first missing")
        table.add_column("last missing")
        table.add_column("minutes", justify="right")
        for gap in found:
            table.add_row(_when(gap.start), _when(gap.end), f"{gap.minutes:,}")
        table.add_section()
        label = f"{len(found)} gap{'s' if len(found) != 1 else ''}"
        table.add_row(label, "", f"{sum(g.minutes for g in found):,}")
        console.print(table)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"
