"""``pricebot predict``: one batch of predictions for every served symbol and target, logged
(:mod:`pricebot.batch`). Scheduled hourly in the cloud and on the stack's loop locally."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from pricebot.settings import get_settings

if TYPE_CHECKING:
    from pricebot.batch import BatchResult


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    symbols: str = typer.Option(
        None, "--symbols", help="Comma-separated; default PRICEBOT_SYMBOLS.", show_default=False
    ),
    targets: str = typer.Option(
        None, "--targets", help="Comma-separated; default PRICEBOT_TARGETS.", show_default=False
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Overrides PRICEBOT_DATABASE_URL.", show_default=False
    ),
    publish_metrics: bool = typer.Option(
        False,
        "--publish-metrics",
        help="Then publish how many pairs were predicted and logged, and how many skipped, as "
        "CloudWatch metrics (namespace pricebot/model): the stack alarms on hours without any.",
    ),
) -> None:
    """Predict every served symbol and target into the prediction log, as the service would."""
    from rich.table import Table

    from pricebot.errors import MissingExtraError, PricebotError
    from pricebot.settings import split_csv
    from pricebot_cli.output import console

    overrides: dict[str, object] = {}
    if symbols:
        overrides["symbols"] = [str(s).upper() for s in split_csv(symbols)]  # type: ignore[union-attr]
    if targets:
        overrides["targets"] = split_csv(targets)
    if database_url:
        overrides["database_url"] = database_url
    settings = get_settings().model_copy(update=overrides)
    try:
        from pricebot.batch import run_batch
    except ImportError as exc:
        raise MissingExtraError(
            f"Batch predictions need the model libraries ({exc}); install pricebot with the "
            "`serve` extra."
        ) from None
    result = run_batch(settings)
    table = Table(title="batch predictions (logged)", title_justify="left")
    for column in ("symbol", "target", "model", "prediction", "feature time"):
        table.add_column(column)
    for p in result.predictions:
        when = p.feature_time.isoformat(timespec="minutes")
        table.add_row(p.symbol, p.target, f"{p.model_name} v{p.model_version}",
                      f"{p.prediction:+.6f}", when)  # fmt: skip
    console.print(table)
    console.print(f"logged {len(result.predictions)} prediction(s) through the service's path")
    for symbol, target, why in result.skipped:
        console.print(f"[yellow]skipped[/] {symbol} {target}: {why}")
    if publish_metrics:  # before the verdicts below: a failed batch is what the alarm is for
        publish(result)
    if not result.logged:
        raise PricebotError("The prediction log did not confirm its write in time.")
    if not result.predictions and result.skipped:
        raise PricebotError("Nothing could be predicted (see the reasons above).")


def publish(result: BatchResult) -> None:
    """The batch's heartbeat to CloudWatch (pricebot.batch.batch_metric_data)."""
    from datetime import UTC, datetime

    import boto3

    from pricebot.batch import batch_metric_data
    from pricebot.model_health import NAMESPACE, put_metrics
    from pricebot_cli.output import console

    sent = put_metrics(boto3.client("cloudwatch"), batch_metric_data(result, datetime.now(UTC)))
    console.print(f"published {sent} metric values to CloudWatch ({NAMESPACE})")
