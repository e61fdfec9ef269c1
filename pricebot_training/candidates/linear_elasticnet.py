"""ElasticNet (L1 and L2 mixed); for classifiers, elastic-net logistic regression."""

from __future__ import annotations

from typing import Any

from pricebot.targets import TargetSpec
from pricebot_training.candidates import CandidatePlugin, linear_importance, scaled, scaled_target


def defaults(spec: TargetSpec) -> dict[str, Any]:
    if spec.is_classification:
        return {"alpha": 10.0, "l1_ratio": 0.5}
    return {"alpha": 0.04, "l1_ratio": 0.5}


def search_space(trial: Any, spec: TargetSpec) -> dict[str, Any]:
    low, high = (1e-1, 1e4) if spec.is_classification else (1e-4, 1.0)
    return {
        "alpha": trial.suggest_float("alpha", low, high, log=True),
        "l1_ratio": trial.suggest_float("l1_ratio", 0.05, 0.95),
    }


def build(spec: TargetSpec, params: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import ElasticNet, LogisticRegression

    alpha, ratio = float(params["alpha"]), float(params["l1_ratio"])
    if spec.is_classification:
        model = LogisticRegression(C=1.0 / alpha, l1_ratio=ratio, solver="saga", max_iter=2000,
                                   random_state=seed)  # fmt: skip
        return scaled(model)
    model = ElasticNet(alpha=alpha, l1_ratio=ratio, max_iter=5000, random_state=seed)
    return scaled_target(scaled(model))


CANDIDATE = CandidatePlugin(
    name="elasticnet",
    classifier_name="logistic_elasticnet",
    build=build,
    defaults=defaults,
    search_space=search_space,
    importance=linear_importance,
    requirements=("scikit-learn",),
    imports=("sklearn",),
    order=30,
)
