"""Starting the service: ``bentoml serve`` for :mod:`pricebot_service.service`, with the project's
settings, replacing the calling process. Shared by ``pricebot serve`` (:mod:`pricebot_service.cli`)
and ``python -m pricebot_service`` (how ``pricebot up`` starts it: without the whole ``pricebot``
command tree to build first, a warm start's first prediction comes about half a second sooner
on a loaded two-core machine). No typer, no rich: this module is on that start's path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from pricebot.errors import ServiceConfigError
from pricebot.settings import get_settings

SERVICE = "pricebot_service.service:PriceBot"


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


def run(port: int | None, host: str, say: Callable[[str], None] = print) -> None:
    """Check the configuration and replace this process with ``bentoml serve``; ``say`` shows
    the warnings and the address (rich markup is left to the caller)."""
    from pricebot_service.access import ApiKeys

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
        say(
            "warning: PRICEBOT_API_KEYS is not set: the prediction API is open "
            f"to anything that can reach {host}:{port}."
        )
    command = service_command(port, host)
    say(
        f"serving {', '.join(settings.symbols)} x {', '.join(settings.targets)} on "
        f"http://{host}:{port} (docs at /, metrics at /metrics)"
    )
    sys.stdout.flush()
    # Replace this process: signals (Ctrl-C, a supervisor's SIGTERM) reach BentoML directly, and
    # its clean shutdown writes the queued prediction log.
    os.execve(sys.executable, command, service_env())  # noqa: S606 - no shell, fixed argv
