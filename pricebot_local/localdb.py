"""A PostgreSQL server of our own for the one-machine stack and the tests.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user (which
every Debian ``postgresql`` package creates) and the data directory is handed to it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pricebot.errors import PricebotError


class PostgresNotFoundError(PricebotError, RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first."""
    if env := os.environ.get("PRICEBOT_PG_BIN"):
        return Path(env)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresNotFoundError(
        "No PostgreSQL server found (initdb/pg_ctl). Run `make setup` (installs the Debian "
        "package `postgresql`) or point PRICEBOT_PG_BIN at a directory holding initdb and pg_ctl."
    )


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster in ``data_dir`` listening on 127.0.0.1:``port``.

    ``durable=False`` turns fsync off: right for throw-away test clusters, wrong for the demo's
    data that should survive a crash.
    """

    data_dir: Path
    port: int
    user: str = "pricebot"
    durable: bool = True

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self.bin = find_pg_bin()

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=False, capture_output=True, text=True)

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster (once); trust auth, since it listens on loopback only."""
        if self.initialized():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.data_dir)
        done = self._run(
            "initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-instructions",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed in {self.data_dir}:\n{done.stderr.strip()}")

    def _hand_over(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        shutil.chown(path, "postgres", "postgres")
        path.chmod(0o700)
        # The postgres user must be able to reach the directory and write the log beside it.
        for parent in [path.parent, *path.parent.parents]:
            if parent.stat().st_mode & 0o001 == 0:
                parent.chmod(parent.stat().st_mode | 0o001)
        log = self.log_file
        log.touch(exist_ok=True)
        shutil.chown(log, "postgres", "postgres")

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def start(self, timeout: float = 30.0) -> None:
        """Start the server unless it runs; a busy port raises naming the setting to change."""
        self.init()
        if self.running():
            return
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.data_dir}",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
            "-c synchronous_commit=off",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off"]
        self._hand_over(self.data_dir)
        done = self._run(
            "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file),
            "-o", " ".join(options), "-w", "-t", str(int(timeout)),
        )  # fmt: skip
        if done.returncode != 0:
            tail = (
                self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            )
            hint = ""
            if "Address already in use" in tail or "could not bind" in tail:
                hint = f"\nPort {self.port} is busy: set PRICEBOT_POSTGRES_PORT to a free port."
            raise RuntimeError(f"PostgreSQL did not start:\n{done.stderr.strip()}\n{tail}{hint}")
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server if it runs; raise if it runs and cannot be stopped."""
        if not self.initialized():
            return
        done = self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
        if done.returncode != 0 and "Is server running?" not in done.stderr:
            raise RuntimeError(f"PostgreSQL in {self.data_dir} did not stop: {done.stderr.strip()}")

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create ``name`` if missing and return its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
                conn.execute(sql)
        return self.url(name)
