"""``pricebot monitor``: the Streamlit monitoring page, headless, with the project's settings."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import typer

from pricebot.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)


def app_file() -> Path:
    """``monitoring_app/app.py``: from the installed package, else the checkout this file is in,
    else the working directory."""
    candidates = []
    try:
        spec = importlib.util.find_spec("monitoring_app")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "app.py")
    candidates += [
        Path(__file__).resolve().parents[3] / "monitoring_app" / "app.py",
        Path.cwd() / "monitoring_app" / "app.py",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "monitoring_app/app.py not found: install pricebot with its monitor extra "
        "(`uv sync --all-extras`) or run `pricebot monitor` from the pricebot checkout."
    )


def monitor_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """``streamlit run`` of the page, headless, without usage statistics or file watching."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app_file()),
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
    """Ours (PRICEBOT_*, MLFLOW_TRACKING_URI) plus: the checkout importable (``monitoring_app``)
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
    from pricebot.cli import console, fail

    settings = get_settings()
    port = port or settings.monitor_port
    try:
        command = monitor_command(port, host)
        env = monitor_env()
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    console.print(f"monitoring page on [bold]http://{host}:{port}[/]")
    sys.stdout.flush()
    # Replace this process so a supervisor's SIGTERM or Ctrl-C reaches Streamlit directly.
    os.execve(sys.executable, command, env)  # noqa: S606 - no shell, fixed argv
