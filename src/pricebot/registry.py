"""The MLflow model registry as pricebot uses it: one gateway, one not-found rule.

Every part that talks to the registry (training, the service's alias poller, the monitoring page,
the CLI, the one-machine stack) goes through :class:`Registry`. It wraps one ``MlflowClient``
and gives the operations the product needs: is the server there, which version does an alias
point at, load a version, move an alias with its audit trail, the alias history, listings.

Naming is fixed here too: ``pricebot-<symbol>-<target>`` in lower case, a pooled model
``pricebot-pool-<label>-<target>``, aliases ``champion`` (served) and ``challenger`` (the newest
candidate).

MLflow is imported lazily: the core's serving and monitoring modules import this one without
MLflow loaded, and ``pricebot --help`` stays quick.
"""

from __future__ import annotations

import getpass
import hashlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pricebot.errors import AliasMoveError, TrackingUnavailableError, UsageError

CHAMPION = "champion"
CHALLENGER = "challenger"

#: Run metrics shown beside each version in listings (`pricebot models`): held-out figures
#: (data neither tuning nor selection saw) apart from selection-fold ones. The last four are the
#: names versions trained before the held-out split logged, so old versions still show something.
HEADLINE_METRICS = (
    "heldout_pool_value_net",
    "selection_pool_value_net",
    "heldout_directional_accuracy",
    "heldout_mae",
    "newest_pool_value_net",
    "pool_value_net",
    "directional_accuracy",
    "mae",
)

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


def model_name(symbol: str, target: str) -> str:
    """``pricebot-<symbol>-<target>`` in lower case, e.g. ``pricebot-btcusdt-ret24h``."""
    return f"pricebot-{symbol.lower()}-{target.lower()}"


#: Pooled models (one model over several symbols, :mod:`pricebot.pooling`).
POOL_PREFIX = "pricebot-pool-"


def pool_label(symbols: Sequence[str]) -> str:
    """8 hex digits naming a set of symbols (order and case do not matter)."""
    text = ",".join(sorted({s.upper() for s in symbols}))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def pool_model_name(symbols: Sequence[str], target: str, label: str | None = None) -> str:
    """``pricebot-pool-<label>-<target>`` in lower case; the label defaults to
    :func:`pool_label` of the symbols, so the same symbols always name the same pool. Its
    symbols are in the registered model's tag ``symbols``."""
    label = label or pool_label(symbols)
    if not label.replace("-", "").isalnum():
        raise UsageError(f"A pool label is letters, digits and dashes, not {label!r}.")
    return f"{POOL_PREFIX}{label.lower()}-{target.lower()}"


def is_pool_name(name: str) -> bool:
    return name.startswith(POOL_PREFIX)


def model_uri(symbol: str, target: str, alias: str = CHAMPION) -> str:
    return f"models:/{model_name(symbol, target)}@{alias}"


def _common_prefix(names: list[str]) -> str:
    """The longest prefix every name shares, cut before any SQL LIKE wildcard or quote."""
    prefix = min(names, default="")
    for name in names:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    for index, char in enumerate(prefix):
        if char in "%_'\\":
            return prefix[:index]
    return prefix


def default_actor() -> str:
    """Who is moving an alias: the login and the host, e.g. ``ana@laptop``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def is_not_found(exc: BaseException) -> bool:
    """True when MLflow says the model, version, alias or run does not exist.

    The one rule for "not there" as opposed to "the registry failed": MLflow answers a missing
    alias with INVALID_PARAMETER_VALUE and a "not found" text, everything else with
    RESOURCE_DOES_NOT_EXIST.
    """
    code = getattr(exc, "error_code", "")
    text = str(exc).lower()
    return code in _NOT_FOUND_CODES or (code == "INVALID_PARAMETER_VALUE" and "not found" in text)


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


def alias_history(conn: Any, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Recorded moves of ``name``'s aliases, oldest first (table ``model_alias_events``)."""
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


