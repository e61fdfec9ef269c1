"""``pricebot db upgrade``: the versioned schema."""

from __future__ import annotations

import typer

from pricebot.settings import get_settings


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
    db_app.command("upgrade")(upgrade)
    app.add_typer(db_app, name="db")


def upgrade(
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Apply the schema migrations (safe to run again)."""
    from pricebot import db
    from pricebot_cli.output import console

    url = database_url or get_settings().database_url
    revision = db.upgrade(url)
    console.print(f"database {db.redact(url)} at revision [bold]{revision}[/]")
