"""The training job: dataset -> purged walk-forward folds -> baselines, Ridge, Huber, tuned
XGBoost -> MLflow runs -> the winner registered as ``challenger`` -> promoted if it earns it.

Order of work, chosen so a failure leaves nothing misleading behind:

1. Everything that can be checked cheaply is checked first: the target spec, the tracking
   server, the symbol and its data, the folds.
2. Candidates are evaluated and logged as nested runs of one parent run.
3. The winner (best mean net pool value on the selection folds, i.e. all but the newest; ties
   by directional accuracy) is refitted on all labelled rows and logged as a pyfunc model with
   its feature importance, the evaluation table and the plot.
4. Only then is a model version created (tags included) and given the ``challenger`` alias;
   the champion moves only under :func:`pricebot.evaluation.decide_promotion`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from pricebot.dataset import Dataset, build_dataset
from pricebot.evaluation import (
    DEFAULT_FEE,
    CandidateResult,
    Fold,
    PromotionDecision,
    baseline_predictions,
    decide_promotion,
    default_train_step,
    evaluate_candidate,
    evaluation_table,
    plot_evaluation,
    walk_forward_folds,
)
from pricebot.forecaster import predict_values
from pricebot.registry import CHAMPION, Registry, default_actor, model_name
from pricebot.targets import DEFAULT_TARGET, parse_target
from pricebot_training import tracking
from pricebot_training.candidates import (
    Candidate,
    candidates,
    feature_importance,
    fit,
    xgboost_candidate,
)
from pricebot_training.promotion import score_champion
from pricebot_training.tuning import tune_xgboost


@dataclass
class TrainingConfig:
    symbol: str
    target: str = DEFAULT_TARGET
    trials: int = 30
    folds: int = 5
    start: datetime | None = None
    end: datetime | None = None
    seed: int = 42
    fee: float = DEFAULT_FEE
    train_step: int | None = None  # default: H // 24 (see pricebot.evaluation)
    feature_set: str | None = None
    database_url: str | None = None
    tracking_uri: str | None = None
    register: bool = True
    record_history: bool = True  # alias moves into table model_alias_events (needs the database)
    show_progress: bool = True


@dataclass
class TrainingOutcome:
    experiment_id: str
    parent_run_id: str
    model_name: str
    winner: str
    winner_run_id: str
    version: str | None
    promoted: bool
    decision: PromotionDecision
    table: pd.DataFrame
    results: list[CandidateResult]
    lineage: dict[str, object]
    plot_path: Path | None = None
    champion_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    )


def _fitted_predict(
    candidate: Candidate, dataset: Dataset, keep: dict[str, Any]
) -> Any:  # -> Callable[[Fold], np.ndarray]
    x, y, spec = dataset.features, dataset.label, dataset.spec

    def predict(fold: Fold) -> np.ndarray:
        model = fit(candidate, x.iloc[fold.train], y.iloc[fold.train], spec)
        keep["last_model"] = model  # the newest fold's model: the most training data
        return predict_values(model, x.iloc[fold.test], spec.kind)

    return predict


def _selection_score(result: CandidateResult, selection: list[int]) -> tuple[float, float]:
    return (
        result.mean_over("pool_value_net", selection),
        result.mean_over("directional_accuracy", selection),
    )


def load_dataset(config: TrainingConfig) -> Dataset:
    from pricebot.db import connect
    from pricebot.settings import get_settings

    url = config.database_url or get_settings().database_url
    with connect(url) as conn:
        return build_dataset(
            conn,
            config.symbol,
            parse_target(config.target),
            start=config.start,
            end=config.end,
            feature_set=config.feature_set,
        )


def train(config: TrainingConfig, dataset: Dataset | None = None) -> TrainingOutcome:
    """Run the whole job (see the module docstring). ``dataset`` skips the database read."""
    spec = parse_target(config.target)
    from pricebot.settings import get_settings

    uri = config.tracking_uri or get_settings().tracking_uri()
    mlflow.set_tracking_uri(uri)
    registry = Registry(uri)
    registry.check()
    database_url = None
    if config.register and config.record_history:
        from pricebot.db import connect
        from pricebot.settings import get_settings

        database_url = config.database_url or get_settings().database_url
        connect(database_url).close()  # unreachable: a clear error now, not after the work
    if dataset is None:
        dataset = load_dataset(config)
    elif dataset.spec != spec:
        raise ValueError(f"the dataset is for target {dataset.spec.name}, not {spec.name}")
    step = config.train_step or default_train_step(spec.horizon_minutes)
    folds = walk_forward_folds(dataset.times, config.folds, spec.horizon_minutes, train_step=step)
    selection = [f.number for f in folds[:-1]] or [folds[-1].number]
    name = model_name(dataset.symbol, spec.name)
    experiment_id = tracking.ensure_experiment(name)
    # Nested runs go to the *active* experiment, not their parent's: make it this one.
    mlflow.set_experiment(experiment_id=experiment_id)
    x, y = dataset.features, dataset.label
    times, fwd = dataset.times, dataset.forward_return.to_numpy()
    y_np = y.to_numpy()
    results: list[CandidateResult] = []
    run_ids: dict[str, str] = {}
    kept: dict[str, dict[str, Any]] = {}
    fixed = candidates(spec, config.seed)

    with (
        _progress(config.show_progress) as progress,
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"train {dataset.symbol} {spec.name} {datetime.now():%Y-%m-%d %H:%M}",
        ) as parent,
    ):
        mlflow.set_tags({"symbol": dataset.symbol, "target": spec.name, "job": "pricebot train",
                         "dataset.sha256": str(dataset.lineage["sha256"])})  # fmt: skip
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
                "train_step_minutes": step,
                "purge_minutes": folds[0].purge_minutes,
                "dataset.rows": dataset.lineage["rows"],
                "dataset.start": dataset.lineage["start"],
                "dataset.end": dataset.lineage["end"],
            }
        )
        tracking.log_json(dataset.lineage, "lineage.json")
        tracking.log_json(
            [{"fold": f.number, "train_rows": len(f.train), "test_rows": len(f.test),
              "test_start": f.test_start, "test_end": f.test_end} for f in folds],
            "folds.json",
        )  # fmt: skip

        work = progress.add_task("candidates", total=len(fixed) + 2)
        # Baselines: causal predictions for every row, scored on the same folds.
        for base_name, preds in baseline_predictions(
            dataset.past_return.to_numpy(), dataset.recent_mean.to_numpy(), spec
        ).items():
            result = evaluate_candidate(
                base_name, folds, times, y_np, fwd, spec,
                lambda fold, p=preds: p[fold.test], kind="baseline", fee=config.fee,
            )  # fmt: skip
            with mlflow.start_run(run_name=f"baseline {base_name}", nested=True) as run:
                tracking.log_candidate(result)
            results.append(result)
            run_ids[base_name] = run.info.run_id
        progress.advance(work)

        for candidate in fixed:
            kept[candidate.name] = {}
            result = evaluate_candidate(
                candidate.name, folds, times, y_np, fwd, spec,
                _fitted_predict(candidate, dataset, kept[candidate.name]),
                fee=config.fee, params=candidate.params,
            )  # fmt: skip
            with mlflow.start_run(run_name=candidate.name, nested=True) as run:
                tracking.log_candidate(result)
            results.append(result)
            run_ids[candidate.name] = run.info.run_id
            progress.advance(work)

        # XGBoost: tuned on the selection folds, each trial a nested run of the tuning run.
        trial_task = progress.add_task("tuning xgboost", total=config.trials)
        tuning_folds = [f for f in folds if f.number in selection]
        with mlflow.start_run(run_name="xgboost tuning", nested=True):
            mlflow.set_tags({"candidate": "xgboost", "stage": "tuning"})

            def on_trial(number: int, params: dict, value: float | None, state: str) -> None:
                with mlflow.start_run(run_name=f"trial {number}", nested=True):
                    mlflow.log_params(params)
                    mlflow.set_tag("trial_state", state)
                    if value is not None:
                        mlflow.log_metric("selection_rmse", value)
                progress.advance(trial_task)

            tuned = tune_xgboost(dataset, tuning_folds, trials=config.trials,
                                 seed=config.seed, on_trial=on_trial)  # fmt: skip
            mlflow.log_params({"trials": tuned.trials, "pruned": tuned.pruned})
            if tuned.best_params:
                mlflow.log_metric("best_selection_rmse", tuned.best_value)
            tracking.log_json(tuned.best_params, "best_params.json")
        xgb = xgboost_candidate(spec, tuned.best_params, config.seed)
        kept["xgboost"] = {}
        result = evaluate_candidate(
            "xgboost", folds, times, y_np, fwd, spec,
            _fitted_predict(xgb, dataset, kept["xgboost"]), fee=config.fee, params=xgb.params,
        )  # fmt: skip
        with mlflow.start_run(run_name="xgboost", nested=True) as run:
            tracking.log_candidate(result)
        results.append(result)
        run_ids["xgboost"] = run.info.run_id
        progress.advance(work)

        # The winner, refitted on every labelled row (subsampled like the folds).
        models = [r for r in results if r.kind == "model"]
        winner = max(models, key=lambda r: _selection_score(r, selection))
        baselines = [r for r in results if r.kind == "baseline"]
        final_task = progress.add_task("final fit, logging, registry", total=3)
        minutes = (times.asi8 // 60_000_000_000) % step == 0
        all_rows = np.flatnonzero(minutes)
        chosen = (
            xgb if winner.name == "xgboost" else next(c for c in fixed if c.name == winner.name)
        )
        final_model = fit(chosen, x.iloc[all_rows], y.iloc[all_rows], spec)
        progress.advance(final_task)
        if winner.name != "xgboost":
            # XGBoost's own view of the features, from its newest-fold model, for comparison.
            tracking.log_importance(
                feature_importance(kept["xgboost"]["last_model"], x.iloc[folds[-1].train]),
                f"XGBoost mean |SHAP| ({dataset.symbol} {spec.name}, newest fold)",
                prefix="xgboost_",
            )

        table = evaluation_table(results)
        newest = folds[-1]
        champion = score_champion(registry, name, dataset, newest, config.fee)
        decision = decide_promotion(
            winner, baselines, spec,
            champion_value=champion.value, champion_scored=champion.scored,
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            plot_path = plot_evaluation(
                results,
                Path(tmp) / "evaluation.png",
                f"{dataset.symbol} {spec.name}: out-of-sample pool value after "
                f"{config.fee:.2%} per side",
            )
            tracking.log_table(table)
            tracking.log_file(plot_path)
            with mlflow.start_run(run_id=run_ids[winner.name], nested=True):
                importance = feature_importance(final_model, x.iloc[all_rows])
                tracking.log_importance(
                    importance, f"{winner.name}: feature importance ({dataset.symbol} {spec.name})"
                )
                tracking.log_json(dataset.lineage, "lineage.json")
                tracking.log_table(table)
                tracking.log_file(plot_path)
                mlflow.log_params({"final_train_rows": len(all_rows)})
                mlflow.set_tag("winner", "true")
                info = tracking.log_forecaster(final_model, x.iloc[:5], spec.kind)
            progress.advance(final_task)
            mlflow.log_metrics(tracking.finite(winner.aggregate()))
            if champion.value is not None:
                mlflow.log_metric("champion_newest_pool_value_net", champion.value)
            decision_doc = {
                "promote": decision.promote,
                "reason": decision.reason,
                "primary_metric": decision.primary_metric,
                "challenger": winner.name,
                "challenger_value": decision.challenger_value,
                "bar": decision.bar,
                "bar_name": decision.bar_name,
                "champion": champion.__dict__,
            }
            tracking.log_json(decision_doc, "promotion.json")
            mlflow.set_tags({"winner": winner.name, "promotion.decision":
                             "promote" if decision.promote else "keep",
                             "promotion.reason": decision.reason[:4000]})  # fmt: skip
            version = None
            promoted = False
            if config.register:
                actor = f"pricebot train ({default_actor()})"
                mv = registry.register_challenger(
                    info.model_uri,
                    name,
                    {
                        "symbol": dataset.symbol,
                        "target": spec.name,
                        "feature_set": dataset.feature_set,
                        "horizon_minutes": str(spec.horizon_minutes),
                        "candidate": winner.name,
                        "training_run_id": parent.info.run_id,
                        "dataset.sha256": str(dataset.lineage["sha256"]),
                    },
                    database_url=database_url,
                    reason=f"best candidate of run {parent.info.run_id} ({winner.name})",
                    moved_by=actor,
                )
                version = str(mv.version)
                if decision.promote:
                    registry.move_alias(database_url, name, CHAMPION, version,
                                        reason=decision.reason, moved_by=actor)  # fmt: skip
                    promoted = True
                mlflow.set_tag("registered_version", version)
            progress.advance(final_task)
    return TrainingOutcome(
        experiment_id=experiment_id,
        parent_run_id=parent.info.run_id,
        model_name=name,
        winner=winner.name,
        winner_run_id=run_ids[winner.name],
        version=version,
        promoted=promoted,
        decision=decision,
        table=table,
        results=results,
        lineage=dataset.lineage,
        champion_note=champion.note,
        extra={"tuning": tuned.__dict__},
    )
