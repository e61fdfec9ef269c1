"""The training report: what one training run found and decided, as typed data.

A training run fits candidates on walk-forward folds; everything that follows from their
out-of-sample results is computed here, in the core, so that it can be tested without MLflow
and read by anything that needs it (the CLI table, ``pricebot up``, a benchmark) without
parsing log text:

- which folds selected the winner and which were held out from every choice,
- each candidate's figures over the selection folds and over the held-out fold, apart,
- the winner and why it won (:func:`select_winner`),
- the current champion's score on the held-out window (:func:`score_champion`),
- the promotion decision of :mod:`pricebot.gate` with its reasons, the lineage of the data
  (and the market it came from), the rows of the final fit.

Metric names (MLflow, :func:`tracked_metrics`): ``selection_<metric>`` is a mean over the
selection folds, ``heldout_<metric>`` the held-out fold alone; ``fold_<metric>`` per fold.
Nothing mixes the two.

The training adapter fits and tunes the candidates, logs this report to MLflow (``report.json``)
and registers the winner; ``pricebot train --report-json PATH`` writes the same document for
other programs. :func:`read_report` reads it back into the same dataclasses.

The report is built to grow: a candidate is a name, a kind and its figures, so new kinds of
candidates (pooled models, plug-ins) add rows, not fields.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from pricebot.evaluation import (
    METRICS,
    PRIMARY_METRIC,
    CandidateResult,
    Fold,
    evaluate_candidate,
)
from pricebot.gate import MIN_FOLDS, Number, PromotionDecision

REPORT_SCHEMA = 2
#: What a version's market is when its candles' provenance was not recorded.
UNRECORDED_MARKET = "unrecorded"

Figures = dict[str, Number]


@dataclass(frozen=True)
class FoldSummary:
    """One walk-forward fold and what it was used for."""

    number: int
    selection: bool  # used to tune and to choose the winner
    held_out: bool  # used for the promotion decision
    train_rows: int
    test_rows: int
    test_start: str
    test_end: str  # exclusive


@dataclass(frozen=True)
class CandidateReport:
    """One candidate's out-of-sample figures, over the selection folds and the held-out fold
    apart, and per fold."""

    name: str
    kind: str  # "model" or "baseline"
    params: dict[str, Any]
    selection: Figures
    held_out: Figures
    folds: list[Figures]  # one per fold, with its number under "fold"
    threshold: Number | None = None  # a classifier's decision threshold (chosen on selection)


@dataclass(frozen=True)
class RankedCandidate:
    name: str
    pool_value_net: Number
    directional_accuracy: Number


@dataclass(frozen=True)
class WinnerChoice:
    """The model that goes forward, and the rule that chose it."""

    name: str
    rule: str
    selection_folds: list[int]
    ranking: list[RankedCandidate]  # every model, best first
    reason: str


@dataclass(frozen=True)
class ChampionScore:
    """The current champion's figure on the held-out window (it is one of the rivals)."""

    version: str | None
    scored: bool
    value: Number | None
    note: str
    threshold: Number | None = None


@dataclass(frozen=True)
class Registration:
    """What the training adapter did with the winner (absent when nothing was logged yet)."""

    model_name: str
    experiment_id: str
    parent_run_id: str
    winner_run_id: str
    version: str | None
    promoted: bool


@dataclass(frozen=True)
class CrossSectionReport:
    """A pooled model's cross-sectional pool (:mod:`pricebot.cross_section`) and its rival."""

    model: str  # the candidate whose predictions it ranks (the winner)
    rule: str
    strategy: CandidateReport
    equal_weight_hold: CandidateReport
    held_share_heldout: dict[str, float]  # share of the held-out periods each coin (or cash)


