"""``pricebot serve``: the BentoML prediction service, contributed to the ``pricebot`` CLI through
the ``pricebot.commands`` entry point. Works from a checkout and from an installed wheel alike.
(The start itself is :mod:`pricebot_service.launch`, which ``python -m pricebot_service`` runs
too.)"""

from __future__ import annotations

import typer

from pricebot_service.launch import (  # re-exported: tests and benchmarks build commands here
    SERVICE,
    is_loopback,
    run,
    service_command,
    service_env,
    service_root,
)

__all__ = [
    "SERVICE",
    "is_loopback",
    "register",
    "serve",
    "service_command",
    "service_env",
    "service_root",
]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    port: int = typer.Option(
        None, "--port", help="Overrides PRICEBOT_SERVICE_PORT.", show_default=False
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="0.0.0.0 to listen on every interface."),
) -> None:
    """Serve predictions over HTTP from each symbol's champion model (OpenAPI page at /).

    The service follows the registry's `champion` alias by itself (every
    PRICEBOT_ALIAS_POLL_SECONDS): promote a model and it is served without a restart.
    Callers send a key from PRICEBOT_API_KEYS in the X-API-Key header; without keys the API
    is open, which is allowed on 127.0.0.1 only.
    """
    from rich.console import Console

    console = Console()

    def say(text: str) -> None:
        if text.startswith("warning:"):
            console.print("[bold yellow]warning:[/]" + text.removeprefix("warning:"))
        else:
            console.print(text)

    run(port, host, say)
