"""The host's own sub-commands: what runs on the core alone (schema, market data, features,
the registry by hand, scoring). One module per area; each defines ``register(app)``.

Modules here import only typer and the settings at import time; the work they call is imported
inside the command so ``pricebot --help`` stays quick.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from pricebot_cli.commands import (
        archive,
        backfill,
        bootstrap,
        dataset,
        db,
        ingest,
        models,
        predict,
        score,
        transform,
    )

    for module in (
        db,
        archive,
        backfill,
        ingest,
        transform,
        models,
        score,
        predict,
        dataset,
        bootstrap,
    ):
        module.register(app)