@dataclass(frozen=True)
class TrainingReport:
    symbol: str
    target: str
    kind: str
    horizon_minutes: int
    feature_set: str
    fee: float
    train_step: int
    purge_minutes: int
    model_name: str
    market: str
    folds: list[FoldSummary]
    candidates: list[CandidateReport]
    winner: WinnerChoice
    champion: ChampionScore
    decision: PromotionDecision
    lineage: dict[str, Any]
    refit_rows: int
    registration: Registration | None = None
    schema: int = REPORT_SCHEMA
    # A pooled model (pricebot.pooling): its symbols, every candidate's figures on each symbol's
    # own rows, the gate's decision on each symbol's held-out window (``decision`` combines
    # them), and the cross-sectional pool's figures. Empty for a single-symbol model.
    symbols: list[str] = field(default_factory=list)
    per_symbol: dict[str, list[CandidateReport]] = field(default_factory=dict)
    per_symbol_decisions: dict[str, PromotionDecision] = field(default_factory=dict)
    cross_section: CrossSectionReport | None = None

    @property
    def selection_folds(self) -> list[int]:
        return [f.number for f in self.folds if f.selection]

    @property
    def held_out_folds(self) -> list[int]:
        return [f.number for f in self.folds if f.held_out]

    def candidate(self, name: str) -> CandidateReport:
        for candidate in self.candidates:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no candidate {name!r} in the report")


_ADAPTER: TypeAdapter[TrainingReport] = TypeAdapter(TrainingReport)


# ---------------------------------------------------------------------------------------------
# Folds, winner, refit


def selection_folds(folds: Sequence[Fold]) -> list[int]:
    """Every fold but the newest: they tune, choose the winner and its decision threshold. The
    newest is held out for the promotion decision (:func:`pricebot.gate.check_fold_count`
    refuses a run with nothing to hold out)."""
    if len(folds) < MIN_FOLDS:
        raise ValueError(f"{len(folds)} fold(s): nothing would be held out from selection")
    return [f.number for f in folds[:-1]]


def held_out_fold(folds: Sequence[Fold]) -> Fold:
    return folds[-1]


def select_winner(results: Sequence[CandidateResult], selection: Sequence[int]) -> WinnerChoice:
    """The model with the best mean net pool value over the selection folds; ties go to the
    better mean directional accuracy there. Baselines are rivals, never winners."""
    models = [r for r in results if r.kind == "model"]
    if not models:
        raise ValueError("no model candidates to choose from")

    def score(result: CandidateResult) -> tuple[float, float]:
        return (
            result.mean_over(PRIMARY_METRIC, selection),
            result.mean_over("directional_accuracy", selection),
        )

    ranked = sorted(models, key=score, reverse=True)
    winner = ranked[0]
    folds_text = ", ".join(str(f) for f in selection)
    rule = (
        f"best mean {PRIMARY_METRIC} over the selection folds ({folds_text}); ties by mean "
        "directional accuracy there"
    )
    best_pool, best_accuracy = score(winner)
    reason = (
        f"{winner.name}: mean {PRIMARY_METRIC} {best_pool:.4f} (directional accuracy "
        f"{best_accuracy:.3f}) on folds {folds_text}"
    )
    if len(ranked) > 1:
        second = ranked[1]
        reason += f", ahead of {second.name} ({score(second)[0]:.4f})"
    return WinnerChoice(
        name=winner.name,
        rule=rule,
        selection_folds=list(selection),
        ranking=[RankedCandidate(r.name, *score(r)) for r in ranked],
        reason=reason,
    )


