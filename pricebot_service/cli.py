"""``pricebot serve``: the BentoML prediction service, contributed to the ``pricebot`` CLI through
the ``pricebot.commands`` entry point. Works from a checkout and from an installed wheel alike."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from pricebot.errors import ServiceConfigError
from pricebot.settings import get_settings

SERVICE = "pricebot_service.service:PriceBot"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def service_root() -> Path:
    """The directory holding this package: the checkout, or site-packages of an install."""
    return Path(__file__).resolve().parent.parent


def service_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """``bentoml serve`` for the pricebot service (the same interpreter, so the same venv)."""
    return [
        sys.executable, "-m", "bentoml", "serve", SERVICE,
        "--host", host, "--port", str(port), "--working-dir", str(service_root()),
    ]  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the service runs in: ours (PRICEBOT_*, MLFLOW_*) plus BentoML's quiet."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(extra or {})}
    root = str(service_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


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

    from pricebot_service.access import ApiKeys

    console = Console()
    settings = get_settings()
    port = port or settings.service_port
    keys = ApiKeys.from_settings(settings)  # PRICEBOT_REQUIRE_API_KEY without keys: refused
    if not keys.enabled:
        if not is_loopback(host):
            raise ServiceConfigError(
                f"Refusing to serve on {host} without an API key: anyone on the network could "
                "call it. Set PRICEBOT_API_KEYS (e.g. `export PRICEBOT_API_KEYS=$(python -c "
                "'import secrets; print(secrets.token_urlsafe(32))')`), or serve on 127.0.0.1."
            )
        console.print(
            "[bold yellow]warning:[/] PRICEBOT_API_KEYS is not set: the prediction API is open "
            f"to anything that can reach {host}:{port}."
        )
    command = service_command(port, host)
    console.print(
        f"serving {', '.join(settings.symbols)} x {', '.join(settings.targets)} on "
        f"[bold]http://{host}:{port}[/] (docs at /, metrics at /metrics)"
    )
    sys.stdout.flush()
    # Replace this process: signals (Ctrl-C, a supervisor's SIGTERM) reach BentoML directly, and
    # its clean shutdown writes the queued prediction log.
    os.execve(sys.executable, command, service_env())  # noqa: S606 - no shell, fixed argv
