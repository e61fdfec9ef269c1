"""CatBoost: gradient-boosted oblivious trees (the seed study's best model); importance from
its own SHAP values. An extra of its own (``pricebot[catboost]``): its wheel is about 100 MB."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pricebot.targets import TargetSpec
from pricebot_training.candidates import CandidatePlugin, threads


def defaults(spec: TargetSpec) -> dict[str, Any]:
    # Oblivious trees of depth 6 fit in about the time XGBoost's depth 4 does on 2 cores.
    return {"iterations": 200, "depth": 6, "learning_rate": 0.05, "l2_leaf_reg": 3.0}


def search_space(trial: Any, spec: TargetSpec) -> dict[str, Any]:
    return {
        "iterations": trial.suggest_int("iterations", 50, 400, step=25),
        "depth": trial.suggest_int("depth", 3, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 0.1, 30.0, log=True),
        "random_strength": trial.suggest_float("random_strength", 0.1, 10.0, log=True),
    }


def build(spec: TargetSpec, params: dict[str, Any], seed: int) -> Any:
    import catboost

    # allow_writing_files: no catboost_info/ directory in the working directory.
    common = {"thread_count": threads(), "random_seed": seed, "verbose": False,
              "allow_writing_files": False, **params}  # fmt: skip
    if spec.is_classification:
        return catboost.CatBoostClassifier(loss_function="Logloss", **common)
    return catboost.CatBoostRegressor(loss_function="RMSE", **common)


def importance(estimator: Any, sample: pd.DataFrame) -> tuple[np.ndarray, str]:
    import catboost

    shap = estimator.get_feature_importance(catboost.Pool(sample), type="ShapValues")
    return np.abs(np.asarray(shap)[:, :-1]).mean(axis=0), "catboost ShapValues, mean |SHAP|"


CANDIDATE = CandidatePlugin(
    name="catboost",
    build=build,
    defaults=defaults,
    search_space=search_space,
    importance=importance,
    requirements=("catboost", "scikit-learn"),
    imports=("catboost",),
    trial_weight=3.0,
    install_hint="install pricebot[catboost], e.g. `uv sync --extra catboost`",
    order=70,
)
