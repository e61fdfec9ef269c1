"""``pricebot up``: the whole system on this machine."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        days: int = typer.Option(28, min=2, help="Days of history to backfill."),
        trials: int = typer.Option(10, min=1, help="Optuna trials per model on first training."),
        candidates: str = typer.Option(
            None,
            "--candidates",
            help="Candidate families the trainings try, comma-separated.",
            show_default="xgboost,lightgbm,ridge,lasso,elasticnet,huber (CatBoost, the slowest, "
            "only when named)",
        ),
        offline: bool = typer.Option(
            None,
            "--offline/--online",
            help="Force the simulated exchange (--offline) or Binance (--online); "
            "default: Binance when it answers.",
            show_default=False,
        ),
        smoke: bool = typer.Option(
            False, "--smoke", help="Start, check a prediction is served and the page draws, stop."
        ),
        tick_seconds: float = typer.Option(60.0, min=1, help="Seconds between ingest runs."),
        predict_every_minutes: float = typer.Option(
            60.0,
            min=1,
            help="Minutes between batch predictions of every symbol and target into the log "
            "(the cloud's hourly predict job; the first runs on the first tick).",
        ),
    ) -> None:
        """Start and supervise the whole stack; Ctrl-C stops every part cleanly."""
        from datetime import timedelta

        from rich.console import Console

        from pricebot.errors import UsageError
        from pricebot.settings import get_settings
        from pricebot.summary import data_summary
        from pricebot_local.stack import DEMO_CANDIDATES, PortBusyError, Stack, StackOptions
        from pricebot_local.summary import summary_table

        console = Console()

        settings = get_settings()
        options = StackOptions(
            days=days,
            trials=trials,
            candidates=tuple(c.strip() for c in candidates.split(",") if c.strip())
            if candidates
            else DEMO_CANDIDATES,
            offline=offline,
            smoke=smoke,
            tick_seconds=tick_seconds,
            predict_every=timedelta(minutes=predict_every_minutes),
        )
        stack = Stack(settings, options)
        try:
            stack.start()
            console.print(summary_table(data_summary(stack.database_url, settings.feature_set)))
            console.print("[bold green]pricebot is up[/]")
            stack.print_urls()
            from pricebot_local.smoke import sample_predictions

            console.print(sample_predictions(stack))
            if smoke:
                from pricebot_local.smoke import check_stack

                check_stack(stack)
                console.print("[bold green]smoke check passed[/]")
                return
            console.print("Ctrl-C stops everything.")
            stack.run_forever()
        except KeyboardInterrupt:
            console.print("stopping…")
        except PortBusyError as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:
            raise UsageError(f"{type(exc).__name__}: {exc} (logs under {stack.logs})") from None
        finally:
            stack.stop()
            console.print("stopped.")
