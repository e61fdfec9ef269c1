"""The training job: dataset -> purged walk-forward folds -> baselines, Ridge, Huber, tuned
XGBoost -> MLflow runs -> the winner registered as ``challenger`` -> promoted if it earns it.

This module fits and tunes, shows progress, logs to MLflow and registers. What follows from the
candidates' results (the winner, the rows of the final fit, the champion's score, the decision,
the report) is computed by the core: :mod:`pricebot.evaluation`, :mod:`pricebot.gate` and
:mod:`pricebot.training_report`.

Order of work, chosen so a failure leaves nothing misleading behind:

1. Everything that can be checked cheaply is checked first: the target spec, the number of
   folds (at least two: the newest is held out), the tracking server, the database, the symbol
   and its data, the folds.
2. Candidates are evaluated and logged as nested runs of one parent run. Tuning, the winner
   rule and classifiers' decision thresholds see the selection folds only.
3. The winner (:func:`pricebot.training_report.select_winner`) is refitted on all labelled rows
   and logged as a pyfunc model with its feature importance, the evaluation table, the plots
   and the training report.
4. Only then is a model version created (tags included) and given the ``challenger`` alias;
   the champion moves only under :func:`pricebot.gate.decide_promotion`, on the held-out fold.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
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
    default_train_step,
    evaluate_baselines,
    evaluate_candidate,
    evaluation_table,
    plot_calibration,
    plot_evaluation,
    walk_forward_folds,
)
from pricebot.forecaster import predict_values
from pricebot.gate import HeldOut, PromotionDecision, check_fold_count, decide_promotion
from pricebot.registry import CHAMPION, Registry, default_actor, model_name
from pricebot.targets import DEFAULT_TARGET, parse_target
from pricebot.training_report import (
    Registration,
    TrainingReport,
    build_report,
    held_out_fold,
    refit_rows,
    score_champion,
    select_winner,
    selection_folds,
    tracked_metrics,
)
from pricebot_training import charts, tracking
from pricebot_training.candidates import (
    Candidate,
    CandidatePlugin,
    ClassWeight,
    choose,
    feature_importance,
    fit,
    split_trials,
)
from pricebot_training.tuning import TuningResult, tune


@dataclass
class TrainingConfig:
    symbol: str = ""  # one symbol, or
    symbols: list[str] | None = None  # a pool's symbols (pricebot_training.pool_job)
    pool_label: str | None = None  # names the pool (default: a hash of its symbols)
    target: str = DEFAULT_TARGET
    trials: int = 30
    folds: int = 5
    start: datetime | None = None
    end: datetime | None = None
    seed: int = 42
    fee: float = DEFAULT_FEE
    train_step: int | None = None  # default: H // 24 (see pricebot.evaluation)
    feature_set: str | None = None
    class_weight: ClassWeight = "balanced"  # classifiers only (see pricebot_training.candidates)
    candidates: list[str] | None = None  # candidate families by name; None: every installed one
    families: list[CandidatePlugin] | None = None  # families given as objects (bring your own)
    extra_tags: dict[str, str] = field(default_factory=dict)  # onto the registered version
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
    report: TrainingReport
    plot_path: Path | None = None
    champion_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Evaluated:
    """The candidates' results, their MLflow runs, and what is needed to refit the winner."""

    results: list[CandidateResult] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)
    candidates: dict[str, Candidate] = field(default_factory=dict)
    newest_models: dict[str, Any] = field(default_factory=dict)  # fitted on the newest fold
    tuning: dict[str, TuningResult] = field(default_factory=dict)  # per tuned candidate
    seconds: dict[str, float] = field(default_factory=dict)  # per candidate: tuning + folds
    notes: list[str] = field(default_factory=list)  # families left out (not installed)

    def add(self, result: CandidateResult, run_id: str) -> None:
        self.results.append(result)
        self.run_ids[result.name] = run_id

    def of_kind(self, kind: str) -> list[CandidateResult]:
        return [r for r in self.results if r.kind == kind]

    def result(self, name: str) -> CandidateResult:
        return next(r for r in self.results if r.name == name)


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


