"""Why a model answered what it did: the contribution of each feature to one prediction.

Two exact decompositions, chosen by what the estimator inside the registered model is:

- trees (XGBoost regressors and classifiers): TreeSHAP, through XGBoost's own
  ``predict(..., pred_contribs=True)``. The contributions and the bias add up to the model's raw
  output: the prediction for a regressor, the log-odds for a classifier.
- linear models (a scikit-learn ``Pipeline`` of scalers and a linear model with ``coef_``,
  optionally inside a ``TransformedTargetRegressor``, as training builds Ridge, Huber and
  logistic regression; or a bare linear model): coefficient x standardised value, each mapped
  back through the target transformer, plus the intercept. They add up to the prediction (the
  log-odds for a classifier).

An :class:`Explanation` keeps the ``top`` contributions by size, and ``rest``, the sum of the
others, so that ``base + sum(top) + rest`` is the output in ``space`` exactly (to float
rounding): nothing is hidden, only folded. Any other estimator is refused with
:class:`pricebot.errors.ExplanationUnavailableError` naming its type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pricebot.errors import ExplanationUnavailableError

TREESHAP = "treeshap"
LINEAR = "linear"
OUTPUT = "prediction"  # contributions add up to the prediction itself
LOG_ODDS = "log_odds"  # ... to the log-odds of the event (classifiers)


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float  # the feature's value in the row
    contribution: float


@dataclass(frozen=True)
class Explanation:
    method: str  # TREESHAP | LINEAR
    space: str  # OUTPUT | LOG_ODDS
    base: float  # the bias (trees) or intercept (linear), in ``space``
    top: tuple[Contribution, ...]  # largest |contribution| first
    rest: float  # the sum of every contribution not in ``top``

    @property
    def total(self) -> float:
        """What the contributions explain: the model's output in ``space``."""
        return self.base + sum(c.contribution for c in self.top) + self.rest


def estimator_of(model: Any) -> Any:
    """The fitted estimator inside a loaded pyfunc: pricebot's Forecaster keeps it as
    ``estimator``; MLflow's scikit-learn flavor hands it out as the raw model."""
    try:
        inner = model.unwrap_python_model()
    except Exception:  # not a python_model flavor
        inner = None
    if inner is not None and hasattr(inner, "estimator"):
        return inner.estimator
    try:
        return model.get_raw_model()
    except Exception:
        return model


def pool_symbols_of(model: Any) -> tuple[str, ...]:
    """A loaded pooled pyfunc's symbols, in the order of its estimator's indicator columns
    (:class:`pricebot.portable_model.PortableForecaster` keeps them as ``symbols``); empty for
    any other model."""
    try:
        inner = model.unwrap_python_model()
    except Exception:  # not a python_model flavor
        return ()
    return tuple(str(s).upper() for s in getattr(inner, "symbols", None) or ())


def explain(
    estimator: Any, columns: Sequence[str], values: np.ndarray, *, top: int = 5
) -> Explanation:
    """The contributions of each feature of one row to ``estimator``'s output."""
    row = np.asarray(values, dtype="float64").reshape(1, -1)
    if len(columns) != row.shape[1]:
        raise ExplanationUnavailableError(
            f"the row has {row.shape[1]} values for {len(columns)} feature names"
        )
    if hasattr(estimator, "get_booster"):
        method, space, base, parts = TREESHAP, *_treeshap(estimator, columns, row)
    else:
        method, space, base, parts = LINEAR, *_linear(estimator, row)
    order = np.argsort(-np.abs(parts), kind="stable")
    chosen = order[:top]
    return Explanation(
        method=method,
        space=space,
        base=float(base),
        top=tuple(Contribution(columns[i], float(row[0, i]), float(parts[i])) for i in chosen),
        rest=float(parts[order[top:]].sum()),
    )


def _treeshap(estimator: Any, columns: Sequence[str], row: np.ndarray) -> tuple:
    import pandas as pd
    import xgboost as xgb

    booster = estimator.get_booster()
    frame = pd.DataFrame(row, columns=list(columns))
    contributions = booster.predict(xgb.DMatrix(frame), pred_contribs=True)[0]
    space = LOG_ODDS if hasattr(estimator, "predict_proba") else OUTPUT
    return space, contributions[-1], np.asarray(contributions[:-1], dtype="float64")


def _linear(estimator: Any, row: np.ndarray) -> tuple:
    """coef x standardised value through the pipeline's scalers, then the target transform."""
    target_scale, target_shift = 1.0, 0.0
    model = estimator
    if hasattr(model, "regressor_") and hasattr(model, "transformer_"):  # TransformedTarget
        target_scale, target_shift = _inverse_target(model.transformer_)
        model = model.regressor_
    x = row
    if hasattr(model, "steps"):  # a Pipeline: every step but the last transforms the row
        *transforms, (_, final) = model.steps
        for name, step in transforms:
            factor, offset = _scaling(step, f"pipeline step {name!r}")
            x = x * factor + offset
        model = final
    coef = getattr(model, "coef_", None)
    if coef is None:
        raise ExplanationUnavailableError(
            f"{type(estimator).__name__} is neither a tree ensemble nor a linear model; "
            "explanations cover XGBoost models and scikit-learn linear models"
        )
    coef = np.asarray(coef, dtype="float64").reshape(-1)
    if coef.shape[0] != x.shape[1]:
        raise ExplanationUnavailableError(
            f"{type(model).__name__} has {coef.shape[0]} coefficients for {x.shape[1]} features"
        )
    intercept = float(np.asarray(getattr(model, "intercept_", 0.0), dtype="float64").ravel()[0])
    space = LOG_ODDS if hasattr(model, "predict_proba") else OUTPUT
    parts = coef * x[0] * target_scale
    return space, intercept * target_scale + target_shift, parts


def _scaling(step: Any, what: str) -> tuple[Any, Any]:
    """(factor, offset) of a fitted scaler step: ``step(x) == x * factor + offset``."""
    if not (hasattr(step, "mean_") or hasattr(step, "scale_")):
        raise ExplanationUnavailableError(
            f"{what} is a {type(step).__name__}, not a scaler: a linear model's contributions "
            "are computed through scalers only"
        )
    scale, mean = getattr(step, "scale_", None), getattr(step, "mean_", None)
    factor = 1.0 / np.asarray(scale, dtype="float64") if scale is not None else 1.0
    offset = -np.asarray(mean, dtype="float64") * factor if mean is not None else 0.0
    return factor, offset


def _inverse_target(transformer: Any) -> tuple[float, float]:
    """(scale, shift) such that ``y = z * scale + shift`` undoes a fitted target scaler."""
    if not (hasattr(transformer, "mean_") or hasattr(transformer, "scale_")):
        raise ExplanationUnavailableError(
            f"the target transformer is a {type(transformer).__name__}, not a scaler"
        )
    scale, mean = getattr(transformer, "scale_", None), getattr(transformer, "mean_", None)
    return (
        float(np.ravel(scale)[0]) if scale is not None else 1.0,
        float(np.ravel(mean)[0]) if mean is not None else 0.0,
    )
