"""``pricebot score``: fill in the outcomes of logged predictions, and, deployed, publish each
champion's live health (``--publish-metrics``, the stack's hourly scoring task)."""

from __future__ import annotations

import typer

from pricebot.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("score")(score)


def score(
    publish_metrics: bool = typer.Option(
        False,
        "--publish-metrics",
        help="Then publish each champion's live error against no change, and each symbol's "
        "feature drift, as CloudWatch metrics (namespace pricebot/model) for the stack's alarms.",
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Fill in the actual outcome of logged predictions whose horizon has passed."""
    from pricebot.db import redact
    from pricebot.predictions import score_predictions
    from pricebot_cli.output import console

    settings = get_settings()
    url = database_url or settings.database_url
    scored = score_predictions(url)
    console.print(f"scored {scored:,} predictions in {redact(url)}")
    if publish_metrics:
        publish(url)


def publish(url: str) -> None:
    """The health figures of what the settings serve, published and shown."""
    from rich import box
    from rich.table import Table

    from pricebot.model_health import NAMESPACE, publish_model_health
    from pricebot.targets import parse_target
    from pricebot_cli.output import console

    settings = get_settings()
    # The service logs canonical target names (ret24h, not RET1440M): the metrics' dimensions
    # and the stack's alarms use the same spelling.
    targets = list(dict.fromkeys(parse_target(t).name for t in settings.targets))
    report = publish_model_health(
        url, settings.symbols, targets, settings.feature_set, alias=settings.model_alias
    )

    def figure(value: float | None, digits: int = 5) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    table = Table(title=f"model health (@{settings.model_alias})", box=box.SIMPLE_HEAD)
    for column in ("symbol", "target", "scored", "champion MAE", "no-change MAE", "ratio"):
        table.add_column(column, justify="left" if column in ("symbol", "target") else "right")
    for h in report.healths:
        table.add_row(
            h.symbol, h.target, f"{h.scored:,}", figure(h.champion_mae),
            figure(h.no_change_mae), figure(h.error_ratio, 3),
        )  # fmt: skip
    console.print(table)
    for d in report.drifts:
        console.print(f"{d.symbol} drift: PSI {d.psi:.3f} (largest on {d.feature})")
    console.print(f"published {report.published} metric values to CloudWatch ({NAMESPACE})")
