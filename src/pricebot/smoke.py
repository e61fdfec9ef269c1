"""``pricebot up --smoke``: does the running stack serve a prediction and draw its page?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from pricebot.stack import Stack


class SmokeCheckError(RuntimeError):
    """The stack came up but does not do its job; the message says which part."""


def check_stack(stack: Stack, screenshot: Path | None = None) -> dict[str, float]:
    """Ask for a prediction per symbol and draw the monitoring page; returns the predictions."""
    predictions = {}
    for symbol in stack.settings.symbols:
        target = stack.settings.targets[0]
        answer = httpx.post(
            f"{stack.service_url}/predict", json={"symbol": symbol, "target": target}, timeout=30
        )
        if answer.status_code != 200:
            raise SmokeCheckError(f"predict {symbol}: HTTP {answer.status_code}: {answer.text}")
        predictions[symbol] = answer.json()["prediction"]
    draw_page(stack.monitor_url, screenshot or stack.logs / "monitor-smoke.png")
    return predictions


def draw_page(url: str, screenshot: Path, timeout_ms: int = 60_000) -> Path:
    """Open the page in headless Chromium, wait until a chart is drawn, save a screenshot."""
    from playwright.sync_api import sync_playwright

    from pricebot.browser import chromium_launch_options

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**chromium_launch_options())
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=timeout_ms)
            page.wait_for_selector(
                "[data-testid='stVegaLiteChart'], [data-testid='stArrowVegaLiteChart']",
                timeout=timeout_ms,
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return screenshot
