"""The pooled training job: ``pricebot train --symbols A,B,C``.

One model per target over every symbol's rows (:mod:`pricebot.pooling`): the same candidates,
tuning and charts as a single-symbol run, on walk-forward folds in wall time shared by the
symbols; every candidate scored on each symbol's own rows and pooled (coins weighing the same);
the winner chosen on the pooled selection-fold figures; the cross-sectional pool (hold the coin
with the best prediction, :mod:`pricebot.cross_section`) against the coins' equal-weight
buy-and-hold and cash, logged and drawn.

**The gate, per symbol.** A pooled champion serves every one of its symbols, so it must earn
each of them: :func:`pricebot.gate.decide_promotion`, unchanged, runs on each symbol's held-out
window with that symbol's baselines and cash as rivals, plus the pool's current champion scored
on the symbol and the symbol's own single-coin champion (``pricebot-<symbol>-<target>``) where
there is one. The pool is promoted only if every symbol's decision promotes.

Registered as ``pricebot-pool-<label>-<target>`` (:func:`pricebot.registry.pool_model_name`),
the registered model and each version tagged ``symbols`` (comma-separated) and ``pool`` "true".
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import mlflow
import numpy as np

from pricebot.dataset import Dataset, build_dataset
from pricebot.evaluation import CandidateResult, Fold, default_train_step, evaluate_candidate
from pricebot.gate import HeldOut, PromotionDecision, RivalMargin, check_fold_count
from pricebot.gate import decide_promotion as gate_decision
from pricebot.pooling import (
    PooledDataset,
    PooledResult,
    evaluate_cross_section,
    evaluate_pooled,
    evaluate_pooled_baselines,
    member_folds,
    pool_datasets,
    pooled_folds,
)
from pricebot.registry import CHAMPION, Registry, model_name, pool_model_name
from pricebot.targets import parse_target
from pricebot.training_report import (
    ChampionScore,
    CrossSectionReport,
    Registration,
    build_report,
    candidate_report,
    refit_rows,
    score_champion,
    select_winner,
    selection_folds,
)
from pricebot_training import tracking
from pricebot_training.candidates import Candidate, fit
from pricebot_training.job import (
    TrainingConfig,
    TrainingOutcome,
    _check_services,
    _evaluate_candidates,
    _log_winner,
    _Logged,
    _progress,
    _register,
    tag_version,
)


def load_pool(config: TrainingConfig) -> PooledDataset:
    from pricebot.db import connect
    from pricebot.settings import get_settings

    url = config.database_url or get_settings().database_url
    spec = parse_target(config.target)
    with connect(url) as conn:
        datasets = [
            build_dataset(conn, symbol, spec, start=config.start, end=config.end,
                          feature_set=config.feature_set)
            for symbol in config.symbols or []
        ]  # fmt: skip
    return pool_datasets(datasets)


def train_pool(config: TrainingConfig, datasets: list[Dataset] | None = None) -> TrainingOutcome:
    """Run the pooled job (module docstring). ``datasets`` skips the database read."""
    spec = parse_target(config.target)
    check_fold_count(config.folds)
    registry, database_url = _check_services(config)
    pool = pool_datasets(datasets) if datasets is not None else load_pool(config)
    if pool.spec != spec:
        raise ValueError(f"the datasets are for target {pool.spec.name}, not {spec.name}")
    step = config.train_step or default_train_step(spec.horizon_minutes)
    folds = pooled_folds(pool, config.folds, spec.horizon_minutes, train_step=step)
    selection = selection_folds(folds)
    held_out = folds[-1]
    name = pool_model_name(pool.symbols, spec.name, config.pool_label)
    experiment_id = tracking.ensure_experiment(name)
    mlflow.set_experiment(experiment_id=experiment_id)
    per_symbol: dict[str, dict[str, CandidateResult]] = {s: {} for s in pool.symbols}

    def remember(result: PooledResult) -> CandidateResult:
        for s, mine in result.per_symbol.items():
            per_symbol[s][result.combined.name] = mine
        return result.combined

    def evaluate(cname: str, candidate: Candidate, predict: Any) -> CandidateResult:
        return remember(
            evaluate_pooled(
                cname,
                pool,
                folds,
                predict,
                fee=config.fee,
                params=candidate.params,
                selection=selection,
            )
        )

    with (
        _progress(config.show_progress) as progress,
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"train pool {pool.symbol} {spec.name} {datetime.now():%Y-%m-%d %H:%M}",
        ) as parent,
    ):
        tracking.log_job_inputs(config, pool, folds, step)
        mlflow.set_tags({"pool": "true", "symbols": pool.symbol})
        baselines = [remember(r) for r in evaluate_pooled_baselines(pool, folds, fee=config.fee)]
        evaluated = _evaluate_candidates(config, pool, folds, selection, progress,
                                         evaluate=evaluate, baselines=baselines)  # fmt: skip
        final_task = progress.add_task("final fit, logging, registry", total=3)
        winner = select_winner(evaluated.results, selection)
        rows = refit_rows(pool.times, step)
        x, y = pool.features, pool.label
        final_model = fit(evaluated.candidates[winner.name], x.iloc[rows], y.iloc[rows], spec,
                          config.class_weight)  # fmt: skip
        progress.advance(final_task)
        winner_pooled = PooledResult(
            evaluated.result(winner.name),
            {s: per_symbol[s][winner.name] for s in pool.symbols},
        )
        cross, equal_hold, held_shares = evaluate_cross_section(pool, folds, winner_pooled,
                                                                fee=config.fee)  # fmt: skip
        decisions, champion = _decide(registry, name, pool, folds, per_symbol, winner.name,
                                      config.fee)  # fmt: skip
        decision = combine_decisions(decisions)
        report = build_report(
            dataset=pool, folds=folds, selection=selection, results=evaluated.results,
            winner=winner, champion=champion, decision=decision, model_name=name,
            fee=config.fee, train_step=step, refit_rows=len(rows),
        )  # fmt: skip
        held = [held_out.number]
        report = dataclasses.replace(
            report,
            symbols=list(pool.symbols),
            per_symbol={
                s: [candidate_report(r, selection, held) for r in per_symbol[s].values()]
                for s in pool.symbols
            },
            per_symbol_decisions=decisions,
            cross_section=CrossSectionReport(
                model=winner.name,
                rule="each period the coin with the best predicted return net of a move's fees, "
                "else cash (pricebot.cross_section)",
                strategy=candidate_report(cross, selection, held),
                equal_weight_hold=candidate_report(equal_hold, selection, held),
                held_share_heldout=held_shares[held_out.number],
            ),
        )
        from pricebot.evaluation import evaluation_table

        table = evaluation_table([*evaluated.results, cross, equal_hold], selection, held)
        plotted = [*evaluated.results, cross, equal_hold]
        logged = _Logged(
            title=pool.symbol, times=pool.times, y=y.to_numpy(), importance_rows=x.iloc[rows],
            model_rows=pool.model_input(slice(0, 5)), lineage=dict(pool.lineage),
            symbols=list(pool.symbols),
        )  # fmt: skip
        evaluated.results = plotted  # the charts draw the cross-section beside the candidates
        model_uri = _log_winner(report, table, evaluated, evaluated.result(winner.name),
                                final_model, logged, folds, spec)  # fmt: skip
        _log_pool_extras(pool, per_symbol, cross, selection, held)
        progress.advance(final_task)
        version, promoted = None, False
        if config.register:
            version, promoted = _register(registry, report, model_uri, parent.info.run_id,
                                          database_url)  # fmt: skip
            tag_pool(registry, name, pool.symbols, version)
            tag_version(registry, name, version, config.extra_tags)
        report = dataclasses.replace(
            report,
            registration=Registration(name, experiment_id, parent.info.run_id,
                                      evaluated.run_ids[winner.name], version, promoted),
        )  # fmt: skip
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
        lineage=pool.lineage,
        report=report,
        champion_note=champion.note,
        extra={
            "per_symbol": per_symbol,
            "cross_section": cross,
            "equal_weight_hold": equal_hold,
            "left_out": evaluated.notes,
            "candidate_seconds": evaluated.seconds,
        },
    )


def tag_pool(registry: Registry, name: str, symbols: list[str], version: str | None) -> None:
    """The pool's symbols on the registered model (what the service reads to find the pool
    serving a symbol) and on the version."""
    client = registry.client
    client.set_registered_model_tag(name, "symbols", ",".join(symbols))
    client.set_registered_model_tag(name, "pool", "true")
    client.set_registered_model_tag(name, "target", name.rsplit("-", 1)[-1])
    if version is not None:
        client.set_model_version_tag(name, version, "symbols", ",".join(symbols))
        client.set_model_version_tag(name, version, "pool", "true")


def _log_pool_extras(
    pool: PooledDataset,
    per_symbol: dict[str, dict[str, CandidateResult]],
    cross: CandidateResult,
    selection: list[int],
    held: list[int],
) -> None:
    """Into the parent run: each symbol's evaluation table and the cross-section's figures."""
    from pricebot.evaluation import evaluation_table

    for s in pool.symbols:
        table = evaluation_table(list(per_symbol[s].values()), selection, held)
        mlflow.log_text(table.to_csv(), f"per_symbol/evaluation_table_{s}.csv")
    over_selection, over_held = cross.over(selection), cross.over(held)
    mlflow.log_metrics(tracking.finite({
        "selection_cross_section_pool_value_net": over_selection["pool_value_net"],
        "heldout_cross_section_pool_value_net": over_held["pool_value_net"],
        "heldout_equal_weight_hold_net": over_held["buy_hold_net"],
        "selection_equal_weight_hold_net": over_selection["buy_hold_net"],
    }))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The gate, per symbol


def _score_pool_champion(
    registry: Registry, name: str, pool: PooledDataset, folds: list[Fold], fee: float
) -> tuple[ChampionScore, dict[str, CandidateResult]]:
    """The pool's current champion scored on each symbol's held-out rows."""
    version = registry.alias_version(name, CHAMPION)
    if version is None:
        return ChampionScore(None, True, None, "no champion yet"), {}
    tags = registry.get_version(name, version).tags or {}
    if tags.get("feature_set") not in (None, pool.feature_set):
        note = f"champion v{version} uses feature set {tags.get('feature_set')}"
        return ChampionScore(version, False, None, note), {}
    threshold = float(tags["decision_threshold"]) if "decision_threshold" in tags else None
    results = {}
    try:
        model = registry.load(name, version)
        for s in pool.symbols:
            member = pool.members[s]
            fold = member_folds(pool, folds, s)[-1]
            frame = member.features.iloc[fold.test].reset_index(drop=True).assign(symbol=s)
            pred = np.asarray(model.predict(frame), dtype="float64").ravel()
            results[s] = evaluate_candidate(
                "champion", [fold], member.times, member.label.to_numpy(),
                member.forward_return.to_numpy(), pool.spec, lambda _, p=pred: p,
                kind="champion", fee=fee, threshold=threshold,
            )  # fmt: skip
    except Exception as exc:  # any failure to load or run it means: a person decides
        return ChampionScore(
            version, False, None, f"champion v{version} failed to score: {exc}"
        ), {}
    value = float(np.mean([r.folds["pool_value_net"].iloc[0] for r in results.values()]))
    return ChampionScore(version, True, value, f"champion v{version} scored", threshold), results


def _decide(
    registry: Registry,
    name: str,
    pool: PooledDataset,
    folds: list[Fold],
    per_symbol: dict[str, dict[str, CandidateResult]],
    winner: str,
    fee: float,
) -> tuple[dict[str, PromotionDecision], ChampionScore]:
    champion, pooled_champion = _score_pool_champion(registry, name, pool, folds, fee)
    decisions = {}
    for s in pool.symbols:
        member = pool.members[s]
        fold = member_folds(pool, folds, s)[-1]
        window = HeldOut.of(fold, member.times, member.label.to_numpy(),
                            member.forward_return.to_numpy())  # fmt: skip
        baselines = [r for r in per_symbol[s].values() if r.kind == "baseline"]
        own, own_result = score_champion(registry, model_name(s, pool.spec.name), member, fold,
                                         fee)  # fmt: skip
        if own_result is not None:
            own_result.name = f"{s} champion"
            baselines = [*baselines, own_result]
        decisions[s] = gate_decision(
            per_symbol[s][winner], baselines, pool.spec, window,
            champion=pooled_champion.get(s), champion_scored=champion.scored and own.scored,
            fee=fee,
        )  # fmt: skip
    return decisions, champion


def combine_decisions(decisions: dict[str, PromotionDecision]) -> PromotionDecision:
    """The pool's decision: promote only if every symbol's decision promotes; the reasons,
    rivals and failed checks of each, named by symbol."""
    promote = all(d.promote for d in decisions.values())
    margins = [
        RivalMargin(f"{s}: {m.rival}", m.value, m.margin, m.lower_bound, m.beaten)
        for s, d in decisions.items()
        for m in d.margins
    ]
    failed = [f"{s}: {line}" for s, d in decisions.items() for line in d.failed]
    weakest = min(decisions.items(), key=lambda kv: kv[1].challenger_value)
    strongest = max(decisions.items(), key=lambda kv: kv[1].bar)
    verdict = "every symbol's" if promote else "not every symbol's"
    reason = f"pooled: {verdict} held-out window promotes. " + " | ".join(
        f"{s}: {d.reason}" for s, d in decisions.items()
    )
    first = next(iter(decisions.values()))
    return PromotionDecision(
        promote=promote,
        reason=reason,
        primary_metric=first.primary_metric,
        challenger_value=float(np.mean([d.challenger_value for d in decisions.values()])),
        bar=strongest[1].bar,
        bar_name=f"{strongest[0]}: {strongest[1].bar_name}",
        held_out_fold=first.held_out_fold,
        holds=min(d.holds for d in decisions.values()),
        margins=margins,
        accuracy=weakest[1].accuracy,
        failed=failed,
        method=first.method + "; applied to each symbol's held-out window, all must promote",
    )
