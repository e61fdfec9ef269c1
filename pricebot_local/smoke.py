"""``pricebot up --smoke``: does the running stack serve a prediction and draw its page?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from pricebot.errors import PricebotError

if TYPE_CHECKING:
    from rich.table import Table

    from pricebot_local.stack import Stack


class SmokeCheckError(PricebotError, RuntimeError):
    """The stack came up but does not do its job; the message says which part."""


def service_headers() -> dict[str, str]:
    from pricebot_local.stack import service_headers as headers

    return headers()


def check_stack(stack: Stack, screenshot: Path | None = None) -> dict[str, float]:
    """Ask for a prediction per symbol and draw the monitoring page; returns the predictions."""
    predictions = {}
    for symbol in stack.settings.symbols:
        target = stack.settings.targets[0]
        answer = httpx.post(
            f"{stack.service_url}/predict", json={"symbol": symbol, "target": target},
            headers=service_headers(), timeout=30,
        )  # fmt: skip
        if answer.status_code != 200:
            raise SmokeCheckError(f"predict {symbol}: HTTP {answer.status_code}: {answer.text}")
        predictions[symbol] = answer.json()["prediction"]
    draw_page(stack.monitor_url, screenshot or stack.logs / "monitor-smoke.png")
    return predictions


def sample_predictions(stack: Stack) -> Table:
    """One prediction per served symbol, as a table (errors shown in place, never raised)."""
    from rich.table import Table

    table = Table(title="Sample predictions (POST /predict)")
    for column in ("symbol", "target", "prediction", "implied price", "model", "feature row"):
        table.add_column(column)
    target = stack.settings.targets[0]
    for symbol in stack.settings.symbols:
        try:
            answer = httpx.post(
                f"{stack.service_url}/predict", json={"symbol": symbol, "target": target},
                headers=service_headers(), timeout=30,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            table.add_row(symbol, target, f"[red]{exc}", "", "", "")
            continue
        try:
            body = answer.json()
        except ValueError:
            body = {"error": answer.text[:200]}
        if answer.status_code != 200:
            table.add_row(symbol, target, f"[yellow]{answer.status_code}: {body.get('error', '')}",
                          "", "", "")  # fmt: skip
            continue
        implied = body.get("implied_price")
        table.add_row(
            symbol, target, f"{body['prediction']:+.4%}",
            "" if implied is None else f"{implied:,.4f}",
            f"{body['model_name']} v{body['model_version']}", str(body["feature_time"]),
        )  # fmt: skip
    return table


def draw_page(url: str, screenshot: Path, timeout_ms: int = 60_000) -> Path:
    """Open the page in headless Chromium, wait until a chart is drawn, save a screenshot."""
    from playwright.sync_api import sync_playwright

    from pricebot_local.browser import chromium_launch_options

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
