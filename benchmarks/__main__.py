"""``make bench``: run every benchmark module (or those named) and write its figures as JSON.

Usage: ``python -m benchmarks [area ...]`` where area is the part after ``bench_``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import benchmarks

RESULTS = Path(__file__).parent / "results"


def main(selected: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    names = [
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    ]
    failed = []
    for name in sorted(names):
        area = name.removeprefix("bench_")
        if selected and area not in selected:
            continue
        print(f"== {area}", flush=True)
        started = time.perf_counter()
        try:
            figures = importlib.import_module(f"benchmarks.{name}").run()
        except Exception as exc:  # a failed benchmark must not hide the others' figures
            print(f"   failed: {type(exc).__name__}: {exc}", flush=True)
            failed.append(area)
            continue
        document = {
            "benchmark": area,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "cpus": _cpus()},
            "wall_seconds": round(time.perf_counter() - started, 2),
            "figures": figures,
        }
        (RESULTS / f"{area}.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(json.dumps(figures, indent=2, default=str), flush=True)
    return 1 if failed else 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
