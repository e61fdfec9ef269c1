"""The current champion's score on the newest fold, for the promotion decision (the rule is
:func:`pricebot.evaluation.decide_promotion`; registration and alias moves go through
:class:`pricebot.registry.Registry`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pricebot.dataset import Dataset
from pricebot.evaluation import Fold, score_fold
from pricebot.registry import CHAMPION, Registry


@dataclass
class ChampionScore:
    version: str | None
    scored: bool
    value: float | None
    note: str


def score_champion(registry: Registry, name: str, dataset: Dataset, fold: Fold,
                   fee: float) -> ChampionScore:  # fmt: skip
    """The current champion's net pool value on the newest fold's test rows.

    It may have been trained on part of this window (an older run's data overlaps), which favours
    it: a challenger has to beat a champion that possibly saw the test, never the other way.
    """
    version = registry.alias_version(name, CHAMPION)
    if version is None:
        return ChampionScore(None, True, None, "no champion yet")
    tags = registry.get_version(name, version).tags or {}
    if tags.get("feature_set") not in (None, dataset.feature_set):
        note = f"champion v{version} uses feature set {tags.get('feature_set')}"
        return ChampionScore(version, False, None, note)
    try:
        model = registry.load(name, version)
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
