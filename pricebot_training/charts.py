"""Charts logged with every run, besides the evaluation and calibration plots of the core:

- predicted against realised (the winner's out-of-sample predictions on every fold's test rows,
  the held-out fold apart), with the diagonal and a binned mean so a cloud of points still shows
  whether larger predictions meet larger outcomes;
- residuals over time (realised minus predicted, per fold, with a rolling mean: drift and
  regime changes show as a rolling mean away from zero);
- for classifiers, ROC curves of every model on the selection folds and the held-out fold;
- Optuna's optimisation history and parameter importance, per tuned candidate.

Every chart is drawn from out-of-sample predictions only; nothing here is fitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pricebot.evaluation import CandidateResult, Fold


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


def plot_predicted_vs_realised(
    result: CandidateResult,
    y: np.ndarray,
    folds: Sequence[Fold],
    held_out: int,
    path: Path,
    title: str = "",
    max_points: int = 4000,
) -> Path:
    """Scatter of out-of-sample predictions against what happened, and a binned mean."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7, 6))
    for label, chosen, colour in (
        ("selection folds", [f for f in folds if f.number != held_out], "tab:blue"),
        ("held-out fold", [f for f in folds if f.number == held_out], "tab:orange"),
    ):
        if not chosen:
            continue
        pred = np.concatenate([result.predictions[f.number] for f in chosen])
        real = np.concatenate([y[f.test] for f in chosen])
        step = max(1, len(pred) // max_points)
        axis.scatter(pred[::step], real[::step], s=3, alpha=0.3, color=colour, label=label)
        if len(pred) >= 20:
            edges = np.unique(np.quantile(pred, np.linspace(0, 1, 11)))
            bins = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, len(edges) - 2)
            means = pd.DataFrame({"b": bins, "p": pred, "r": real}).groupby("b").mean()
            axis.plot(means["p"], means["r"], "o-", color=colour, linewidth=1.5,
                      label=f"{label}: binned mean")  # fmt: skip
    both = np.concatenate([result.predictions[f.number] for f in folds])
    low, high = float(np.nanmin(both)), float(np.nanmax(both))
    axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=0.8)
    axis.axhline(0.0, color="grey", linewidth=0.4)
    axis.set_xlabel("predicted")
    axis.set_ylabel("realised")
    axis.set_title(title or f"{result.name}: predicted against realised, out of sample")
    axis.legend(fontsize=8)
    return _save(fig, path)


def plot_residuals(
    result: CandidateResult,
    times: pd.DatetimeIndex,
    y: np.ndarray,
    folds: Sequence[Fold],
    held_out: int,
    path: Path,
    title: str = "",
    window: int = 240,
) -> Path:
    """Realised minus predicted on each fold's test rows, over time, with a rolling mean."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(12, 4.5))
    for fold in folds:
        residual = pd.Series(y[fold.test] - result.predictions[fold.number],
                             index=times[fold.test])  # fmt: skip
        colour = "tab:orange" if fold.number == held_out else "tab:blue"
        axis.plot(residual.index, residual.to_numpy(), color=colour, alpha=0.25, linewidth=0.5)
        rolling = residual.rolling(window, min_periods=max(1, window // 4)).mean()
        axis.plot(
            rolling.index,
            rolling.to_numpy(),
            color=colour,
            linewidth=1.5,
            label=f"fold {fold.number}" + (" (held out)" if colour == "tab:orange" else ""),
        )
    axis.axhline(0.0, color="grey", linewidth=0.6)
    axis.set_ylabel("realised - predicted")
    axis.set_title(title or f"{result.name}: residuals over time (rolling mean of {window} rows)")
    axis.legend(fontsize=8, ncol=4)
    return _save(fig, path)


def plot_roc(
    results: Sequence[CandidateResult],
    y: np.ndarray,
    folds: Sequence[Fold],
    held_out: int,
    path: Path,
    title: str = "",
) -> Path:
    """ROC curve of each classifier model, selection folds and held-out fold apart."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    models = [r for r in results if r.kind == "model" and r.predictions]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), sharey=True)
    parts = (("selection folds", [f for f in folds if f.number != held_out]),
             ("held-out fold", [f for f in folds if f.number == held_out]))  # fmt: skip
    for axis, (label, chosen) in zip(axes, parts, strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
        if chosen:
            truth = (np.concatenate([y[f.test] for f in chosen]) >= 0.5).astype(int)
            if 0 < truth.sum() < len(truth):
                for i, result in enumerate(models):
                    p = np.concatenate([result.predictions[f.number] for f in chosen])
                    fpr, tpr, _ = roc_curve(truth, p)
                    axis.plot(
                        fpr,
                        tpr,
                        color=plt.get_cmap("tab10")(i % 10),
                        linewidth=1.2,
                        label=f"{result.name} (AUC {roc_auc_score(truth, p):.3f})",
                    )
        axis.set_xlabel("false positive rate")
        axis.set_title(label)
        axis.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("true positive rate")
    fig.suptitle(title or "ROC of the event probabilities, out of sample")
    return _save(fig, path)


def plot_tuning(study: Any, path: Path, title: str) -> Path:
    """Optuna's optimisation history and, with two or more finished trials, its parameter
    importance (fANOVA), side by side."""
    import optuna
    from optuna.visualization.matplotlib import (
        plot_optimization_history,
        plot_param_importances,
    )

    _pyplot()  # the Agg backend, before optuna draws
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots "experimental"
        history = plot_optimization_history(study)
        fig = history.figure
        fig.set_size_inches(7, 4.5)
        history.set_title(f"{title}: optimisation history")
        finished = [t for t in study.trials if t.state.name == "COMPLETE"]
        params = {k for t in finished for k in t.params}
        if len(finished) >= 2 and params:
            try:
                importance = plot_param_importances(study)
            except (RuntimeError, ValueError):  # all values equal: no importance defined
                importance = None
            if importance is not None:
                importance.figure.set_size_inches(7, 4.5)
                importance.set_title(f"{title}: parameter importance")
                _save(importance.figure, path.with_name(path.stem + "_importance.png"))
    return _save(fig, path)
