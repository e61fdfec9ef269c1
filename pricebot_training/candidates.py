"""The candidate models: XGBoost (the main one, tuned), Ridge and Huber (what held up best in the
original study), each behind one ``fit`` so the walk-forward loop treats them alike.

Linear candidates are scikit-learn pipelines with scaling (the features mix prices, ratios and
0..100 oscillators). For classification targets the linear candidate is an L2 logistic
regression and Huber has no counterpart.

Classifiers are fitted with balanced class weights by default (each class weighs half of the
training set): a rare event (a 2% rise in a day) would otherwise be learnt as "never". The
price is calibration: the probabilities centre on 0.5 rather than on the base rate, which the
calibration plot shows; the decision threshold is chosen on the selection folds either way.
``class_weight="none"`` fits unweighted, calibrated probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from pricebot.errors import DegenerateTargetError
from pricebot.targets import TargetSpec

ClassWeight = Literal["balanced", "none"]
XGB_THREADS = 2
XGB_DEFAULTS: dict[str, Any] = {
    "n_estimators": 200,
    "max_depth": 4,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 10.0,
    "reg_lambda": 1.0,
}


@dataclass(frozen=True)
class Candidate:
    """A named way to build an unfitted estimator from hyper-parameters."""

    name: str
    build: Callable[[dict[str, Any]], Any]
    params: dict[str, Any] = field(default_factory=dict)


def xgboost_estimator(spec: TargetSpec, params: dict[str, Any], seed: int) -> Any:
    import xgboost as xgb

    common = {"n_jobs": XGB_THREADS, "tree_method": "hist", "random_state": seed, **params}
    if spec.is_classification:
        return xgb.XGBClassifier(objective="binary:logistic", eval_metric="logloss", **common)
    return xgb.XGBRegressor(objective="reg:squarederror", **common)


def _ridge(spec: TargetSpec, params: dict[str, Any]) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if spec.is_classification:
        model = LogisticRegression(C=1.0 / params.get("alpha", 1.0), max_iter=1000)
        return make_pipeline(StandardScaler(), model)
    return _scaled_target(make_pipeline(StandardScaler(), Ridge(alpha=params.get("alpha", 1.0))))


def _scaled_target(pipeline: Any) -> Any:
    """Fit on the standardised target: returns are ~0.01, which leaves Huber's scale estimate
    and the solvers' tolerances badly conditioned (Huber did not converge in 500 iterations)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(regressor=pipeline, transformer=StandardScaler())


def _huber(params: dict[str, Any]) -> Any:
    from sklearn.linear_model import HuberRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Returns are fat-tailed: Huber's loss keeps a few crash minutes from steering the fit.
    # Several v1 features are near-collinear (price-unit and relative MA gaps): some L2
    # (alpha) keeps L-BFGS well conditioned (converges in ~90 iterations instead of >300) and
    # the coefficients of twin features from blowing up in opposite directions.
    model = HuberRegressor(
        epsilon=params.get("epsilon", 1.35),
        alpha=params.get("alpha", 10.0),
        max_iter=300,
        tol=1e-4,
    )
    return _scaled_target(make_pipeline(StandardScaler(), model))


def candidates(spec: TargetSpec, seed: int) -> list[Candidate]:
    """The fixed-parameter candidates; XGBoost's parameters come from tuning."""
    found = [
        Candidate(
            "ridge" if not spec.is_classification else "logistic",
            lambda p: _ridge(spec, p),
            {"alpha": 10.0},  # shrinks the near-collinear twin features (see _huber)
        )
    ]
    if not spec.is_classification:
        found.append(Candidate("huber", _huber, {"epsilon": 1.35, "alpha": 10.0}))
    return found


def xgboost_candidate(spec: TargetSpec, params: dict[str, Any], seed: int) -> Candidate:
    merged = {**XGB_DEFAULTS, **params}
    return Candidate("xgboost", lambda p: xgboost_estimator(spec, p, seed), merged)


def fit(
    candidate: Candidate,
    features: pd.DataFrame,
    label: pd.Series,
    spec: TargetSpec,
    class_weight: ClassWeight = "balanced",
) -> Any:
    """Fit a fresh estimator; a classification target with one class is a clear error."""
    estimator = candidate.build(candidate.params)
    y = label.to_numpy()
    if not spec.is_classification:
        estimator.fit(features, y)
        return estimator
    classes = np.unique(y)
    if len(classes) < 2:
        happened = "always" if classes.size and classes[0] == 1.0 else "never"
        raise DegenerateTargetError(
            f"The event of target {spec.name} {happened} happens in a training set of "
            f"{len(label)} rows: choose a threshold that happens sometimes (e.g. a smaller "
            "percentage) or a longer date range."
        )
    if class_weight == "none":
        estimator.fit(features, y)
        return estimator
    weights = balanced_weights(y)
    if hasattr(estimator, "steps"):  # a Pipeline routes the weights to its last step
        estimator.fit(features, y, **{f"{estimator.steps[-1][0]}__sample_weight": weights})
    else:
        estimator.fit(features, y, sample_weight=weights)
    return estimator


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-row weights that give each class the same total weight (scikit-learn's "balanced")."""
    events = np.asarray(y) >= 0.5
    n, positives = len(events), int(events.sum())
    return np.where(events, n / (2.0 * positives), n / (2.0 * (n - positives)))


def feature_importance(estimator: Any, features: pd.DataFrame, max_rows: int = 1000) -> dict:
    """Mean |contribution| per feature: XGBoost's own SHAP values (``pred_contribs``) for trees;
    for linear pipelines the exact linear SHAP, ``|coef * standardised value|``.
    """
    sample = features.iloc[:: max(1, len(features) // max_rows)]
    names = list(features.columns)
    if hasattr(estimator, "get_booster"):
        import xgboost as xgb

        contribs = estimator.get_booster().predict(
            xgb.DMatrix(sample.to_numpy(dtype="float32"), feature_names=names), pred_contribs=True
        )
        values = np.abs(contribs[:, :-1]).mean(axis=0)  # the last column is the bias
        method = "xgboost pred_contribs (TreeSHAP), mean |SHAP|"
    else:
        pipeline, target_scale = estimator, 1.0
        if hasattr(estimator, "regressor_"):  # TransformedTargetRegressor
            pipeline, target_scale = estimator.regressor_, float(estimator.transformer_.scale_[0])
        scaler, model = pipeline[0], pipeline[-1]
        scaled = scaler.transform(sample)
        values = np.abs(scaled * np.ravel(model.coef_)).mean(axis=0) * target_scale
        method = "linear SHAP on standardised features, mean |coef * z|"
    ranked = sorted(zip(names, values.tolist(), strict=True), key=lambda kv: -kv[1])
    return {"method": method, "rows": len(sample), "mean_abs": dict(ranked)}
