"""An MLflow tracking server of our own, for the one-machine stack and the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pricebot.db import sqlalchemy_url


def server_command(
    backend_url: str, artifacts_dir: Path, port: int, host: str = "127.0.0.1"
) -> list[str]:
    """``mlflow server`` on PostgreSQL with artifacts proxied to a local directory."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", sqlalchemy_url(backend_url),
        "--artifacts-destination", str(Path(artifacts_dir).absolute()),
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def server_env() -> dict[str, str]:
    # The job-execution workers cost ~1.9 GB and we run no MLflow jobs.
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_server(
    backend_url: str, artifacts_dir: Path, port: int, log_file: Path
) -> subprocess.Popen[bytes]:
    log = open(log_file, "ab")  # noqa: SIM115 - handed to the child for its lifetime
    return subprocess.Popen(
        server_command(backend_url, artifacts_dir, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_env(),
        start_new_session=True,
    )


def wait_healthy(
    tracking_uri: str, timeout: float = 60.0, process: subprocess.Popen | None = None
) -> None:
    """Block until ``/health`` answers; raise with a clear message if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"The MLflow server exited with code {process.returncode}")
        try:
            if httpx.get(f"{tracking_uri}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"MLflow at {tracking_uri} did not answer /health within {timeout:.0f}s")
