"""``pricebot monitor``: the Streamlit monitoring page, headless, with the project's settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from pricebot.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)


def app_file() -> Path:
    """The page's script, ``app.py`` of this package (in a checkout or an installed wheel)."""
    return Path(__file__).resolve().parent / "app.py"


def monitor_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """``streamlit run`` of the page (through :mod:`pricebot_monitor.serve`, which imports what
    the page needs while the server starts), headless, without usage statistics or file
    watching."""
    return [
        sys.executable, "-m", "pricebot_monitor.serve", str(app_file()),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", host,
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "viewer",
        "--client.showErrorDetails", "none",
        "--theme.base", "light",
    ]  # fmt: skip


def monitor_env() -> dict[str, str]:
    """Ours (PRICEBOT_*, MLFLOW_TRACKING_URI) plus: the checkout importable (``pricebot_monitor``)
    and MLflow failing in seconds, not minutes of retries, when its server is down."""
    env = dict(os.environ)
    root = str(app_file().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    env.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return env


def monitor(
    port: int = typer.Option(
        None, "--port", help="Overrides PRICEBOT_MONITOR_PORT (8501).", show_default=False
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="0.0.0.0 to listen on every interface."),
) -> None:
    """Serve the monitoring page: prices and predictions, errors against the baselines, the
    pool value after fees, which version was champion when, and data health."""
    from rich.console import Console

    console = Console()
    settings = get_settings()
    port = port or settings.monitor_port
    command, env = monitor_command(port, host), monitor_env()
    console.print(f"monitoring page on [bold]http://{host}:{port}[/]")
    sys.stdout.flush()
    # Replace this process so a supervisor's SIGTERM or Ctrl-C reaches Streamlit directly.
    os.execve(sys.executable, command, env)  # noqa: S606 - no shell, fixed argv
