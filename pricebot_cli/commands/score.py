"""``pricebot score``: fill in the outcomes of logged predictions."""

from __future__ import annotations

import typer

from pricebot.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("score")(score)


def score(
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Fill in the actual outcome of logged predictions whose horizon has passed."""
    from pricebot.db import redact
    from pricebot.predictions import score_predictions
    from pricebot_cli.output import console

    url = database_url or get_settings().database_url
    scored = score_predictions(url)
    console.print(f"scored {scored:,} predictions in {redact(url)}")
