"""The candidate models, as plug-ins: one module per model family, found by import.

A candidate is a :class:`CandidatePlugin`: its name (and its name as a classifier), a builder of
an unfitted estimator from hyper-parameters, its defaults, its Optuna search space, how its
feature importance is computed, and the distributions its fitted model needs (pinned, at the
versions that trained it, in the logged model's requirements). Adding a candidate is adding one
module to this package that defines ``CANDIDATE = CandidatePlugin(...)``; a package elsewhere can
contribute one through the entry-point group ``pricebot.candidates`` (an object of the same
class), without touching this code.

The families: XGBoost, LightGBM, CatBoost (gradient-boosted trees), Ridge, Lasso, ElasticNet and
Huber (linear, on standardised features and, for regression, a standardised target). For a
classification target each has its matching classifier: the trees' own classifiers, logistic
regression with an L2, L1 or elastic-net penalty, and a linear model with the modified Huber loss
(robust to outliers like Huber's regression, and it gives probabilities).

Classifiers are fitted with balanced class weights by default (each class weighs half of the
training set): a rare event (a 2% rise in a day) would otherwise be learnt as "never". The price
is calibration: the probabilities centre on 0.5 rather than on the base rate, which the
calibration plot shows; the decision threshold is chosen on the selection folds either way.
``class_weight="none"`` fits unweighted, calibrated probabilities.

A family whose library is not installed (CatBoost is an extra of its own: ``pricebot[catboost]``)
is left out of a run with a message saying how to add it (:func:`unavailable`).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Literal

import numpy as np
import pandas as pd

from pricebot.errors import DegenerateTargetError, UsageError
from pricebot.targets import TargetSpec

ClassWeight = Literal["balanced", "none"]
ENTRY_POINT_GROUP = "pricebot.candidates"
#: Threads a tree library may use. Two cores: one fit at a time gets both (a benchmark running
#: two workers sets 1). Read when an estimator is built, so changing it takes effect.
XGB_THREADS = 2

Builder = Callable[[TargetSpec, dict[str, Any], int], Any]
SearchSpace = Callable[[Any, TargetSpec], dict[str, Any]]
Importance = Callable[[Any, pd.DataFrame], tuple[np.ndarray, str]]


def threads() -> int:
    return max(1, int(XGB_THREADS))


@dataclass(frozen=True)
class CandidatePlugin:
    """One model family (see the module docstring)."""

    name: str  # its name for regression targets (the candidate's name in runs and reports)
    build: Builder  # (spec, params, seed) -> an unfitted estimator with fit/predict(_proba)
    defaults: Callable[[TargetSpec], dict[str, Any]]  # the parameters of an untuned fit
    importance: Importance  # (fitted estimator, rows) -> (mean |contribution| per column, method)
    requirements: tuple[str, ...] = ()  # distributions the fitted model needs, pinned when logged
    imports: tuple[str, ...] = ()  # modules that must import for the family to be available
    search_space: SearchSpace | None = None  # None: not tuned, runs with its defaults
    classifier_name: str | None = None  # its name for classification targets (default: name)
    classifies: bool = True
    trial_weight: float = 1.0  # its share of the trial budget, relative to the others
    install_hint: str = ""  # how to get it when it is not installed
    order: int = 100  # position in runs and reports

    def name_for(self, spec: TargetSpec) -> str:
        return (self.classifier_name or self.name) if spec.is_classification else self.name

    def supports(self, spec: TargetSpec) -> bool:
        return self.classifies or not spec.is_classification

    @property
    def tunable(self) -> bool:
        return self.search_space is not None

    def missing(self) -> str | None:
        """Why the family cannot run here (a module that does not import), or None."""
        absent = [m for m in self.imports if importlib.util.find_spec(m) is None]
        if not absent:
            return None
        hint = f" ({self.install_hint})" if self.install_hint else ""
        return f"{self.name}: {', '.join(absent)} is not installed{hint}"

    def candidate(self, spec: TargetSpec, params: dict[str, Any], seed: int) -> Candidate:
        """A candidate with ``params`` over the family's defaults."""
        merged = {**self.defaults(spec), **params}
        return Candidate(self.name_for(spec), lambda p: self.build(spec, p, seed), merged, self)


@dataclass(frozen=True)
class Candidate:
    """A named way to build an unfitted estimator from hyper-parameters."""

    name: str
    build: Callable[[dict[str, Any]], Any]
    params: dict[str, Any] = field(default_factory=dict)
    plugin: CandidatePlugin | None = None


# ---------------------------------------------------------------------------------------------
# Discovery


@cache
def discover() -> tuple[CandidatePlugin, ...]:
    """Every plug-in: the modules of this package, then the ``pricebot.candidates`` entry
    points; in their declared order, names unique (a second plug-in of one name is an error)."""
    found: list[CandidatePlugin] = []
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        plugin = getattr(importlib.import_module(f"{__name__}.{module.name}"), "CANDIDATE", None)
        if isinstance(plugin, CandidatePlugin):
            found.append(plugin)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        plugin = entry_point.load()
        if not isinstance(plugin, CandidatePlugin):
            raise TypeError(f"entry point {entry_point.value} is not a CandidatePlugin")
        found.append(plugin)
    names = [p.name for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"two candidate plug-ins are named {', '.join(twice)}")
    return tuple(sorted(found, key=lambda p: (p.order, p.name)))


