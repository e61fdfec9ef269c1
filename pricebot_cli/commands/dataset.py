"""``pricebot dataset export``: a symbol's or a pool's features and labels, with their lineage,
for a model trained elsewhere (:mod:`pricebot.export`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pricebot.settings import get_settings

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Training datasets: export them for models trained elsewhere.")
    group.command("export")(export)
    app.add_typer(group, name="dataset")


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write into.", file_okay=False)],
    symbol: str = typer.Option(None, "--symbol", help="One symbol.", show_default=False),
    symbols: str = typer.Option(
        None, "--symbols", help="A pool's symbols, comma-separated.", show_default=False
    ),
    target: str = typer.Option(None, "--target", help="e.g. ret24h.", show_default="ret24h"),
    feature_set: str = typer.Option(
        None, "--feature-set", help="Default PRICEBOT_FEATURE_SET.", show_default=False
    ),
    start: Annotated[
        datetime | None, typer.Option("--start", formats=DATE_FORMATS, help="UTC.")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--end", formats=DATE_FORMATS, help="UTC.")
    ] = None,
    file_format: str = typer.Option(
        "parquet,csv", "--format", help="parquet, csv or both (comma-separated)."
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Write the features and labels `pricebot train` would use, with their lineage."""
    from pricebot.dataset import build_dataset
    from pricebot.db import connect
    from pricebot.errors import UsageError
    from pricebot.export import export_dataset
    from pricebot.pooling import parse_symbols, pool_datasets
    from pricebot.targets import parse_target
    from pricebot_cli.output import console

    if (symbol is None) == (symbols is None):
        raise UsageError("Give --symbol S for one symbol or --symbols A,B,C for a pool.")
    settings = get_settings()
    spec = parse_target(target or settings.targets[0])
    chosen = parse_symbols(symbols) if symbols else [symbol.upper()]
    formats = tuple(f.strip().lower() for f in file_format.split(",") if f.strip())
    bad = sorted(set(formats) - {"parquet", "csv"})
    if bad or not formats:
        raise UsageError(f"--format takes parquet, csv or both, not {file_format!r}.")
    with connect(database_url or settings.database_url) as conn:
        datasets = [
            build_dataset(conn, s, spec, start=_utc(start), end=_utc(end), feature_set=feature_set)
            for s in chosen
        ]
    dataset = pool_datasets(datasets) if symbols else datasets[0]
    written = export_dataset(dataset, out, formats)
    console.print(
        f"{len(dataset):,} rows of {dataset.symbol} {spec.name} ({dataset.feature_set}, "
        f"sha256 {str(dataset.lineage['sha256'])[:12]}) written:"
    )
    for kind, path in written.items():
        console.print(f"  {kind}: {path}")
