"""XGBoost: gradient-boosted trees, histogram method; importance from its own TreeSHAP."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pricebot.targets import TargetSpec
from pricebot_training.candidates import CandidatePlugin, threads


def defaults(spec: TargetSpec) -> dict[str, Any]:
    return {
        "n_estimators": 200,
        "max_depth": 4,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 10.0,
        "reg_lambda": 1.0,
    }


def search_space(trial: Any, spec: TargetSpec) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, step=25),
        "max_depth": trial.suggest_int("max_depth", 2, 7),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def build(spec: TargetSpec, params: dict[str, Any], seed: int) -> Any:
    import xgboost as xgb

    common = {"n_jobs": threads(), "tree_method": "hist", "random_state": seed, **params}
    if spec.is_classification:
        return xgb.XGBClassifier(objective="binary:logistic", eval_metric="logloss", **common)
    return xgb.XGBRegressor(objective="reg:squarederror", **common)


def importance(estimator: Any, sample: pd.DataFrame) -> tuple[np.ndarray, str]:
    import xgboost as xgb

    matrix = xgb.DMatrix(sample.to_numpy(dtype="float32"), feature_names=list(sample.columns))
    contribs = estimator.get_booster().predict(matrix, pred_contribs=True)
    # the last column is the bias
    return np.abs(contribs[:, :-1]).mean(axis=0), "xgboost pred_contribs (TreeSHAP), mean |SHAP|"


CANDIDATE = CandidatePlugin(
    name="xgboost",
    build=build,
    defaults=defaults,
    search_space=search_space,
    importance=importance,
    requirements=("xgboost", "scikit-learn"),
    imports=("xgboost",),
    trial_weight=3.0,
    order=50,
)
