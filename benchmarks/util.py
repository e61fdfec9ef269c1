"""Small helpers the benchmarks share."""

from __future__ import annotations

from pathlib import Path

from pricebot_local.stack import free_port

__all__ = ["free_port", "rss_bytes_of"]


def rss_bytes_of(pid: int) -> int:
    """Resident set size of one process from /proc (0 if it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0
