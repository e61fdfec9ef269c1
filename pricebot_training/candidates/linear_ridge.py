"""Ridge regression (L2); for classifiers, L2 logistic regression. What held up best, with
Huber, in the original study."""

from __future__ import annotations

from typing import Any

from pricebot.targets import TargetSpec
from pricebot_training.candidates import CandidatePlugin, linear_importance, scaled, scaled_target

# Several v1 features are near-collinear (price-unit and relative MA gaps): a strong L2 keeps
# the coefficients of twin features from blowing up in opposite directions.
DEFAULT_ALPHA = 10.0


def defaults(spec: TargetSpec) -> dict[str, Any]:
    return {"alpha": DEFAULT_ALPHA}


def search_space(trial: Any, spec: TargetSpec) -> dict[str, Any]:
    return {"alpha": trial.suggest_float("alpha", 1e-2, 1e4, log=True)}


def build(spec: TargetSpec, params: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    alpha = float(params.get("alpha", DEFAULT_ALPHA))
    if spec.is_classification:
        return scaled(LogisticRegression(C=1.0 / alpha, max_iter=1000))
    return scaled_target(scaled(Ridge(alpha=alpha)))


CANDIDATE = CandidatePlugin(
    name="ridge",
    classifier_name="logistic",
    build=build,
    defaults=defaults,
    search_space=search_space,
    importance=linear_importance,
    requirements=("scikit-learn",),
    imports=("sklearn",),
    order=10,
)