def plugin(name: str) -> CandidatePlugin:
    """The plug-in called ``name`` (its regression or its classifier name)."""
    for found in discover():
        if name in (found.name, found.classifier_name):
            return found
    raise UsageError(f"No candidate {name!r}; the candidates are {', '.join(all_names())}.")


def all_names() -> list[str]:
    return [p.name for p in discover()]


def choose(
    spec: TargetSpec, names: Sequence[str] | None = None
) -> tuple[list[CandidatePlugin], list[str]]:
    """The plug-ins a run uses for ``spec`` (``names``, or every installed one), and a note per
    family left out because it is not installed. Naming a missing one is an error."""
    chosen = [plugin(n) for n in names] if names else list(discover())
    usable, notes = [], []
    for found in chosen:
        if not found.supports(spec):
            continue
        reason = found.missing()
        if reason is None:
            usable.append(found)
        elif names:
            raise UsageError(f"Candidate {reason}.")
        else:
            notes.append(reason)
    if not usable:
        raise UsageError(f"None of the candidates {', '.join(names or [])} can fit {spec.name}.")
    return usable, notes


def split_trials(total: int, plugins: Sequence[CandidatePlugin]) -> dict[str, int]:
    """The trial budget shared by the tunable plug-ins in proportion to their ``trial_weight``
    (largest remainders, ties to the earlier plug-in). The first trial of each study is its
    defaults, so a family given one trial runs untuned, and 0 trials means every family does."""
    tunable = [p for p in plugins if p.tunable]
    shares = {p.name: 0 for p in plugins}
    weight = sum(p.trial_weight for p in tunable)
    if total <= 0 or not tunable or weight <= 0:
        return shares
    exact = {p.name: total * p.trial_weight / weight for p in tunable}
    for name, value in exact.items():
        shares[name] = int(value)
    left = total - sum(shares.values())
    by_remainder = sorted(tunable, key=lambda p: -(exact[p.name] - int(exact[p.name])))
    for found in by_remainder[:left]:
        shares[found.name] += 1
    return shares


# ---------------------------------------------------------------------------------------------
# Fitting


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
    y = (y >= 0.5).astype(int)
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


def importance_sample(features: pd.DataFrame, max_rows: int = 1000) -> pd.DataFrame:
    return features.iloc[:: max(1, len(features) // max_rows)]


def feature_importance(
    estimator: Any,
    features: pd.DataFrame,
    max_rows: int = 1000,
    *,
    family: CandidatePlugin | None = None,
) -> dict:
    """Mean |contribution| per feature, computed the way the estimator's family declares
    (TreeSHAP for the trees, ``|coef * standardised value|`` for the linear models); the family
    is recognised from the estimator when not given."""
    sample = importance_sample(features, max_rows)
    if family is None:
        family = next((p for p in discover() if p.missing() is None and _fitted_by(p, estimator)),
                      None)  # fmt: skip
    values, method = (family.importance if family else linear_importance)(estimator, sample)
    names = list(features.columns)
    ranked = sorted(zip(names, np.asarray(values).tolist(), strict=True), key=lambda kv: -kv[1])
    return {"method": method, "rows": len(sample), "mean_abs": dict(ranked)}


def _fitted_by(found: CandidatePlugin, estimator: Any) -> bool:
    """Whether ``estimator`` is of the family's kind (its library's module path)."""
    inner = getattr(estimator, "regressor_", estimator)
    last = inner.steps[-1][1] if hasattr(inner, "steps") else inner
    module = type(last).__module__.split(".")[0]
    return module in found.imports and module != "sklearn"


# ---------------------------------------------------------------------------------------------
# Shared by the linear families


def scaled_target(pipeline: Any) -> Any:
    """Fit on the standardised target: returns are ~0.01, which leaves Huber's scale estimate
    and the solvers' tolerances badly conditioned (Huber did not converge in 500 iterations)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(regressor=pipeline, transformer=StandardScaler())


def scaled(model: Any) -> Any:
    """``model`` on standardised features (the features mix prices, ratios and 0..100
    oscillators)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), model)


def linear_importance(estimator: Any, sample: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The exact linear SHAP on standardised features, in the target's units."""
    pipeline, target_scale = estimator, 1.0
    if hasattr(estimator, "regressor_"):  # TransformedTargetRegressor
        pipeline, target_scale = estimator.regressor_, float(estimator.transformer_.scale_[0])
    scaler, model = pipeline[0], pipeline[-1]
    z = scaler.transform(sample)
    values = np.abs(z * np.ravel(model.coef_)).mean(axis=0) * target_scale
    return values, "linear SHAP on standardised features, mean |coef * z|"


# ---------------------------------------------------------------------------------------------
# The names older callers use (the gate's benchmark): the original fixed pair and XGBoost.


def candidates(spec: TargetSpec, seed: int) -> list[Candidate]:
    """The original fixed-parameter candidates: Ridge (logistic for classifiers) and Huber
    (regression only), at their defaults."""
    names = ["ridge"] if spec.is_classification else ["ridge", "huber"]
    return [plugin(n).candidate(spec, {}, seed) for n in names]


def xgboost_candidate(spec: TargetSpec, params: dict[str, Any], seed: int) -> Candidate:
    return plugin("xgboost").candidate(spec, params, seed)
