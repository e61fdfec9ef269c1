"""LightGBM: leaf-wise gradient-boosted trees; importance from its own TreeSHAP
(``pred_contrib``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pricebot.targets import TargetSpec
from pricebot_training.candidates import CandidatePlugin


def defaults(spec: TargetSpec) -> dict[str, Any]:
    return {
        "n_estimators": 200,
        "num_leaves": 15,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "min_child_samples": 50,
        "reg_lambda": 1.0,
    }


def search_space(trial: Any, spec: TargetSpec) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, step=25),
        "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 300, log=True),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def build(spec: TargetSpec, params: dict[str, Any], seed: int) -> Any:
    import lightgbm as lgb

    # One thread, not threads(): LightGBM opens many short OpenMP regions per tree, and under
    # the job's passive OpenMP wait policy (pricebot_training/__init__.py, which XGBoost needs)
    # each one pays for waking a sleeping thread. Measured on 2 cores (33k rows x 30 columns,
    # 300 trees, load 1.3): 1 thread 0.82 s a fit, 2 threads 1.56 s (0.47 s only with active
    # waiting). The fitted model is the same (equal predictions with 1 and 2 threads).
    common = {"n_jobs": 1, "random_state": seed, "verbosity": -1, **params}
    if spec.is_classification:
        return lgb.LGBMClassifier(objective="binary", **common)
    return lgb.LGBMRegressor(objective="regression", **common)


def importance(estimator: Any, sample: pd.DataFrame) -> tuple[np.ndarray, str]:
    contribs = np.asarray(estimator.predict(sample, pred_contrib=True))
    return np.abs(contribs[:, :-1]).mean(axis=0), "lightgbm pred_contrib (TreeSHAP), mean |SHAP|"


CANDIDATE = CandidatePlugin(
    name="lightgbm",
    build=build,
    defaults=defaults,
    search_space=search_space,
    importance=importance,
    requirements=("lightgbm", "scikit-learn"),
    imports=("lightgbm",),
    trial_weight=3.0,
    order=60,
)
