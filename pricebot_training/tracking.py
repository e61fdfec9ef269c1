"""MLflow glue for the training job: the server check, experiments, candidate runs, the model.

Candidate and trial runs are nested under one parent run per training job; every run is ended
(FINISHED or FAILED) by the ``with`` block that started it, so a crash leaves no run RUNNING.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from pricebot.evaluation import METRICS, CandidateResult, Fold
from pricebot.training_report import (
    TrainingReport,
    report_to_dict,
    report_to_json,
    tracked_metrics,
)


def ensure_experiment(name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name)


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """MLflow stores NaN awkwardly across backends; an undefined metric is simply not logged."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def log_batch(
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    step_metrics: dict[int, dict[str, float]] | None = None,
) -> None:
    """Params, tags and metrics into the active run in one request (MLflow's ``log_batch``,
    which splits a batch over its own limits), not one per ``log_params``/``set_tags``/
    ``log_metrics`` call: a training logs some thirty runs, and each request is a round trip
    to the tracking server. ``metrics`` go at step 0 (as ``mlflow.log_metrics`` puts them),
    ``step_metrics`` at their step; values are stored as the fluent calls store them."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient
    from mlflow.utils.time import get_current_time_millis

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_batch needs an active run")
    now = get_current_time_millis()
    entries = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
    for step, values in (step_metrics or {}).items():
        entries.extend(Metric(k, float(v), now, int(step)) for k, v in values.items())
    MlflowClient().log_batch(
        run.info.run_id,
        metrics=entries,
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def log_candidate(
    result: CandidateResult,
    selection: list[int],
    held_out: list[int],
    extra_metrics: dict[str, float] | None = None,
) -> None:
    """Into the active run: parameters, per-fold metrics (``fold_<metric>``, step = fold) and
    the selection-fold and held-out figures apart (``selection_<metric>``, ``heldout_<metric>``,
    see :func:`pricebot.training_report.tracked_metrics`), and ``extra_metrics``; all in one
    request (:func:`log_batch`), the folds' table as ``folds.csv``."""
    log_batch(
        params={k: str(v)[:500] for k, v in result.params.items()} if result.params else None,
        tags={"candidate": result.name, "candidate_kind": result.kind,
              "selection_folds": ",".join(map(str, selection)),
              "heldout_folds": ",".join(map(str, held_out))},
        metrics={**finite(tracked_metrics(result, selection, held_out)),
                 **finite(extra_metrics or {})},
        step_metrics={int(fold): finite({f"fold_{k}": row[k] for k in METRICS if k in row})
                      for fold, row in result.folds.iterrows()},  # type: ignore[call-overload]
    )  # fmt: skip
    mlflow.log_text(result.folds.to_csv(), "folds.csv")


def log_job_inputs(config: Any, dataset: Any, folds: list[Fold], train_step: int) -> None:
    """Into the parent run: what the job was asked to do and on which data."""
    spec = dataset.spec
    mlflow.set_tags({"symbol": dataset.symbol, "target": spec.name, "job": "pricebot train",
                     "dataset.sha256": str(dataset.lineage["sha256"]),
                     "market": str(dataset.lineage.get("market"))})  # fmt: skip
    mlflow.log_params(
        {
            "symbol": dataset.symbol,
            "target": spec.name,
            "kind": spec.kind,
            "horizon_minutes": spec.horizon_minutes,
            "feature_set": dataset.feature_set,
            "folds": config.folds,
            "trials": config.trials,
            "seed": config.seed,
            "fee_per_side": config.fee,
            "class_weight": config.class_weight if spec.is_classification else "n/a",
            "train_step_minutes": train_step,
            "purge_minutes": folds[0].purge_minutes,
            "dataset.rows": dataset.lineage["rows"],
            "dataset.start": dataset.lineage["start"],
            "dataset.end": dataset.lineage["end"],
        }
    )
    log_json(dataset.lineage, "lineage.json")
    log_json(
        [{"fold": f.number, "train_rows": len(f.train), "test_rows": len(f.test),
          "test_start": f.test_start, "test_end": f.test_end} for f in folds],
        "folds.json",
    )  # fmt: skip


