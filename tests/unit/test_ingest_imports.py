"""The ingest path must not pull in numpy or pandas: the ingest Lambda's cold start pays for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "pandas")


@pytest.mark.parametrize("module", ["pricebot.binance", "pricebot.ingest"])
def test_module_imports_neither_numpy_nor_pandas(module: str) -> None:
    # Given a fresh interpreter (another test may already have imported numpy in this one)
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    # When only the module is imported
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    # Then it imports cleanly and neither heavy library came along
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{module} imported {done.stdout.strip()}"
