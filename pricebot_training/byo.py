"""Bring your own model: ``pricebot register MODEL.pkl --symbol S --target T``.

A model trained elsewhere comes in as a pickled **scikit-learn-API estimator** (an object with
``fit`` and ``predict``, and ``predict_proba`` for classification targets; a scikit-learn
Pipeline, an XGBoost/LightGBM/CatBoost sklearn wrapper, anything ``sklearn.base.clone`` can
copy). Why this and not an MLflow pyfunc: a fitted pyfunc can only be scored, and the rows it
would be scored on are rows it may have been trained on; an estimator can be **refitted on each
walk-forward fold's training rows**, so it is evaluated exactly as pricebot's own candidates are,
with nothing it saw in any test. Its fitted state is used only for the signature check.

The checks, before any work:

- it is an estimator (``fit``, ``predict``; ``predict_proba`` for an event target) that clones;
- its signature matches the feature set: ``feature_names_in_`` (set when fitted on a DataFrame)
  must be the model columns in order (``lineage.json`` of ``pricebot dataset export`` lists
  them: the feature columns, and for a pool the ``symbol=<S>`` indicators after them), or
  ``n_features_in_`` their number.

It then runs as the only model candidate of a normal training run (the baselines and cash as
rivals, the same folds, the same gate) and is registered as ``challenger`` of the symbol's
(or pool's) model; the gate promotes it only if it earns it. The version is tagged
``origin=external`` and ``source.sha256`` (of the pickle); its requirements are the
distributions its classes come from, at the installed versions, plus ``--requirement`` lines.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pricebot.errors import ModelSignatureError
from pricebot.targets import TargetSpec
from pricebot_training.candidates import (
    CandidatePlugin,
    discover,
    importance_sample,
)


def load_estimator(path: Path) -> Any:
    """The pickled estimator at ``path`` (a file you trust: unpickling runs its code)."""
    path = Path(path)
    if not path.is_file():
        raise ModelSignatureError(f"No model file at {path}: give the path of a pickled estimator.")
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301  (the user's own file, by design)
    except (pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError) as exc:
        raise ModelSignatureError(
            f"{path} does not unpickle ({type(exc).__name__}: {exc}). Save the estimator with "
            "pickle.dump (or joblib.dump) in an environment with the same libraries installed."
        ) from None


def check_estimator(estimator: Any, columns: list[str], spec: TargetSpec) -> None:
    """The checks of the module docstring; a clear error naming the difference."""
    from sklearn.base import clone

    needed = ["fit", "predict", *(["predict_proba"] if spec.is_classification else [])]
    lacking = [m for m in needed if not callable(getattr(estimator, m, None))]
    if lacking:
        raise ModelSignatureError(
            f"The model ({type(estimator).__name__}) has no {', '.join(lacking)}: register an "
            f"estimator with the scikit-learn API ({', '.join(needed)})."
        )
    try:
        clone(estimator)
    except Exception as exc:
        raise ModelSignatureError(
            f"The model ({type(estimator).__name__}) cannot be cloned for refitting on each "
            f"fold ({exc}); it needs get_params/set_params like scikit-learn estimators."
        ) from None
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        names = [str(n) for n in names]
        if names != columns:
            missing = [c for c in columns if c not in names]
            extra = [c for c in names if c not in columns]
            order = "" if missing or extra else " (the same columns in another order)"
            raise ModelSignatureError(
                f"The model was fitted on other columns than the feature set's {len(columns)}"
                f"{order}: missing {missing[:5]}, unexpected {extra[:5]}. Fit it on the "
                "model_columns of `pricebot dataset export`'s lineage.json, in that order."
            )
        return
    count = getattr(estimator, "n_features_in_", None)
    if count is not None and int(count) != len(columns):
        raise ModelSignatureError(
            f"The model takes {count} features; the feature set has {len(columns)} model "
            "columns (listed in lineage.json of `pricebot dataset export`)."
        )


def distributions_of(estimator: Any) -> list[str]:
    """The installed distributions the estimator's classes come from (e.g. scikit-learn)."""
    modules: set[str] = set()

    def walk(obj: Any) -> None:
        modules.add(type(obj).__module__.split(".")[0])
        for _, step in getattr(obj, "steps", []) or []:
            walk(step)
        for attr in ("regressor", "estimator", "base_estimator"):
            inner = getattr(obj, attr, None)
            if inner is not None and hasattr(inner, "fit"):
                walk(inner)

    walk(estimator)
    mapping = importlib.metadata.packages_distributions()
    found = sorted({d for m in modules for d in mapping.get(m, []) if m not in ("builtins",)})
    return found


def generic_importance(estimator: Any, sample: pd.DataFrame) -> tuple[np.ndarray, str]:
    """A family's own TreeSHAP when it is one of ours; the estimator's own
    ``feature_importances_``; else permutation importance on the sample (model-agnostic)."""
    for family in discover():
        if family.missing() is None and type(estimator).__module__.split(".")[0] in (
            m for m in family.imports if m != "sklearn"
        ):
            return family.importance(estimator, sample)
    own = getattr(estimator, "feature_importances_", None)
    if own is not None and len(own) == sample.shape[1]:
        return np.abs(np.asarray(own, dtype="float64")), "the model's own feature_importances_"
    from sklearn.inspection import permutation_importance

    baseline = estimator.predict(sample)
    result = permutation_importance(estimator, sample, baseline, n_repeats=3, random_state=0,
                                    scoring="neg_mean_squared_error")  # fmt: skip
    return np.abs(result.importances_mean), "permutation importance against its own predictions"


def external_family(
    path: Path, spec: TargetSpec, columns: list[str], requirements: list[str], label: str | None
) -> tuple[CandidatePlugin, dict[str, str]]:
    """The estimator at ``path`` as a candidate of its own, and the tags its version carries."""
    from sklearn.base import clone

    estimator = load_estimator(path)
    check_estimator(estimator, columns, spec)
    name = "byo_" + re.sub(r"[^a-z0-9_]+", "_", (label or Path(path).stem).lower()).strip("_")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    pins = [*distributions_of(estimator), *requirements]
    family = CandidatePlugin(
        name=name,
        classifier_name=name,
        build=lambda s, params, seed: clone(estimator),
        defaults=lambda s: {},
        importance=generic_importance,
        requirements=tuple(dict.fromkeys(pins)),
        order=0,
    )
    tags = {"origin": "external", "source.file": Path(path).name[:200], "source.sha256": digest}
    return family, tags


__all__ = ["check_estimator", "external_family", "importance_sample", "load_estimator"]