def _check_services(config: TrainingConfig) -> tuple[Registry, str | None]:
    """The tracking server and (when alias moves are recorded) the database, before any work."""
    from pricebot.settings import get_settings

    uri = config.tracking_uri or get_settings().tracking_uri()
    mlflow.set_tracking_uri(uri)
    registry = Registry(uri)
    registry.check()
    database_url = None
    if config.register and config.record_history:
        from pricebot.db import connect

        database_url = config.database_url or get_settings().database_url
        connect(database_url).close()  # unreachable: a clear error now, not after the work
    return registry, database_url


def train(config: TrainingConfig, dataset: Dataset | None = None) -> TrainingOutcome:
    """Run the whole job (see the module docstring). ``dataset`` skips the database read.
    A config with ``symbols`` runs the pooled job.
    """
    if config.symbols:
        from pricebot_training.pool_job import train_pool

        return train_pool(config)
    spec = parse_target(config.target)
    check_fold_count(config.folds)
    registry, database_url = _check_services(config)
    if dataset is None:
        dataset = load_dataset(config)
    elif dataset.spec != spec:
        raise ValueError(f"the dataset is for target {dataset.spec.name}, not {spec.name}")
    step = config.train_step or default_train_step(spec.horizon_minutes)
    folds = walk_forward_folds(dataset.times, config.folds, spec.horizon_minutes, train_step=step)
    selection = selection_folds(folds)
    held_out = held_out_fold(folds)
    name = model_name(dataset.symbol, spec.name)
    experiment_id = tracking.ensure_experiment(name)
    # Nested runs go to the *active* experiment, not their parent's: make it this one.
    mlflow.set_experiment(experiment_id=experiment_id)

    with (
        _progress(config.show_progress) as progress,
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"train {dataset.symbol} {spec.name} {datetime.now():%Y-%m-%d %H:%M}",
        ) as parent,
    ):
        tracking.log_job_inputs(config, dataset, folds, step)
        evaluated = _evaluate_candidates(config, dataset, folds, selection, progress)

        final_task = progress.add_task("final fit, logging, registry", total=3)
        winner = select_winner(evaluated.results, selection)
        rows = refit_rows(dataset.times, step)
        x, y = dataset.features, dataset.label
        final_model = fit(evaluated.candidates[winner.name], x.iloc[rows], y.iloc[rows], spec,
                          config.class_weight)  # fmt: skip
        progress.advance(final_task)
        if winner.name != "xgboost" and "xgboost" in evaluated.newest_models:
            # XGBoost's own view of the features, from its newest-fold model, for comparison.
            tracking.log_importance(
                feature_importance(evaluated.newest_models["xgboost"], x.iloc[folds[-1].train]),
                f"XGBoost mean |SHAP| ({dataset.symbol} {spec.name}, newest fold)",
                prefix="xgboost_",
            )
        champion, champion_result = score_champion(registry, name, dataset, held_out, config.fee)
        window = HeldOut.of(held_out, dataset.times, y.to_numpy(),
                            dataset.forward_return.to_numpy())  # fmt: skip
        decision = decide_promotion(
            evaluated.result(winner.name), evaluated.of_kind("baseline"), spec, window,
            champion=champion_result, champion_scored=champion.scored, fee=config.fee,
        )  # fmt: skip
        report = build_report(
            dataset=dataset, folds=folds, selection=selection, results=evaluated.results,
            winner=winner, champion=champion, decision=decision, model_name=name,
            fee=config.fee, train_step=step, refit_rows=len(rows),
        )  # fmt: skip
        table = evaluation_table(evaluated.results, selection, [held_out.number])
        winner_result = evaluated.result(winner.name)
        logged = _Logged(dataset.symbol, dataset.times, y.to_numpy(), x.iloc[rows], x.iloc[:5],
                         dict(dataset.lineage))  # fmt: skip
        model_uri = _log_winner(report, table, evaluated, winner_result, final_model, logged,
                                folds, spec)  # fmt: skip
        progress.advance(final_task)
        version = None
        promoted = False
        if config.register:
            version, promoted = _register(
                registry, report, model_uri, parent.info.run_id, database_url
            )
            tag_version(registry, name, version, config.extra_tags)
        report = dataclasses.replace(
            report,
            registration=Registration(
                model_name=name,
                experiment_id=experiment_id,
                parent_run_id=parent.info.run_id,
                winner_run_id=evaluated.run_ids[winner.name],
                version=version,
                promoted=promoted,
            ),
        )
        tracking.log_report(report)
        progress.advance(final_task)
    return TrainingOutcome(
        experiment_id=experiment_id,
        parent_run_id=parent.info.run_id,
        model_name=name,
        winner=winner.name,
        winner_run_id=evaluated.run_ids[winner.name],
        version=version,
        promoted=promoted,
        decision=decision,
        table=table,
        results=evaluated.results,
        lineage=dataset.lineage,
        report=report,
        champion_note=champion.note,
        extra={
            "tuning": {
                name: {
                    "best_params": t.best_params,
                    "best_value": t.best_value,
                    "trials": t.trials,
                    "pruned": t.pruned,
                }
                for name, t in evaluated.tuning.items()
            },
            "left_out": evaluated.notes,
            "candidate_seconds": evaluated.seconds,
        },
    )


