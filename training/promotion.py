"""Registration and promotion: the winner becomes ``challenger``; ``champion`` only if it earns it
(the rule is :func:`pricebot.evaluation.decide_promotion`).

Nothing is half-registered: the model version is created only after everything for it is logged,
and if tagging or the alias move fails the version is deleted again (and the registered model,
if this was its first version).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient

from pricebot.dataset import Dataset
from pricebot.evaluation import Fold, score_fold
from pricebot.registry import CHALLENGER, CHAMPION, alias_version, move_alias


@dataclass
class ChampionScore:
    version: str | None
    scored: bool
    value: float | None
    note: str


def score_champion(client: MlflowClient, name: str, dataset: Dataset, fold: Fold,
                   fee: float) -> ChampionScore:  # fmt: skip
    """The current champion's net pool value on the newest fold's test rows.

    It may have been trained on part of this window (an older run's data overlaps), which favours
    it: a challenger has to beat a champion that possibly saw the test, never the other way.
    """
    version = alias_version(client, name, CHAMPION)
    if version is None:
        return ChampionScore(None, True, None, "no champion yet")
    tags = client.get_model_version(name, version).tags or {}
    if tags.get("feature_set") not in (None, dataset.feature_set):
        note = f"champion v{version} uses feature set {tags.get('feature_set')}"
        return ChampionScore(version, False, None, note)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        x = dataset.features.iloc[fold.test]
        pred = np.asarray(model.predict(x), dtype="float64").ravel()
    except Exception as exc:  # any failure to load or run it means: a person decides
        return ChampionScore(version, False, None, f"champion v{version} failed to score: {exc}")
    metrics, _, _ = score_fold(
        dataset.times[fold.test],
        dataset.label.to_numpy()[fold.test],
        dataset.forward_return.to_numpy()[fold.test],
        pred,
        dataset.spec,
        fee=fee,
    )
    return ChampionScore(version, True, metrics["pool_value_net"], f"champion v{version} scored")


def register_challenger(
    client: MlflowClient,
    model_uri: str,
    name: str,
    tags: dict[str, str],
    *,
    database_url: str | None,
    reason: str,
    moved_by: str,
) -> Any:
    """Create the version with its tags and point ``challenger`` at it, or leave no trace."""
    existed = True
    try:
        client.get_registered_model(name)
    except Exception:
        existed = False
    version = mlflow.register_model(model_uri, name, tags=tags)
    try:
        move_alias(client, database_url, name, CHALLENGER, version.version,
                   reason=reason, moved_by=moved_by)  # fmt: skip
    except BaseException:
        client.delete_model_version(name, version.version)
        if not existed:
            client.delete_registered_model(name)
        raise
    return version


def promote_champion(client: MlflowClient, name: str, version: str, *, database_url: str | None,
                     reason: str, moved_by: str) -> None:  # fmt: skip
    move_alias(client, database_url, name, CHAMPION, version, reason=reason, moved_by=moved_by)
