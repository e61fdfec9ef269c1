"""The model versions this machine served, kept on disk so a restart serves before the registry.

Why: on a warm ``pricebot up`` the MLflow server takes several seconds to answer, and a service
that can only load its champions from the registry answers nothing until then. Each version the
service loads is kept here (its MLflow model directory, as downloaded, plus a manifest); each
alias it serves is remembered per (symbol, target). A service that starts while the registry
cannot be asked serves what this machine served last for that alias, says so (slot state
``cached`` in /models), and follows the alias as usual once the registry answers.

Layout under the cache directory (``PRICEBOT_MODEL_CACHE_DIR``)::

    versions/<model name>/<version>/manifest.json   what the service needs to describe it
    versions/<model name>/<version>/model/          the MLflow model directory
    served/<alias>/<SYMBOL>-<target>.json            {"name", "version"} last served for the alias
    .staging/<random>/                               an entry being written

An entry is written in a staging directory and renamed into place, so a reader sees a whole
entry or none; a pointer is replaced atomically (``os.replace``). The manifest lists every file
of the model directory with its SHA-256: an entry whose manifest is unreadable, whose files
differ from it, or whose model does not load is *damaged*: it is warned about and never served
(:class:`pricebot.errors.DamagedCacheEntryError`). A version number names immutable artifacts in
the registry, so an entry that exists already is kept as it is.

Nothing here asks the registry; :mod:`pricebot.champion` decides when the cache is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pricebot.errors import DamagedCacheEntryError

#: Bump when the manifest's meaning changes: entries of another format are not served.
FORMAT = 1
MANIFEST = "manifest.json"
MODEL_DIR = "model"
#: A staging directory older than this was left by a process that died while writing it.
STALE_STAGING_SECONDS = 3600.0

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe(part: str) -> str:
    """A path component from a name the registry or the settings gave (never ``..``)."""
    cleaned = _UNSAFE.sub("_", part)
    return cleaned if cleaned.strip(".") else f"_{cleaned}"


@dataclass(frozen=True)
class CacheEntry:
    """One cached model version and what the service needs to serve and describe it."""

    name: str
    version: str
    alias: str
    symbol: str
    target: str
    run_id: str | None
    feature_set: str
    market: str | None
    tags: dict[str, str]
    metrics: dict[str, float]
    feature_importance: dict[str, float] | None
    stored_at: datetime
    path: Path = field(compare=False)

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR


class ModelCache:
    """The cache directory; safe to share between the workers of one service (and between
    services of one machine): writes are renames, a lost race keeps the other writer's entry."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory on the cache's file system to download a model into; removed on
        exit unless :meth:`store` moved it into place."""
        area = self.root / ".staging"
        area.mkdir(parents=True, exist_ok=True)
        self._sweep(area)
        staged = area / uuid.uuid4().hex
        staged.mkdir()
        try:
            yield staged
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def store(
        self,
        staged: Path,
        *,
        name: str,
        version: str,
        alias: str,
        symbol: str,
        target: str,
        run_id: str | None,
        tags: dict[str, str],
        metrics: dict[str, float],
        feature_importance: dict[str, float] | None,
    ) -> CacheEntry:
        """Keep the model directory ``staged / "model"`` as version ``version`` of ``name``.

        The manifest is written into ``staged``, which is then renamed into place. If the entry
        exists already and is whole, it is kept (the other copy is the same version); a damaged
        one is replaced."""
        manifest = {
            "format": FORMAT,
            "name": name,
            "version": str(version),
            "alias": alias,
            "symbol": symbol,
            "target": target,
            "run_id": run_id,
            "feature_set": tags.get("feature_set", "v1"),
            "market": tags.get("market"),
            "tags": dict(tags),
            "metrics": dict(metrics),
            "feature_importance": feature_importance,
            "stored_at": datetime.now(UTC).isoformat(),
            "files": _digests(staged / MODEL_DIR),
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        place = self._entry_path(name, str(version))
        place.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staged, place)
        except OSError:  # there already: another worker (or an earlier run) kept it
            try:
                return self.entry(name, str(version))
            except DamagedCacheEntryError:
                aside = place.with_name(f".{place.name}.damaged-{uuid.uuid4().hex[:8]}")
                os.rename(place, aside)
                shutil.rmtree(aside, ignore_errors=True)
                os.rename(staged, place)
        return self.entry(name, str(version))

    def remember_served(
        self, symbol: str, target: str, alias: str, name: str, version: str
    ) -> None:
        """Record that ``name`` version ``version`` now serves (symbol, target) for ``alias``."""
        pointer = self._pointer_path(symbol, target, alias)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        temporary = pointer.with_name(f".{pointer.name}.{uuid.uuid4().hex[:8]}")
        temporary.write_text(json.dumps({"name": name, "version": str(version)}))
        os.replace(temporary, pointer)

    # -- reading -----------------------------------------------------------------------------

    def served(self, symbol: str, target: str, alias: str) -> CacheEntry | None:
        """The entry last served for (symbol, target) under ``alias``, checked whole; None when
        this machine never served one. Raises :class:`DamagedCacheEntryError` when the record
        or the entry cannot be trusted."""
        pointer = self._pointer_path(symbol, target, alias)
        try:
            text = pointer.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DamagedCacheEntryError(f"{pointer} cannot be read ({exc})") from None
        try:
            served = json.loads(text)
            name, version = str(served["name"]), str(served["version"])
        except (ValueError, KeyError, TypeError):
            raise DamagedCacheEntryError(f"{pointer} is not a served-model record") from None
        entry = self.entry(name, version)
        if entry.alias != alias or (entry.symbol, entry.target) != (symbol, target):
            # A pooled model's entry serves several symbols: its manifest names the slot that
            # stored it first. Name and version are what must agree.
            entry = _with_slot(entry, symbol, target, alias)
        return entry

    def entry(self, name: str, version: str) -> CacheEntry:
        """Version ``version`` of ``name``, its files checked against the manifest."""
        path = self._entry_path(name, version)
        where = f"cached {name} version {version} ({path})"
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise DamagedCacheEntryError(f"{where} has no manifest") from None
        except (OSError, ValueError) as exc:
            raise DamagedCacheEntryError(f"{where}: unreadable manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise DamagedCacheEntryError(f"{where}: manifest of an unknown format")
        if (manifest.get("name"), manifest.get("version")) != (name, version):
            raise DamagedCacheEntryError(
                f"{where}: the manifest names {manifest.get('name')} version "
                f"{manifest.get('version')}"
            )
        expected = manifest.get("files")
        if not isinstance(expected, dict) or not expected:
            raise DamagedCacheEntryError(f"{where}: the manifest lists no files")
        try:
            found = _digests(path / MODEL_DIR)
        except OSError as exc:
            raise DamagedCacheEntryError(f"{where}: model files unreadable ({exc})") from None
        if found != expected:
            missing = sorted(set(expected) - set(found))
            extra = sorted(set(found) - set(expected))
            changed = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
            raise DamagedCacheEntryError(
                f"{where}: its files differ from the manifest (missing {missing[:3]}, changed "
                f"{changed[:3]}, unexpected {extra[:3]})"
            )
        try:
            return CacheEntry(
                name=name,
                version=version,
                alias=str(manifest["alias"]),
                symbol=str(manifest["symbol"]),
                target=str(manifest["target"]),
                run_id=manifest.get("run_id"),
                feature_set=str(manifest["feature_set"]),
                market=manifest.get("market"),
                tags={str(k): str(v) for k, v in dict(manifest.get("tags") or {}).items()},
                metrics={str(k): float(v) for k, v in dict(manifest.get("metrics") or {}).items()},
                feature_importance=(
                    None
                    if manifest.get("feature_importance") is None
                    else {str(k): float(v) for k, v in dict(manifest["feature_importance"]).items()}
                ),
                stored_at=datetime.fromisoformat(str(manifest["stored_at"])),
                path=path,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DamagedCacheEntryError(
                f"{where}: manifest field missing or wrong ({exc})"
            ) from None

    # -- paths -------------------------------------------------------------------------------

    def _entry_path(self, name: str, version: str) -> Path:
        return self.root / "versions" / _safe(name) / _safe(str(version))

    def _pointer_path(self, symbol: str, target: str, alias: str) -> Path:
        return self.root / "served" / _safe(alias) / f"{_safe(symbol.upper())}-{_safe(target)}.json"

    def _sweep(self, area: Path) -> None:
        """Remove staging directories that a dead process left behind (old ones only: another
        worker may be writing a fresh one now)."""
        cutoff = time.time() - STALE_STAGING_SECONDS
        with contextlib.suppress(OSError):
            for child in area.iterdir():
                with contextlib.suppress(OSError):
                    if child.stat().st_mtime < cutoff:
                        shutil.rmtree(child, ignore_errors=True)


def load_model(entry: CacheEntry) -> Any:
    """The entry's model as a pyfunc, loaded from its directory (no registry needed). A model
    that does not load makes the entry damaged."""
    import mlflow.pyfunc

    try:
        return mlflow.pyfunc.load_model(str(entry.model_dir))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DamagedCacheEntryError(
            f"cached {entry.name} version {entry.version} ({entry.path}) does not load "
            f"({type(exc).__name__}: {first})"
        ) from exc


def _with_slot(entry: CacheEntry, symbol: str, target: str, alias: str) -> CacheEntry:
    from dataclasses import replace

    return replace(entry, symbol=symbol, target=target, alias=alias)


def _digests(directory: Path) -> dict[str, str]:
    """SHA-256 of every file under ``directory``, by path relative to it (``/``-separated)."""
    found: dict[str, str] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256")
            found[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return found
