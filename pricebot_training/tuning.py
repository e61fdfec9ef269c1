"""Optuna tuning of XGBoost on the walk-forward folds, with a trial budget and a fixed seed.

The objective is the mean out-of-sample RMSE (for classifiers: RMSE of the probability, i.e. the
square root of the Brier score) over the *selection* folds, every fold but the newest: the newest
fold is held out for the promotion decision (:mod:`pricebot.gate`), so the model that is
promoted was not chosen on it; the job passes only the selection folds here.
A median pruner stops trials that are already worse than the median after a fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pricebot.dataset import Dataset
from pricebot.evaluation import Fold
from pricebot.forecaster import predict_values
from pricebot_training.candidates import ClassWeight, fit, xgboost_candidate

TrialCallback = Callable[[int, dict[str, Any], float | None, str], None]


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int


def search_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, step=25),
        "max_depth": trial.suggest_int("max_depth", 2, 7),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def tune_xgboost(
    dataset: Dataset,
    folds: Sequence[Fold],
    *,
    trials: int,
    seed: int,
    on_trial: TrialCallback | None = None,
    class_weight: ClassWeight = "balanced",
) -> TuningResult:
    """Run ``trials`` Optuna trials; ``on_trial(number, params, value, state)`` after each."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = dataset.spec
    x, y = dataset.features, dataset.label

    def objective(trial: optuna.Trial) -> float:
        params = search_space(trial)
        candidate = xgboost_candidate(spec, params, seed)
        errors = []
        for step, fold in enumerate(folds):
            model = fit(candidate, x.iloc[fold.train], y.iloc[fold.train], spec, class_weight)
            pred = predict_values(model, x.iloc[fold.test], spec.kind)
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
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    )
    if trials > 0:
        study.optimize(objective, n_trials=trials, callbacks=[callback], gc_after_trial=False)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return TuningResult({}, float("nan"), len(study.trials), len(study.trials))
    return TuningResult(
        dict(study.best_params),
        float(study.best_value),
        len(study.trials),
        len(study.trials) - len(completed),
    )