def _fitted_predict(
    candidate: Candidate,
    dataset: Dataset,
    newest: dict[str, Any],
    class_weight: ClassWeight,
    tuned: TuningResult | None = None,
) -> Callable[[Fold], np.ndarray]:
    """Fit on the fold's training rows and predict its test rows; a fold the tuning's best
    trial already fitted with exactly these parameters reuses that trial's predictions (the
    same fit: same parameters, seed and rows), so each family's selection folds are fitted
    once, not twice. The newest fold (held out, never tuned on) is always fitted here."""
    x, y, spec = dataset.features, dataset.label, dataset.spec
    reuse = tuned.fold_predictions if tuned and tuned.fitted_params == candidate.params else {}

    def predict(fold: Fold) -> np.ndarray:
        if fold.number in reuse:
            return reuse[fold.number]
        model = fit(candidate, x.iloc[fold.train], y.iloc[fold.train], spec, class_weight)
        newest[candidate.name] = model  # the newest fold's model: the most training data
        return predict_values(model, x.iloc[fold.test], spec.kind)

    return predict


def _evaluate_candidates(
    config: TrainingConfig,
    dataset: Any,
    folds: list[Fold],
    selection: list[int],
    progress: Progress,
    *,
    evaluate: Callable[[str, Candidate, Callable[[Fold], np.ndarray]], CandidateResult]
    | None = None,
    baselines: list[CandidateResult] | None = None,
) -> _Evaluated:
    """Baselines and every candidate family, each tuned on the selection folds within its share
    of the trial budget, then scored on every fold; each a nested run.

    ``evaluate`` and ``baselines`` let a pooled run score the same fits its own way."""
    spec = dataset.spec
    times, y, fwd = dataset.times, dataset.label.to_numpy(), dataset.forward_return.to_numpy()
    held_out = [f.number for f in folds if f.number not in selection]
    evaluated = _Evaluated()
    families, notes = (config.families, []) if config.families else choose(spec, config.candidates)
    evaluated.notes = notes
    shares = split_trials(config.trials, families)
    work = progress.add_task("candidates", total=len(families) + 1)

    def log(run_name: str, result: CandidateResult, seconds: float | None = None) -> None:
        # seconds: its tuning and its folds, on this machine
        extra = {"candidate_seconds": seconds} if seconds is not None else None
        with mlflow.start_run(run_name=run_name, nested=True) as run:
            tracking.log_candidate(result, selection, held_out, extra)
        evaluated.add(result, run.info.run_id)

    # Baselines (cash among them): causal predictions for every row, scored on the same folds.
    if baselines is None:
        baselines = evaluate_baselines(
            folds, times, y, fwd, dataset.past_return.to_numpy(), dataset.recent_mean.to_numpy(),
            spec, fee=config.fee,
        )  # fmt: skip
    for result in baselines:
        log(f"baseline {result.name}", result)
    progress.advance(work)

    def default_evaluate(
        name: str, candidate: Candidate, predict: Callable[[Fold], np.ndarray]
    ) -> CandidateResult:
        return evaluate_candidate(name, folds, times, y, fwd, spec, predict, fee=config.fee,
                                  params=candidate.params, selection=selection)  # fmt: skip

    score = evaluate or default_evaluate
    tuning_folds = [f for f in folds if f.number in selection]
    for family in families:
        started = time.perf_counter()
        tuned = _tune(config, dataset, family, tuning_folds, shares[family.name], progress)
        candidate = family.candidate(spec, tuned.best_params, config.seed)
        if tuned.trials:
            evaluated.tuning[candidate.name] = tuned
        evaluated.candidates[candidate.name] = candidate
        predict = _fitted_predict(candidate, dataset, evaluated.newest_models,
                                  config.class_weight, tuned)  # fmt: skip
        result = score(candidate.name, candidate, predict)
        evaluated.seconds[candidate.name] = round(time.perf_counter() - started, 2)
        log(candidate.name, result, evaluated.seconds[candidate.name])
        progress.advance(work)
    return evaluated


