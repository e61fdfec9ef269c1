"""``pricebot models``, ``promote``, ``rollback``: the registry by hand, through the core's
:class:`pricebot.registry.Registry` (every move recorded with who, when and why)."""

from __future__ import annotations

import typer

from pricebot.registry import Registry


def canonical_target(target: str | None) -> str:
    """The canonical target name (default: the first of PRICEBOT_TARGETS)."""
    from pricebot.settings import get_settings
    from pricebot.targets import parse_target

    return parse_target(target or get_settings().targets[0]).name


def registry() -> Registry:
    """The configured registry, after checking it answers (seconds, not minutes of retries)."""
    from pricebot.errors import MissingExtraError
    from pricebot.settings import get_settings

    try:
        import mlflow  # noqa: F401 - only to say clearly that it is missing
    except ImportError as exc:
        raise MissingExtraError(
            f"MLflow is not installed ({exc}); install pricebot with the `train` extra."
        ) from None
    found = Registry(get_settings().tracking_uri())
    found.check()
    return found


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("promote")(promote)
    app.command("rollback")(rollback)


def models() -> None:
    """Registered models with their versions, aliases and headline metrics."""
    from rich.table import Table

    from pricebot_cli.output import console

    summaries = registry().list_models()
    if not summaries:
        console.print("no registered pricebot models yet: run `pricebot train --symbol S`")
        return
    for summary in summaries:
        table = Table(title=summary.name, title_justify="left")
        for column in ("version", "aliases", "candidate", "created (UTC)"):
            table.add_column(column, justify="right" if column == "version" else "left")
        for column in ("held-out pool net", "selection pool net", "held-out dir. acc",
                       "held-out mae"):  # fmt: skip
            table.add_column(column, justify="right")
        for v in summary.versions:
            m = v.metrics

            def cell(key: str, legacy: str, m: dict = m) -> str:
                # Versions trained before the held-out split logged only the legacy name.
                value = m.get(key, m.get(legacy))
                return "–" if value is None else f"{value:.4f}"

            table.add_row(
                v.version, ", ".join(v.aliases) or "–", v.tags.get("candidate", "–"),
                f"{v.created:%Y-%m-%d %H:%M}" if v.created else "–",
                cell("heldout_pool_value_net", "newest_pool_value_net"),
                cell("selection_pool_value_net", "pool_value_net"),
                cell("heldout_directional_accuracy", "directional_accuracy"),
                cell("heldout_mae", "mae"),
            )  # fmt: skip
        console.print(table)


def promote(
    symbol: str = typer.Option(..., "--symbol"),
    version: int = typer.Option(..., "--version", min=1),
    reason: str = typer.Option(..., "--reason", help="Why: kept in the alias history."),
    target: str = typer.Option(None, "--target", show_default="ret24h"),
) -> None:
    """Make VERSION the champion by hand (recorded with who, when and why)."""
    _move(symbol, target, reason, version)


def rollback(
    symbol: str = typer.Option(..., "--symbol"),
    reason: str = typer.Option(..., "--reason", help="Why: kept in the alias history."),
    target: str = typer.Option(None, "--target", show_default="ret24h"),
) -> None:
    """Give the champion alias back to the version that held it before the latest move."""
    _move(symbol, target, reason, None)


def _move(symbol: str, target: str | None, reason: str, version: int | None) -> None:
    from pricebot.db import connect
    from pricebot.registry import CHAMPION, default_actor, model_name, rollback_target
    from pricebot.settings import get_settings
    from pricebot_cli.output import console

    name = model_name(symbol.upper(), canonical_target(target))
    found = registry()
    url = get_settings().database_url
    current = found.alias_version(name, CHAMPION)
    if version is None:
        with connect(url) as conn:
            chosen = rollback_target(conn, name, current)
    else:
        chosen = str(version)
    event = found.move_alias(url, name, CHAMPION, chosen, reason=reason, moved_by=default_actor())
    console.print(
        f"{name}: champion v{event.previous_version or '–'} -> v{event.version} "
        f"by {event.moved_by}: {event.reason}"
    )
