"""The ``pricebot`` command line. Sub-commands are thin: parse options, call the core, print.

Sub-commands register themselves from their own modules (``pricebot.commands.*``) so that
``pricebot --help`` stays fast and a command's heavy imports happen only when it runs.
"""

from __future__ import annotations

import typer
from rich.console import Console

from pricebot.settings import get_settings

app = typer.Typer(
    name="pricebot",
    help="Crypto price prediction: Binance candles in, a served and monitored model out.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a clear error (no traceback) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Apply the schema migrations (safe to run again)."""
    from pricebot import db

    url = database_url or get_settings().database_url
    try:
        revision = db.upgrade(url)
    except db.DatabaseUnavailableError as exc:
        raise fail(str(exc)) from None
    console.print(f"database {db.redact(url)} at revision [bold]{revision}[/]")


def _register_commands() -> None:
    """Attach the sub-commands that live in their own modules."""
    import importlib
    import pkgutil

    from pricebot import commands

    for info in pkgutil.iter_modules(commands.__path__):
        module = importlib.import_module(f"pricebot.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()

if __name__ == "__main__":  # `python -m pricebot.cli ...`, as the one-machine stack starts children
    app()
