"""The ``pricebot`` command: a host for sub-commands, most of them contributed by adapters.

The host defines the core's own commands (``pricebot.commands`` of this package) and finds the
rest through the entry-point group ``pricebot.commands``: the training job contributes ``train``,
the service ``serve``, the monitoring page ``monitor``, the simulated exchange ``exchange``, the
one-machine stack ``up``. It imports none of them by name, so an adapter that is not installed
simply contributes nothing.

Errors: a command raises :class:`pricebot.errors.PricebotError` (or a subclass) with a message
written for the person at the terminal; the host prints it without a traceback and exits 1.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, entry_points, version

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from pricebot.errors import PricebotError

ENTRY_POINT_GROUP = "pricebot.commands"
log = logging.getLogger(__name__)
err_console = Console(stderr=True)


class ReportingGroup(TyperGroup):
    """Turns a :class:`PricebotError` raised anywhere below into ``error: <message>`` and exit 1.

    Catching it here, around the whole invocation, covers nested groups (``db upgrade``) and
    commands added by plug-ins alike, under ``typer.testing.CliRunner`` as in a terminal.
    """

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except PricebotError as exc:
            report(str(exc))
            raise typer.Exit(1) from None


def report(message: str) -> None:
    """Print a clear error for the person at the terminal (no traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def package_version() -> str:
    try:
        return version("pricebot")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def _version(value: bool) -> None:
    if value:
        print(f"pricebot {package_version()}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The whole command tree: the host's own commands, then every installed plug-in's."""
    from pricebot_cli import commands

    app = typer.Typer(
        name="pricebot",
        cls=ReportingGroup,
        help="Crypto price prediction: Binance candles in, a served and monitored model out.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )

    @app.callback()
    def _root(
        show_version: bool = typer.Option(
            False,
            "--version",
            callback=_version,
            is_eager=True,
            help="Print pricebot's version and exit.",
        ),
    ) -> None:
        """Crypto price prediction: Binance candles in, a served and monitored model out."""

    commands.register(app)
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            register = entry_point.load()
        except ImportError as exc:  # an adapter whose own dependencies are missing
            log.debug("pricebot plug-in %s not loaded: %s", entry_point.name, exc)
            continue
        register(app)
    return app


app = build_app()


def main() -> None:
    """The console script ``pricebot``."""
    app()
