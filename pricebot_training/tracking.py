"""MLflow glue for the training job: the server check, experiments, candidate runs, the model.

Candidate and trial runs are nested under one parent run per training job; every run is ended
(FINISHED or FAILED) by the ``with`` block that started it, so a crash leaves no run RUNNING.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from pricebot.evaluation import METRICS, CandidateResult


def ensure_experiment(name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name)


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """MLflow stores NaN awkwardly across backends; an undefined metric is simply not logged."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def log_candidate(result: CandidateResult) -> None:
    """Into the active run: parameters, per-fold metrics (step = fold) and aggregates."""
    if result.params:
        mlflow.log_params({k: str(v)[:500] for k, v in result.params.items()})
    mlflow.set_tags({"candidate": result.name, "candidate_kind": result.kind})
    for fold, row in result.folds.iterrows():
        mlflow.log_metrics(
            finite({f"fold_{k}": row[k] for k in METRICS}),
            step=int(fold),  # type: ignore[arg-type]
        )
    mlflow.log_metrics(finite(result.aggregate()))
    mlflow.log_text(result.folds.to_csv(), "folds.csv")


def log_json(data: Any, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(data, indent=2, default=str), artifact_file)


def log_file(path: Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path)


def log_table(table: pd.DataFrame) -> None:
    mlflow.log_text(table.to_csv(), "evaluation_table.csv")
    mlflow.log_text(table.to_string(float_format=lambda v: f"{v:.4f}"), "evaluation_table.txt")


def plot_importance(importance: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(importance["mean_abs"].items())[::-1]
    fig, axis = plt.subplots(figsize=(8, max(3, 0.3 * len(items))))
    axis.barh([k for k, _ in items], [v for _, v in items])
    axis.set_xlabel("mean |contribution| to the prediction")
    axis.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def log_importance(importance: dict, title: str, prefix: str = "") -> None:
    log_json(importance, f"{prefix}feature_importance.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_importance(importance, Path(tmp) / f"{prefix}feature_importance.png", title)
        mlflow.log_artifact(str(path))


def pip_requirements() -> list[str]:
    """Pinned to what trained the model, so `log_model` does not spend seconds inferring."""
    from importlib.metadata import version

    packages = ["mlflow", "numpy", "pandas", "scikit-learn", "xgboost", "cloudpickle"]
    return [f"{p}=={version(p)}" for p in packages]


def log_forecaster(estimator: Any, features: pd.DataFrame, kind: str) -> Any:
    """Log the fitted estimator as the pyfunc model ``model`` of the active run."""
    from mlflow.models import infer_signature

    from pricebot.forecaster import Forecaster

    forecaster = Forecaster(estimator, list(features.columns), kind)
    example = features.iloc[:5].astype("float64")
    signature = infer_signature(example, forecaster.predict(None, example))
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=forecaster,
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
    )
