"""Headless Chromium for smoke checks, tests and benchmarks (Debian's, not a downloaded one)."""

from __future__ import annotations

import os
import shutil


def chromium_path() -> str:
    path = os.environ.get("PRICEBOT_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise RuntimeError(
            "Chromium not found. Run `make setup` (installs Debian's chromium) or set "
            "PRICEBOT_CHROMIUM to a Chromium binary."
        )
    return path


def chromium_launch_options() -> dict:
    """Launch options that work as root with no network beyond localhost.

    Playwright gives each launch a fresh temporary profile of its own.
    """
    return {
        "executable_path": chromium_path(),
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }
