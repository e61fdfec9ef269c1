"""Huber regression (squared loss near zero, linear in the tails: a few crash minutes do not
steer the fit); for classifiers, a linear model with the modified Huber loss, the classifier
that is robust in the same way and still gives probabilities."""

from __future__ import annotations

from typing import Any

from pricebot.targets import TargetSpec
from pricebot_training.candidates import CandidatePlugin, linear_importance, scaled, scaled_target


def defaults(spec: TargetSpec) -> dict[str, Any]:
    if spec.is_classification:
        return {"alpha": 1e-3}
    # Some L2 (alpha) keeps L-BFGS well conditioned on the near-collinear v1 features
    # (converges in ~90 iterations instead of >300).
    return {"epsilon": 1.35, "alpha": 10.0}


def search_space(trial: Any, spec: TargetSpec) -> dict[str, Any]:
    if spec.is_classification:
        return {"alpha": trial.suggest_float("alpha", 1e-5, 1e-1, log=True)}
    return {
        "epsilon": trial.suggest_float("epsilon", 1.05, 3.0),
        "alpha": trial.suggest_float("alpha", 1e-2, 1e3, log=True),
    }


def build(spec: TargetSpec, params: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import HuberRegressor, SGDClassifier

    if spec.is_classification:
        model = SGDClassifier(loss="modified_huber", alpha=float(params["alpha"]), max_iter=50,
                              tol=1e-4, random_state=seed)  # fmt: skip
        return scaled(model)
    model = HuberRegressor(epsilon=float(params["epsilon"]), alpha=float(params["alpha"]),
                           max_iter=300, tol=1e-4)  # fmt: skip
    return scaled_target(scaled(model))


CANDIDATE = CandidatePlugin(
    name="huber",
    classifier_name="huber_classifier",
    build=build,
    defaults=defaults,
    search_space=search_space,
    importance=linear_importance,
    requirements=("scikit-learn",),
    imports=("sklearn",),
    order=40,
)