class Registry:
    """One MLflow tracking server's registry; create one per process (or per page session).

    ``tracking_uri`` None means MLflow's own default (its ``MLFLOW_TRACKING_URI``); callers pass
    :attr:`pricebot.settings.Settings.mlflow_tracking_uri`, which also reads ``.env``.
    """

    def __init__(self, tracking_uri: str | None = None, *, client: Any | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._client = client

    @property
    def client(self) -> Any:
        """The ``MlflowClient`` every call goes through (created on first use)."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(self.tracking_uri) if self.tracking_uri else MlflowClient()
        return self._client

    @property
    def where(self) -> str:
        return self.tracking_uri or "MLflow's default tracking URI"

    # -- health ---------------------------------------------------------------------------------

    def check(self, timeout: float = 5.0) -> None:
        """Fail fast, in seconds rather than MLflow's minutes of retries, when the registry
        cannot be used; the message says what to start or set."""
        uri = self.tracking_uri
        if uri is None:
            import mlflow

            uri = mlflow.get_tracking_uri()
        if not uri.startswith(("http://", "https://")):
            # A local store: opening it creates a SQLite schema, or refuses a file store that
            # MLflow 3 keeps in maintenance mode. Either way, find out before any work is done.
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException

            try:
                MlflowClient(uri).search_experiments(max_results=1)
            except MlflowException as exc:
                first = str(exc).strip().split(". ")[0]
                raise TrackingUnavailableError(
                    f"The MLflow tracking store {uri} cannot be used: {first}. Use a database "
                    "store such as sqlite:///mlflow.db, or a tracking server (MLFLOW_TRACKING_URI)."
                ) from None
            return
        import httpx

        hint = (
            "Start it (`pricebot up` runs one) or point MLFLOW_TRACKING_URI at a reachable "
            "server or a local store such as sqlite:///mlflow.db."
        )
        try:
            # Certificates only matter over TLS; loading the CA bundle for a plain-HTTP check
            # costs 0.1-0.3 s on every call.
            response = httpx.get(
                uri.rstrip("/") + "/health", timeout=timeout, verify=uri.startswith("https://")
            )
        except httpx.HTTPError as exc:
            raise TrackingUnavailableError(
                f"The MLflow tracking server at {uri} is unreachable "
                f"({type(exc).__name__}: {exc}). " + hint
            ) from None
        if response.status_code != 200:
            raise TrackingUnavailableError(
                f"The MLflow tracking server at {uri} answered /health with HTTP "
                f"{response.status_code}. " + hint
            )

    # -- looking up -----------------------------------------------------------------------------

    def alias_target(self, name: str, alias: str) -> Any | None:
        """The ``ModelVersion`` ``alias`` points at, or None when the alias (or the model) does
        not exist. Any other failure (the server is down) propagates."""
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def alias_versions(self, alias: str, names: list[str]) -> dict[str, str]:
        """The version ``alias`` points at for each of ``names`` that has it, from one search
        of the registry (paged by 1,000): what a poller following many models asks, instead of
        one look-up per model. Names that share no prefix are searched all the same."""
        wanted = set(names)
        prefix = _common_prefix(names)
        found: dict[str, str] = {}
        token = None
        while True:
            page = self.client.search_registered_models(
                filter_string=f"name LIKE '{prefix}%'" if prefix else None,
                max_results=1000,
                page_token=token,
            )
            for model in page:
                version = (model.aliases or {}).get(alias)
                if model.name in wanted and version is not None:
                    found[model.name] = str(version)
            token = page.token
            if not token:
                return found

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version number ``alias`` points at, or None."""
        found = self.alias_target(name, alias)
        return None if found is None else str(found.version)

    def has_champion(self, symbol: str, target: str) -> bool:
        return self.alias_version(model_name(symbol, target), CHAMPION) is not None

    def get_version(self, name: str, version: str | int) -> Any | None:
        """The ``ModelVersion``, or None when the model has no such version."""
        try:
            return self.client.get_model_version(name, str(version))
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def versions(self, name: str) -> list[Any]:
        """Every version of ``name``, newest first (empty when the model is not registered)."""
        try:
            found = self.client.search_model_versions(filter_string=f"name = '{name}'")
        except Exception as exc:
            if is_not_found(exc):
                return []
            raise
        return sorted(found, key=lambda mv: int(mv.version), reverse=True)

    def exists(self, name: str) -> bool:
        try:
            self.client.get_registered_model(name)
        except Exception as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    def run_metrics(self, run_id: str | None) -> dict[str, float]:
        """The run's metrics; empty when there is no run (a deleted run is not an error)."""
        if not run_id:
            return {}
        try:
            return dict(self.client.get_run(run_id).data.metrics)
        except Exception as exc:
            if is_not_found(exc):
                return {}
            raise

    def run_params(self, run_id: str | None) -> dict[str, str]:
        """The run's params (e.g. ``dataset.end``); empty when there is no such run."""
        if not run_id:
            return {}
        try:
            return dict(self.client.get_run(run_id).data.params)
        except Exception as exc:
            if is_not_found(exc):
                return {}
            raise

    def run_json(self, run_id: str, artifact: str) -> Any:
        """A JSON artifact of a run (e.g. ``feature_importance.json``)."""
        import mlflow.artifacts

        self._use_tracking_uri()
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact}")

    def load(self, name: str, version: str | int) -> Any:
        """The version as a pyfunc model, loaded by number: an alias can move again between a
        look-up and a load, and the loaded model must be the version reported."""
        import mlflow.pyfunc

        self._use_tracking_uri()
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")

    def download(self, name: str, version: str | int, destination: Path) -> Path:
        """The version's MLflow model directory, downloaded into ``destination`` (created):
        what :meth:`load` reads, kept where the caller wants it (the service's model cache)."""
        import mlflow.artifacts

        self._use_tracking_uri()
        destination.mkdir(parents=True, exist_ok=True)
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(destination)
            )
        )

    def _use_tracking_uri(self) -> None:
        # ``models:/`` and ``runs:/`` URIs resolve through MLflow's process-wide tracking URI,
        # not a client's: point it at this registry (a process talks to one registry).
        if self.tracking_uri:
            import mlflow

            if mlflow.get_tracking_uri() != self.tracking_uri:
                mlflow.set_tracking_uri(self.tracking_uri)

    # -- changing -------------------------------------------------------------------------------

    def move_alias(
        self,
        database_url: str | None,
        name: str,
        alias: str,
        version: str | int,
        *,
        reason: str,
        moved_by: str | None = None,
    ) -> AliasEvent:
        """Point ``alias`` of model ``name`` at ``version``, recording who, when and why.

        The event goes to table ``model_alias_events`` (when ``database_url`` is given) and onto
        the version as tags ``<alias>.moved_at``, ``<alias>.moved_by``, ``<alias>.reason``. The
        database row is written in a transaction that commits only after MLflow accepted the
        move, so a refused move leaves no history behind.
        """
        version = str(version)
        if not reason.strip():
            raise AliasMoveError(
                "A reason is needed to move an alias (e.g. --reason 'beat baselines')"
            )
        if self.get_version(name, version) is None:
            raise AliasMoveError(f"Model {name} has no version {version}.")
        previous = self.alias_version(name, alias)
        event = AliasEvent(
            name, alias, version, previous, datetime.now(UTC), moved_by or default_actor(), reason
        )

        def apply() -> None:
            self.client.set_registered_model_alias(name, alias, version)
            for key, value in (
                ("moved_at", event.moved_at.isoformat(timespec="seconds")),
                ("moved_by", event.moved_by),
                ("reason", event.reason[:4000]),
                ("previous_version", previous or ""),
            ):
                self.client.set_model_version_tag(name, version, f"{alias}.{key}", value)

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

    def register_challenger(
        self,
        model_uri: str,
        name: str,
        tags: dict[str, str],
        *,
        database_url: str | None,
        reason: str,
        moved_by: str,
    ) -> Any:
        """Create a version with its tags and point ``challenger`` at it, or leave no trace: if
        the alias move fails the version is deleted again (and the registered model, if this
        was its first version)."""
        import mlflow

        existed = self.exists(name)
        self._use_tracking_uri()
        version = mlflow.register_model(model_uri, name, tags=tags)
        try:
            self.move_alias(database_url, name, CHALLENGER, version.version,
                            reason=reason, moved_by=moved_by)  # fmt: skip
        except BaseException:
            self.client.delete_model_version(name, version.version)
            if not existed:
                self.client.delete_registered_model(name)
            raise
        return version

    # -- listing --------------------------------------------------------------------------------

    def list_models(self, prefix: str = "pricebot-") -> list[ModelSummary]:
        """Registered models named ``<prefix>...`` with their versions, aliases and headline
        metrics (read from each version's run)."""
        summaries = []
        for model in self.client.search_registered_models(filter_string=f"name LIKE '{prefix}%'"):
            aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
            by_version: dict[str, list[str]] = {}
            for alias, version in aliases.items():
                by_version.setdefault(version, []).append(alias)
            summary = ModelSummary(model.name, aliases)
            for mv in self.versions(model.name):
                run_metrics = self.run_metrics(mv.run_id)
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
                        {k: run_metrics[k] for k in HEADLINE_METRICS if k in run_metrics},
                        created,
                        mv.run_id,
                    )
                )
            summaries.append(summary)
        return sorted(summaries, key=lambda s: s.name)
