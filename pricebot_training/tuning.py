"""Optuna tuning of each tunable candidate on the walk-forward folds, within a trial budget.

The objective is the mean out-of-sample RMSE (for classifiers: RMSE of the probability, i.e. the
square root of the Brier score) over the *selection* folds, every fold but the newest: the newest
fold is held out for the promotion decision (:mod:`pricebot.gate`), so the model that is
promoted was not chosen on it; the job passes only the selection folds here.

The budget (``--trials``) is shared by the tunable candidates in proportion to their declared
weight (:func:`pricebot_training.candidates.split_trials`: trees 3, linear models 1, since a
tree's search space has seven dimensions and a linear model's one or two). Each study's first
trial is the family's defaults, so tuning can only keep or improve the selection-fold score, and
a family given one trial runs at its defaults. Samplers are seeded (TPE), so a run repeats.
A median pruner stops trials that are already worse than the median after a fold.

The best trial's out-of-sample predictions on each selection fold are kept
(``TuningResult.fold_predictions``, with the parameters they were fitted with): the job scores
the tuned candidate on every fold afterwards, and on the selection folds that is the very same
fit (same parameters, seed, rows), so it reuses them instead of fitting again
(:func:`pricebot_training.job._fitted_predict`); only the held-out fold is fitted anew.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pricebot.evaluation import Fold
from pricebot.forecaster import predict_values
from pricebot_training.candidates import CandidatePlugin, ClassWeight, fit

TrialCallback = Callable[[int, dict[str, Any], float | None, str], None]


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int
    # (number, value or None, state) per trial, for the optimisation-history chart
    history: list[tuple[int, float | None, str]] = field(default_factory=list)
    study: Any = field(default=None, repr=False)  # the optuna study (charts), when tuned
    # The best trial's predictions per fold number, and the candidate parameters they came from
    fold_predictions: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    fitted_params: dict[str, Any] = field(default_factory=dict, repr=False)


def tune(
    family: CandidatePlugin,
    dataset: Any,
    folds: Sequence[Fold],
    *,
    trials: int,
    seed: int,
    on_trial: TrialCallback | None = None,
    class_weight: ClassWeight = "balanced",
) -> TuningResult:
    """Run ``trials`` Optuna trials of ``family``; ``on_trial(number, params, value, state)``
    after each. ``dataset`` has ``features``, ``label`` and ``spec`` (a single-symbol or a pooled
    dataset)."""
    if family.search_space is None or trials <= 0:
        return TuningResult({}, math.nan, 0, 0)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = dataset.spec
    x, y = dataset.features, dataset.label
    space = family.search_space
    # per trial: its candidate's parameters and its predictions per fold (see the docstring)
    fitted: dict[int, tuple[dict[str, Any], dict[int, np.ndarray]]] = {}

    def objective(trial: optuna.Trial) -> float:
        candidate = family.candidate(spec, space(trial, spec), seed)
        errors = []
        predictions: dict[int, np.ndarray] = {}
        fitted[trial.number] = (dict(candidate.params), predictions)
        for step, fold in enumerate(folds):
            model = fit(candidate, x.iloc[fold.train], y.iloc[fold.train], spec, class_weight)
            pred = predict_values(model, x.iloc[fold.test], spec.kind)
            predictions[fold.number] = np.asarray(pred, dtype="float64")
            errors.append(float(np.sqrt(np.mean((pred - y.to_numpy()[fold.test]) ** 2))))
            trial.report(float(np.mean(errors)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(errors))

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial.number, dict(trial.params), trial.value, trial.state.name.lower())

    study = optuna.create_study(
        direction="minimize",
        study_name=family.name_for(spec),
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    )
    # The defaults first (each family keeps them inside its own search space).
    study.enqueue_trial(family.defaults(spec), skip_if_exists=True)
    study.optimize(objective, n_trials=trials, callbacks=[callback], gc_after_trial=False)
    history = [(t.number, t.value, t.state.name.lower()) for t in study.trials]
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return TuningResult({}, math.nan, len(study.trials), len(study.trials), history, study)
    params, predictions = fitted.get(study.best_trial.number, ({}, {}))
    return TuningResult(
        dict(study.best_params),
        float(study.best_value),
        len(study.trials),
        len(study.trials) - len(completed),
        history,
        study,
        fold_predictions=predictions,
        fitted_params=params,
    )