def _tune(
    config: TrainingConfig,
    dataset: Any,
    family: CandidatePlugin,
    tuning_folds: list[Fold],
    trials: int,
    progress: Progress,
) -> TuningResult:
    """One family tuned on the selection folds only, each trial a nested run of its tuning run
    (no run at all for a family that runs at its defaults)."""
    if trials <= 0 or not family.tunable:
        return TuningResult({}, float("nan"), 0, 0)
    name = family.name_for(dataset.spec)
    trial_task = progress.add_task(f"tuning {name}", total=trials)
    with mlflow.start_run(run_name=f"{name} tuning", nested=True):
        mlflow.set_tags({"candidate": name, "stage": "tuning"})

        def on_trial(number: int, params: dict, value: float | None, state: str) -> None:
            with mlflow.start_run(run_name=f"trial {number}", nested=True):
                tracking.log_batch(
                    params=params,
                    tags={"trial_state": state},
                    metrics=None if value is None else {"selection_rmse": value},
                )
            progress.advance(trial_task)

        tuned = tune(family, dataset, tuning_folds, trials=trials, seed=config.seed,
                     on_trial=on_trial, class_weight=config.class_weight)  # fmt: skip
        mlflow.log_params({"trials": tuned.trials, "pruned": tuned.pruned})
        if tuned.best_params:
            mlflow.log_metric("best_selection_rmse", tuned.best_value)
        tracking.log_json(tuned.best_params, "best_params.json")
        tracking.log_tuning_charts(tuned, name)
    return tuned


@dataclass
class _Logged:
    """What the winner's logging needs to know about the data, single-symbol or pooled."""

    title: str  # "AVAXUSDT" or the pool's symbols
    times: pd.DatetimeIndex
    y: np.ndarray
    importance_rows: pd.DataFrame  # rows to explain the final model on (its training matrix)
    model_rows: pd.DataFrame  # rows of the served model's input (the input example)
    lineage: dict[str, Any]
    symbols: list[str] | None = None  # a pooled model's symbols
    extra_plots: Callable[[Path], list[Path]] | None = None


def run_charts(
    results: list[CandidateResult],
    winner: CandidateResult,
    logged: _Logged,
    folds: list[Fold],
    selection: list[int],
    spec: Any,
    fee: float,
    tmp: Path,
) -> list[Path]:
    """Every chart of a run (see :mod:`pricebot_training.charts`), drawn into ``tmp``."""
    held = folds[-1].number
    title = f"{logged.title} {spec.name}"
    plots = [
        plot_evaluation(
            results, tmp / "evaluation.png",
            f"{title}: out-of-sample pool value after {fee:.2%} per side", held_out=folds[-1],
        ),
        charts.plot_predicted_vs_realised(
            winner, logged.y, folds, held, tmp / "predicted_vs_realised.png",
            f"{title}: {winner.name} predicted against realised, out of sample",
        ),
        charts.plot_residuals(
            winner, logged.times, logged.y, folds, held, tmp / "residuals.png",
            f"{title}: {winner.name} residuals over time, out of sample",
        ),
    ]  # fmt: skip
    if spec.is_classification:
        plots.append(plot_calibration(
            results, logged.y, folds, selection, tmp / "calibration.png",
            f"{title}: calibration of the event probabilities",
        ))  # fmt: skip
        plots.append(charts.plot_roc(results, logged.y, folds, held, tmp / "roc.png",
                                     f"{title}: ROC of the event probabilities"))  # fmt: skip
    if logged.extra_plots is not None:
        plots.extend(logged.extra_plots(tmp))
    return plots


