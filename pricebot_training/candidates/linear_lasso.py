"""Lasso (L1: sparse coefficients, picks a few features); for classifiers, L1 logistic
regression."""

from __future__ import annotations

from typing import Any

from pricebot.targets import TargetSpec
from pricebot_training.candidates import CandidatePlugin, linear_importance, scaled, scaled_target


def defaults(spec: TargetSpec) -> dict[str, Any]:
    # On a standardised target an alpha of 0.02 keeps a handful of features; for classifiers
    # C = 1 / alpha on the log loss.
    return {"alpha": 10.0} if spec.is_classification else {"alpha": 0.02}


def search_space(trial: Any, spec: TargetSpec) -> dict[str, Any]:
    if spec.is_classification:
        return {"alpha": trial.suggest_float("alpha", 1e-1, 1e4, log=True)}
    return {"alpha": trial.suggest_float("alpha", 1e-4, 0.5, log=True)}


def build(spec: TargetSpec, params: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import Lasso, LogisticRegression

    alpha = float(params["alpha"])
    if spec.is_classification:
        model = LogisticRegression(C=1.0 / alpha, l1_ratio=1.0, solver="saga", max_iter=2000,
                                   random_state=seed)  # fmt: skip
        return scaled(model)
    return scaled_target(scaled(Lasso(alpha=alpha, max_iter=5000, random_state=seed)))


CANDIDATE = CandidatePlugin(
    name="lasso",
    classifier_name="logistic_l1",
    build=build,
    defaults=defaults,
    search_space=search_space,
    importance=linear_importance,
    requirements=("scikit-learn",),
    imports=("sklearn",),
    order=20,
)