def log_decision(report: TrainingReport) -> None:
    """Into the parent run: the promotion decision (``promotion.json`` and tags), the champion's
    figure on the held-out fold, and the report so far."""
    decision, champion = report.decision, report.champion
    if champion.value is not None:
        mlflow.log_metric("champion_heldout_pool_value_net", champion.value)
    document = report_to_dict(report)
    log_json(
        {"challenger": report.winner.name, **document["decision"],
         "champion": document["champion"]},
        "promotion.json",
    )  # fmt: skip
    mlflow.set_tags({"winner": report.winner.name, "promotion.decision":
                     "promote" if decision.promote else "keep",
                     "promotion.reason": decision.reason[:4000]})  # fmt: skip
    log_report(report)


def log_report(report: TrainingReport) -> None:
    """The whole training report as ``report.json`` of the active run."""
    mlflow.log_text(report_to_json(report), "report.json")


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


def log_tuning_charts(tuned: Any, name: str) -> None:
    """Into the active run: Optuna's optimisation history and parameter importance."""
    from pricebot_training.charts import plot_tuning

    if tuned.study is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_tuning(tuned.study, Path(tmp) / "optuna_history.png", name)
        for chart in Path(tmp).glob("*.png"):
            mlflow.log_artifact(str(chart))
        del path


BASE_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "cloudpickle")


def pip_requirements(extra: tuple[str, ...] = ("xgboost",)) -> list[str]:
    """Pinned to what trained the model, so `log_model` does not spend seconds inferring:
    the base set and the candidate family's own distributions (``extra``)."""
    from importlib.metadata import version

    packages = list(dict.fromkeys([*BASE_REQUIREMENTS, *extra]))
    # an entry with a version already (``--requirement name==1.2``) is taken as written
    return [p if any(op in p for op in "=<>~@") else f"{p}=={version(p)}" for p in packages]


@contextlib.contextmanager
def _no_uv_project() -> Iterator[None]:
    """MLflow copies the uv.lock of the working directory into a model logged from inside a uv
    project (pricebot's own lock, here), and ``mlflow models serve --env-manager uv`` would then
    rebuild pricebot's whole environment instead of the model's requirements.txt. Off while
    logging; the environment is restored afterwards."""
    keys = ("MLFLOW_UV_AUTO_DETECT", "MLFLOW_LOG_UV_FILES")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "false"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def portable_model_file() -> Path:
    """The models-from-code file (:mod:`pricebot.portable_model`), found without importing it
    (importing it would set MLflow's current model in this process)."""
    import importlib.util

    spec = importlib.util.find_spec("pricebot.portable_model")
    if spec is None or spec.origin is None:
        raise RuntimeError("pricebot.portable_model is missing from the installation")
    return Path(spec.origin)


def log_forecaster(
    estimator: Any,
    features: pd.DataFrame,
    kind: str,
    *,
    requirements: tuple[str, ...] = ("xgboost",),
    symbols: list[str] | None = None,
) -> Any:
    """Log the fitted estimator as the pyfunc model ``model`` of the active run, portable: the
    model is :mod:`pricebot.portable_model` plus the pickled estimator, with requirements
    pinned to the versions installed here (``requirements``: the candidate family's own).

    ``features`` are rows of the feature columns (the input example); ``symbols`` makes it a
    pooled model, whose input also has a ``symbol`` column and whose estimator was fitted with
    one indicator column per symbol after the features."""
    import pickle

    from mlflow.models import infer_signature

    from pricebot.pooling import SYMBOL_COLUMN

    columns = [c for c in features.columns if c != SYMBOL_COLUMN]
    example = features[columns].iloc[:5].astype("float64")
    if symbols:
        example = example.assign(**{SYMBOL_COLUMN: features[SYMBOL_COLUMN].iloc[:5].to_numpy()})
    signature = infer_signature(example, np.zeros(len(example)))
    config = {"columns": columns, "kind": kind, "symbols": list(symbols or [])}
    with tempfile.TemporaryDirectory() as tmp, _no_uv_project():
        path = Path(tmp) / "estimator.pkl"
        path.write_bytes(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(portable_model_file()),
            artifacts={"estimator": str(path)},
            model_config=config,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(requirements),
        )