def _log_winner(
    report: TrainingReport,
    table: pd.DataFrame,
    evaluated: _Evaluated,
    winner: CandidateResult,
    final_model: Any,
    logged: _Logged,
    folds: list[Fold],
    spec: Any,
) -> str:
    """Into the parent run and the winner's run: the table, the charts, the report, the model.
    Returns the logged model's URI."""
    selection = report.selection_folds
    candidate = evaluated.candidates[winner.name]
    requirements = candidate.plugin.requirements if candidate.plugin else ("xgboost",)
    with tempfile.TemporaryDirectory() as tmp:
        plots = run_charts(evaluated.results, winner, logged, folds, selection, spec,
                           report.fee, Path(tmp))  # fmt: skip
        tracking.log_table(table)
        for plot in plots:
            tracking.log_file(plot)
        with mlflow.start_run(run_id=evaluated.run_ids[winner.name], nested=True):
            importance = feature_importance(final_model, logged.importance_rows,
                                            family=candidate.plugin)  # fmt: skip
            tracking.log_importance(
                importance, f"{winner.name}: feature importance ({logged.title} {spec.name})"
            )
            tracking.log_json(logged.lineage, "lineage.json")
            tracking.log_table(table)
            for plot in plots:
                tracking.log_file(plot)
            mlflow.log_params({"final_train_rows": len(logged.importance_rows)})
            mlflow.set_tag("winner", "true")
            info = tracking.log_forecaster(final_model, logged.model_rows, spec.kind,
                                           requirements=requirements,
                                           symbols=logged.symbols)  # fmt: skip
    mlflow.log_metrics(tracking.finite(tracked_metrics(winner, selection, report.held_out_folds)))
    tracking.log_decision(report)
    return str(info.model_uri)


def _register(
    registry: Registry,
    report: TrainingReport,
    model_uri: str,
    parent_run_id: str,
    database_url: str | None,
) -> tuple[str, bool]:
    """A version tagged per the contract, as ``challenger``; champion if the decision says so."""
    actor = f"pricebot train ({default_actor()})"
    winner = report.winner.name
    mv = registry.register_challenger(
        model_uri,
        report.model_name,
        version_tags(report, parent_run_id),
        database_url=database_url,
        reason=f"best candidate of run {parent_run_id} ({winner})",
        moved_by=actor,
    )
    version = str(mv.version)
    promoted = False
    if report.decision.promote:
        registry.move_alias(database_url, report.model_name, CHAMPION, version,
                            reason=report.decision.reason, moved_by=actor)  # fmt: skip
        promoted = True
    mlflow.set_tag("registered_version", version)
    return version, promoted


def tag_version(registry: Registry, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        registry.client.set_model_version_tag(name, version, key, value)


def version_tags(report: TrainingReport, parent_run_id: str) -> dict[str, str]:
    """The tags every registered version carries (the contract the service relies on)."""
    tags = {
        "symbol": report.symbol,
        "target": report.target,
        "feature_set": report.feature_set,
        "horizon_minutes": str(report.horizon_minutes),
        "candidate": report.winner.name,
        "training_run_id": parent_run_id,
        "dataset.sha256": str(report.lineage["sha256"]),
        "market": report.market,  # the provenance contract: the class of the training data
        "heldout_fold": ",".join(str(n) for n in report.held_out_folds),
    }
    threshold = report.candidate(report.winner.name).threshold
    if threshold is not None:
        tags["decision_threshold"] = repr(float(threshold))  # what a probability is called at
    return tags