def refit_rows(times: pd.DatetimeIndex, train_step: int) -> np.ndarray:
    """The rows the winner is refitted on: every labelled row on the training clock (every
    ``train_step``-th minute, like the folds' training rows)."""
    minutes = (times.asi8 // 60_000_000_000) % train_step == 0
    return np.flatnonzero(minutes)


# ---------------------------------------------------------------------------------------------
# The champion


def score_champion(
    registry: Any, name: str, dataset: Any, fold: Fold, fee: float
) -> tuple[ChampionScore, CandidateResult | None]:
    """The current champion scored on ``fold``'s test rows (a rival in the gate), with the
    decision threshold it was registered with.

    It may have been trained on part of this window (an older run's data overlaps), which favours
    it: a challenger has to beat a champion that possibly saw the test, never the other way.
    ``registry`` is a :class:`pricebot.registry.Registry`, ``dataset`` a
    :class:`pricebot.dataset.Dataset`.
    """
    from pricebot.registry import CHAMPION

    version = registry.alias_version(name, CHAMPION)
    if version is None:
        return ChampionScore(None, True, None, "no champion yet"), None
    tags = registry.get_version(name, version).tags or {}
    if tags.get("feature_set") not in (None, dataset.feature_set):
        note = f"champion v{version} uses feature set {tags.get('feature_set')}"
        return ChampionScore(version, False, None, note), None
    threshold = float(tags["decision_threshold"]) if "decision_threshold" in tags else None
    try:
        model = registry.load(name, version)
        x = dataset.features.iloc[fold.test]
        pred = np.asarray(model.predict(x), dtype="float64").ravel()
    except Exception as exc:  # any failure to load or run it means: a person decides
        note = f"champion v{version} failed to score: {exc}"
        return ChampionScore(version, False, None, note), None
    result = evaluate_candidate(
        "champion", [fold], dataset.times, dataset.label.to_numpy(),
        dataset.forward_return.to_numpy(), dataset.spec, lambda _: pred, kind="champion",
        fee=fee, threshold=threshold,
    )  # fmt: skip
    value = float(result.folds.loc[fold.number, PRIMARY_METRIC])
    score = ChampionScore(version, True, value, f"champion v{version} scored", result.threshold)
    return score, result


# ---------------------------------------------------------------------------------------------
# Building, writing and reading the report


def candidate_report(
    result: CandidateResult, selection: Sequence[int], held_out: Sequence[int]
) -> CandidateReport:
    folds = [{"fold": float(number), **row} for number, row in result.folds.iterrows()]
    return CandidateReport(
        name=result.name,
        kind=result.kind,
        params=dict(result.params),
        selection=result.over(selection),
        held_out=result.over(held_out),
        folds=[{k: float(v) for k, v in row.items()} for row in folds],
        threshold=result.threshold,
    )


def tracked_metrics(
    result: CandidateResult, selection: Sequence[int], held_out: Sequence[int]
) -> dict[str, float]:
    """A candidate's figures under the names MLflow keeps: ``selection_<metric>`` (mean over
    the selection folds) and ``heldout_<metric>`` (the held-out fold), apart; plus
    ``newest_pool_value_net``, ``newest_buy_hold_net``, ``newest_directional_accuracy`` and
    ``newest_mae``, the names older readers use (the newest fold is the held-out one)."""
    figures: dict[str, float] = {}
    for part, folds in (("selection", selection), ("heldout", held_out)):
        over = result.over(folds)
        figures.update({f"{part}_{m}": over[m] for m in METRICS if m in over})
    for metric in ("pool_value_net", "buy_hold_net", "directional_accuracy", "mae"):
        figures[f"newest_{metric}"] = figures.get(f"heldout_{metric}", math.nan)
    if result.threshold is not None:
        figures["decision_threshold"] = result.threshold
    return figures


def fold_summaries(
    folds: Sequence[Fold], selection: Sequence[int], held_out: Sequence[int]
) -> list[FoldSummary]:
    return [
        FoldSummary(
            number=f.number,
            selection=f.number in selection,
            held_out=f.number in held_out,
            train_rows=len(f.train),
            test_rows=len(f.test),
            test_start=f.test_start.isoformat(),
            test_end=f.test_end.isoformat(),
        )
        for f in folds
    ]


def build_report(
    *,
    dataset: Any,
    folds: Sequence[Fold],
    selection: Sequence[int],
    results: Sequence[CandidateResult],
    winner: WinnerChoice,
    champion: ChampionScore,
    decision: PromotionDecision,
    model_name: str,
    fee: float,
    train_step: int,
    refit_rows: int,
) -> TrainingReport:
    """The report of one run (``dataset`` is a :class:`pricebot.dataset.Dataset`)."""
    held_out = [held_out_fold(folds).number]
    spec = dataset.spec
    market = str(dataset.lineage.get("market") or UNRECORDED_MARKET)
    return TrainingReport(
        symbol=dataset.symbol,
        target=spec.name,
        kind=spec.kind,
        horizon_minutes=spec.horizon_minutes,
        feature_set=dataset.feature_set,
        fee=fee,
        train_step=train_step,
        purge_minutes=folds[0].purge_minutes,
        model_name=model_name,
        market=market,
        folds=fold_summaries(folds, selection, held_out),
        candidates=[candidate_report(r, selection, held_out) for r in results],
        winner=winner,
        champion=champion,
        decision=decision,
        lineage=dict(dataset.lineage),
        refit_rows=refit_rows,
    )


def report_to_dict(report: TrainingReport) -> dict[str, Any]:
    """The report as JSON-ready data (NaN as null, which ``dump_python`` would keep as NaN)."""
    return json.loads(report_to_json(report))


def report_to_json(report: TrainingReport) -> str:
    return _ADAPTER.dump_json(report, indent=2).decode()


def report_from_json(text: str | bytes) -> TrainingReport:
    return _ADAPTER.validate_json(text)


def write_report(report: TrainingReport, path: Path | str) -> Path:
    """Write the report as JSON, atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(report_to_json(report) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_report(path: Path | str) -> TrainingReport:
    return report_from_json(Path(path).read_bytes())


# ---------------------------------------------------------------------------------------------
# Presentation (plain cells; adapters draw them with their own toolkit)

REPORT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (heading, part, metric)
    ("sel. pool", "selection", "pool_value_net"),
    ("sel. acc.", "selection", "directional_accuracy"),
    ("held-out pool", "held_out", "pool_value_net"),
    ("held-out acc.", "held_out", "directional_accuracy"),
    ("held-out mae", "held_out", "mae"),
    ("trades", "held_out", "trades"),
)
CLASSIFIER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("held-out log loss", "held_out", "log_loss"),
    ("held-out Brier", "held_out", "brier"),
    ("held-out AUC", "held_out", "roc_auc"),
)


def report_title(report: TrainingReport) -> str:
    lineage = report.lineage
    selection = ", ".join(str(n) for n in report.selection_folds)
    held = ", ".join(str(n) for n in report.held_out_folds)
    return (
        f"{report.symbol} {report.target} ({report.market}): folds {selection} select, fold "
        f"{held} is held out and decides; {lineage.get('rows')} rows {lineage.get('start')} .. "
        f"{lineage.get('end')}"
    )


def report_cells(report: TrainingReport) -> tuple[list[str], list[list[str]]]:
    """Headings and one row of formatted cells per candidate (the winner marked with *)."""
    return _cells(report, report.candidates)


def report_symbol_cells(report: TrainingReport) -> dict[str, tuple[list[str], list[list[str]]]]:
    """For a pooled model: per symbol, the same table over the symbol's own rows."""
    return {symbol: _cells(report, rows) for symbol, rows in report.per_symbol.items()}


def cross_section_line(report: TrainingReport) -> str | None:
    """A pooled model's cross-sectional pool on the held-out fold, against its rivals."""
    found = report.cross_section
    if found is None:
        return None
    strategy = found.strategy.held_out
    hold = found.equal_weight_hold.held_out
    shares = ", ".join(f"{k} {v:.0%}" for k, v in found.held_share_heldout.items())
    return (
        f"cross-section ({found.model}: hold the coin with the best prediction after fees): "
        f"held-out pool value {strategy.get('pool_value_net', math.nan):.4f} against "
        f"equal-weight buy-and-hold {hold.get('pool_value_net', math.nan):.4f} and cash 1.0000"
        + (f"; periods held: {shares}" if shares else "")
    )


def _cells(
    report: TrainingReport, candidates: Sequence[CandidateReport]
) -> tuple[list[str], list[list[str]]]:
    columns = list(REPORT_COLUMNS)
    if report.kind == "classification":
        columns = [c for c in columns if c[2] != "mae"] + list(CLASSIFIER_COLUMNS)
        columns.append(("threshold", "", "threshold"))
    headings = ["candidate", "kind", *(h for h, _, _ in columns)]
    rows = []
    for candidate in candidates:
        cells = [
            candidate.name + (" *" if candidate.name == report.winner.name else ""),
            candidate.kind,
        ]
        for _, part, metric in columns:
            if metric == "threshold":
                value = math.nan if candidate.threshold is None else candidate.threshold
            else:
                value = getattr(candidate, part).get(metric, math.nan)
            if value is None or not math.isfinite(value):
                cells.append("–")
            elif metric == "trades":
                cells.append(f"{value:.0f}")
            elif metric in ("threshold", "directional_accuracy", "roc_auc"):
                cells.append(f"{value:.3f}")
            else:
                cells.append(f"{value:.4f}")
        rows.append(cells)
    return headings, rows
