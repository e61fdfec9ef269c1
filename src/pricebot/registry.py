"""Registered-model naming shared by training, serving and monitoring."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"


def model_name(symbol: str, target: str) -> str:
    """``pricebot-<symbol>-<target>`` in lower case, e.g. ``pricebot-btcusdt-ret24h``."""
    return f"pricebot-{symbol.lower()}-{target.lower()}"


def model_uri(symbol: str, target: str, alias: str = CHAMPION) -> str:
    return f"models:/{model_name(symbol, target)}@{alias}"


# ---------------------------------------------------------------------------------------------
# Alias moves with history, and listings. MLflow is imported by the caller (a client is passed
# in): the core's serving and monitoring import this module without needing MLflow loaded.

HEADLINE_METRICS = ("newest_pool_value_net", "pool_value_net", "directional_accuracy", "mae")


class AliasMoveError(LookupError):
    """An alias cannot be moved as asked (no such version, nothing to roll back to)."""


@dataclass(frozen=True)
class AliasEvent:
    model_name: str
    alias: str
    version: str | None
    previous_version: str | None
    moved_at: datetime
    moved_by: str
    reason: str


@dataclass
class VersionSummary:
    version: str
    aliases: list[str]
    tags: dict[str, str]
    metrics: dict[str, float]
    created: datetime | None
    run_id: str | None


@dataclass
class ModelSummary:
    name: str
    aliases: dict[str, str]
    versions: list[VersionSummary] = field(default_factory=list)


def default_actor() -> str:
    """Who is moving an alias: the login and the host, e.g. ``ana@laptop``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the alias (or the model) does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        if _not_found(exc):
            return None
        raise


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    text = str(exc).lower()
    return code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in text
    )


def move_alias(
    client: Any,
    database_url: str | None,
    name: str,
    alias: str,
    version: str | int,
    *,
    reason: str,
    moved_by: str | None = None,
) -> AliasEvent:
    """Point ``alias`` of model ``name`` at ``version``, recording who, when and why.

    The event goes to table ``model_alias_events`` (when ``database_url`` is given) and onto the
    version as tags ``<alias>.moved_at``, ``<alias>.moved_by``, ``<alias>.reason``. The database
    row is written in a transaction that commits only after MLflow accepted the move, so a
    refused move leaves no history behind.
    """
    version = str(version)
    if not reason.strip():
        raise AliasMoveError("A reason is needed to move an alias (e.g. --reason 'beat baselines')")
    try:
        client.get_model_version(name, version)
    except Exception as exc:
        if _not_found(exc):
            raise AliasMoveError(f"Model {name} has no version {version}.") from None
        raise
    previous = alias_version(client, name, alias)
    event = AliasEvent(
        name, alias, version, previous, datetime.now(UTC), moved_by or default_actor(), reason
    )

    def apply() -> None:
        client.set_registered_model_alias(name, alias, version)
        for key, value in (
            ("moved_at", event.moved_at.isoformat(timespec="seconds")),
            ("moved_by", event.moved_by),
            ("reason", event.reason[:4000]),
            ("previous_version", previous or ""),
        ):
            client.set_model_version_tag(name, version, f"{alias}.{key}", value)

    if database_url is None:
        apply()
        return event
    from pricebot.db import transaction

    with transaction(database_url) as conn:
        conn.execute(
            """INSERT INTO model_alias_events
                 (model_name, alias, version, previous_version, moved_at, moved_by, reason)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (name, alias, version, previous, event.moved_at, event.moved_by, event.reason),
        )
        apply()
    return event


def alias_history(conn: Any, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Recorded moves of ``name``'s aliases, oldest first."""
    rows = conn.execute(
        """SELECT model_name, alias, version, previous_version, moved_at, moved_by, reason
           FROM model_alias_events
           WHERE model_name = %s AND (%s::text IS NULL OR alias = %s)
           ORDER BY moved_at, id""",
        (name, alias, alias),
    ).fetchall()
    return [AliasEvent(*row) for row in rows]


def rollback_target(conn: Any, name: str, current: str | None) -> str:
    """The version the champion held before its latest recorded move."""
    events = alias_history(conn, name, CHAMPION)
    if not events or events[-1].version != current or not events[-1].previous_version:
        raise AliasMoveError(
            f"No earlier champion of {name} is recorded to roll back to (current: "
            f"{current or 'none'}). Use `pricebot promote --version N --reason ...` instead."
        )
    return str(events[-1].previous_version)


def list_models(client: Any, prefix: str = "pricebot-") -> list[ModelSummary]:
    """Registered models named ``<prefix>...`` with their versions, aliases and headline
    metrics (read from each version's run)."""
    summaries = []
    for model in client.search_registered_models(filter_string=f"name LIKE '{prefix}%'"):
        aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        summary = ModelSummary(model.name, aliases)
        versions = client.search_model_versions(filter_string=f"name = '{model.name}'")
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            metrics: dict[str, float] = {}
            if mv.run_id:
                try:
                    run_metrics = client.get_run(mv.run_id).data.metrics
                    metrics = {k: run_metrics[k] for k in HEADLINE_METRICS if k in run_metrics}
                except Exception as exc:
                    if not _not_found(exc):
                        raise
            created = (
                datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
                if mv.creation_timestamp
                else None
            )
            summary.versions.append(
                VersionSummary(
                    str(mv.version),
                    sorted(by_version.get(str(mv.version), [])),
                    dict(mv.tags or {}),
                    metrics,
                    created,
                    mv.run_id,
                )
            )
        summaries.append(summary)
    return sorted(summaries, key=lambda s: s.name)
