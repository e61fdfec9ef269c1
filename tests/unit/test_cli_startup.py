"""Every ``pricebot`` process (the stack starts the exchange, the service and the page through
it) loads the command tree first: it must not import the heavy libraries of one command."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("mlflow", "xgboost", "optuna", "bentoml", "streamlit", "sklearn")


def test_loading_the_command_tree_imports_no_heavy_library() -> None:
    # Given a fresh interpreter, when it builds the whole `pricebot` command tree
    probe = (
        "import sys, pricebot_cli.app as app; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )

    # Then none of them is loaded (each command imports its own when it runs)
    assert done.stdout.strip() == "", f"imported at start: {done.stdout.strip()}"
