"""Pooled datasets: one model per target over several symbols' rows.

A pool is the symbols' datasets stacked, sorted by time (then symbol), with one indicator
column per symbol (``symbol=S``, 1.0 on S's rows) after the feature columns, so any model can
learn a per-symbol offset (a linear model's own intercept per coin, a tree's split on the coin)
while everything else is learnt from all the coins' rows. The indicators are what "symbol
identity" means to the model; the served model's input is the feature columns plus a string
column ``symbol`` (:mod:`pricebot.portable_model` turns it into the indicators).

Folds (:func:`pooled_folds`) are the single-symbol walk-forward folds computed on the pool's
distinct minutes, so every fold's test block is the same wall-time window for every symbol and
the purge (at least the horizon, in wall time) separates training rows of *every* symbol from
the test window: no coin's training label can see a price inside another coin's test window.

Evaluation (:func:`evaluate_pooled`) scores the pooled predictions per symbol, each symbol on
its own rows exactly as a single-symbol model is scored (the same metrics, the same staggered
pools, fees and holes), and pooled: the mean over the symbols of each per-fold figure (every
coin weighs the same; counts are summed), and a pool value that splits the money equally over
the coins (each coin's staggered pools side by side). A classifier's decision threshold is one
for the pool, chosen on the selection folds (best mean net pool value over the symbols).

Naming: ``pricebot-pool-<label>-<target>`` (:func:`pricebot.registry.pool_model_name`); the
label defaults to the first 8 hex digits of the SHA-256 of the sorted symbols, so the same
symbols always name the same pool.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pricebot.dataset import Dataset
from pricebot.errors import UsageError
from pricebot.evaluation import (
    DEFAULT_THRESHOLD,
    CandidateResult,
    Fold,
    PoolResult,
    evaluate_baselines,
    evaluate_candidate,
    long_position,
    pool_value,
    walk_forward_folds,
)
from pricebot.registry import POOL_PREFIX
from pricebot.targets import TargetSpec

SYMBOL_COLUMN = "symbol"
INDICATOR_PREFIX = "symbol="  # the same as pricebot.portable_model's
COUNT_METRICS = ("trades", "n_test")


def indicator_columns(symbols: Sequence[str]) -> list[str]:
    return [INDICATOR_PREFIX + s for s in symbols]


def parse_symbols(text: str) -> list[str]:
    """``A,B,C`` -> the symbols upper-cased, de-duplicated, in order; a pool needs two."""
    symbols = list(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    bad = [s for s in symbols if not s.isalnum()]
    if bad:
        raise UsageError(f"Symbols are letters and digits like BTCUSDT, not {', '.join(bad)}.")
    if len(symbols) < 2:
        raise UsageError(
            f"A pool needs at least two symbols (got {', '.join(symbols) or 'none'}); for one "
            "symbol use --symbol."
        )
    return symbols


@dataclass
class PooledDataset:
    """The symbols' rows stacked, sorted by (time, symbol); positions index every array."""

    symbols: list[str]
    spec: TargetSpec
    feature_set: str
    feature_columns: list[str]
    members: dict[str, Dataset]
    features: pd.DataFrame  # feature columns + one indicator per symbol, RangeIndex
    row_symbol: np.ndarray  # the symbol of each row
    times: pd.DatetimeIndex  # the open time of each row (not unique: one per symbol)
    label: pd.Series
    forward_return: pd.Series
    past_return: pd.Series
    recent_mean: pd.Series
    positions: dict[str, np.ndarray]  # each member's rows, in the member's own order
    lineage: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def symbol(self) -> str:
        """The pool's symbols, comma-separated (what a single-symbol dataset's ``symbol`` is in
        tags, titles and the report)."""
        return ",".join(self.symbols)

    def model_input(self, rows: np.ndarray | slice) -> pd.DataFrame:
        """Rows as the served model takes them: the feature columns and ``symbol``."""
        frame = self.features.iloc[rows][self.feature_columns].copy()
        frame[SYMBOL_COLUMN] = self.row_symbol[rows]
        return frame


def pool_datasets(datasets: Sequence[Dataset]) -> PooledDataset:
    """Stack single-symbol datasets of one target and feature set into a pool."""
    if len(datasets) < 2:
        raise UsageError("A pool needs at least two symbols' datasets.")
    first = datasets[0]
    symbols = [d.symbol.upper() for d in datasets]
    if len(set(symbols)) != len(symbols):
        raise UsageError(f"A symbol appears twice in the pool: {', '.join(symbols)}.")
    for d in datasets[1:]:
        if d.spec != first.spec or d.feature_set != first.feature_set:
            raise UsageError(
                f"Every symbol of a pool has the same target and feature set: {d.symbol} has "
                f"{d.spec.name}/{d.feature_set}, {first.symbol} {first.spec.name}/"
                f"{first.feature_set}."
            )
    columns = list(first.features.columns)
    parts = []
    for d in datasets:
        part = pd.DataFrame(
            {
                "time": d.times,
                "symbol": d.symbol.upper(),
                "member_row": np.arange(len(d)),
                "label": d.label.to_numpy(),
                "forward_return": d.forward_return.to_numpy(),
                "past_return": d.past_return.to_numpy(),
                "recent_mean": d.recent_mean.to_numpy(),
            }
        )
        parts.append(pd.concat([part, d.features.reset_index(drop=True)], axis=1))
    stacked = pd.concat(parts, ignore_index=True)
    stacked = stacked.sort_values(["time", "symbol"], kind="stable").reset_index(drop=True)
    features = stacked[columns].astype("float64")
    names = stacked["symbol"].to_numpy()
    for symbol, column in zip(symbols, indicator_columns(symbols), strict=True):
        features[column] = (names == symbol).astype("float64")
    positions = {}
    for s in symbols:
        rows = np.flatnonzero(names == s)
        positions[s] = rows[np.argsort(stacked["member_row"].to_numpy()[rows], kind="stable")]
    digest = hashlib.sha256()
    for d in datasets:
        digest.update(str(d.lineage.get("sha256", "")).encode())
    markets = sorted({str(d.lineage.get("market")) for d in datasets})
    lineage: dict[str, object] = {
        "symbols": symbols,
        "target": first.spec.name,
        "horizon_minutes": first.spec.horizon_minutes,
        "feature_set": first.feature_set,
        "feature_names": columns,
        "symbol_indicators": indicator_columns(symbols),
        "rows": len(stacked),
        "start": stacked["time"].iloc[0].isoformat() if len(stacked) else None,
        "end": stacked["time"].iloc[-1].isoformat() if len(stacked) else None,
        "market": markets[0] if len(markets) == 1 else "mixed",
        "sha256": digest.hexdigest(),
        "members": {d.symbol.upper(): dict(d.lineage) for d in datasets},
    }
    return PooledDataset(
        symbols=symbols,
        spec=first.spec,
        feature_set=first.feature_set,
        feature_columns=columns,
        members={d.symbol.upper(): d for d in datasets},
        features=features,
        row_symbol=names,
        times=pd.DatetimeIndex(stacked["time"]),
        label=stacked["label"].astype("float64"),
        forward_return=stacked["forward_return"].astype("float64"),
        past_return=stacked["past_return"].astype("float64"),
        recent_mean=stacked["recent_mean"].astype("float64"),
        positions=positions,
        lineage=lineage,
    )


# ---------------------------------------------------------------------------------------------
# Folds


def pooled_folds(
    pool: PooledDataset, n_folds: int, horizon_minutes: int, *, train_step: int
) -> list[Fold]:
    """Walk-forward folds in wall time shared by every symbol (module docstring)."""
    minutes = pd.DatetimeIndex(np.unique(pool.times.asi8)).tz_localize("UTC")
    base = walk_forward_folds(minutes, n_folds, horizon_minutes, train_step=train_step)
    values = pool.times.asi8
    on_step = (values // 60_000_000_000) % train_step == 0
    folds = []
    for fold in base:
        cutoff = (fold.test_start - pd.Timedelta(minutes=fold.purge_minutes)).value
        test = np.flatnonzero((values >= fold.test_start.value) & (values < fold.test_end.value))
        train = np.flatnonzero(on_step & (values < cutoff))
        folds.append(Fold(fold.number, train, test, fold.test_start, fold.test_end,
                          fold.purge_minutes))  # fmt: skip
    return folds


def member_folds(pool: PooledDataset, folds: Sequence[Fold], symbol: str) -> list[Fold]:
    """The same folds as row positions into ``symbol``'s own dataset."""
    rows = pool.positions[symbol]
    member_of = np.full(len(pool), -1)
    member_of[rows] = np.arange(len(rows))
    result = []
    for fold in folds:
        train = member_of[fold.train]
        test = member_of[fold.test]
        result.append(Fold(fold.number, np.sort(train[train >= 0]), np.sort(test[test >= 0]),
                           fold.test_start, fold.test_end, fold.purge_minutes))  # fmt: skip
    return result


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class PooledResult:
    """A candidate's pooled record and its record on each symbol."""

    combined: CandidateResult
    per_symbol: dict[str, CandidateResult]


def _member_predictions(
    pool: PooledDataset, folds: Sequence[Fold], predictions: dict[int, np.ndarray], symbol: str
) -> dict[int, np.ndarray]:
    """Per fold, the pooled test predictions of ``symbol``'s rows, in the member's order."""
    out = {}
    for fold in folds:
        mine = pool.row_symbol[fold.test] == symbol
        order = np.argsort(fold.test[mine], kind="stable")  # fold.test is sorted already
        out[fold.number] = predictions[fold.number][mine][order]
    return out


def combine(name: str, kind: str, per_symbol: dict[str, CandidateResult]) -> CandidateResult:
    """The pooled record: per fold, the mean over symbols of every figure (counts summed), and
    pools side by side (the money split equally over the coins)."""
    results = list(per_symbol.values())
    frames = [r.folds for r in results]
    stacked = pd.concat(frames, keys=range(len(frames)))
    folds = stacked.groupby(level=1).mean(numeric_only=True)
    for count in COUNT_METRICS:
        if count in stacked:
            folds[count] = stacked[count].groupby(level=1).sum()
    pools = []
    for i in range(len(results[0].pools)):
        pools.append(tuple(_side_by_side([r.pools[i][part] for r in results]) for part in (0, 1)))
    first = results[0]
    return CandidateResult(name, kind, folds, dict(first.params), {}, first.threshold,
                           pools)  # type: ignore[arg-type]  # fmt: skip


def _side_by_side(pools: Sequence[PoolResult]) -> PoolResult:
    return PoolResult(
        value=float(np.mean([p.value for p in pools])),
        gross=float(np.mean([p.gross for p in pools])),
        trades=int(sum(p.trades for p in pools)),
        paths=[path for p in pools for path in p.paths],
    )


def choose_pooled_threshold(
    pool: PooledDataset,
    member_fold_sets: dict[str, list[Fold]],
    member_preds: dict[str, dict[int, np.ndarray]],
    selection: Sequence[int],
    *,
    fee: float,
) -> float:
    """One decision threshold for the pool: the best mean net pool value over the symbols and
    the selection folds, among 0.5 and the 5%..95% quantiles of the selection predictions."""
    spec = pool.spec
    chosen = set(selection)
    values = [member_preds[s][f.number] for s in pool.symbols for f in member_fold_sets[s]
              if f.number in chosen]  # fmt: skip
    pooled = np.concatenate(values) if values else np.zeros(0)
    if pooled.size == 0:
        return DEFAULT_THRESHOLD
    grid = np.unique(np.r_[DEFAULT_THRESHOLD, np.quantile(pooled, np.linspace(0.05, 0.95, 19))])
    best, best_key = DEFAULT_THRESHOLD, (-math.inf, -math.inf)
    for threshold in grid:
        scores = []
        for s in pool.symbols:
            member = pool.members[s]
            for f in member_fold_sets[s]:
                if f.number not in chosen or len(f.test) == 0:
                    continue
                long = long_position(member_preds[s][f.number], spec, float(threshold))
                scores.append(pool_value(member.times[f.test], long,
                                         member.forward_return.to_numpy()[f.test],
                                         spec.horizon_minutes, fee=fee).value)  # fmt: skip
        key = (round(float(np.mean(scores)), 12), -abs(float(threshold) - DEFAULT_THRESHOLD))
        if key > best_key:
            best, best_key = float(threshold), key
    return best


def evaluate_pooled(
    name: str,
    pool: PooledDataset,
    folds: Sequence[Fold],
    predict: Callable[[Fold], np.ndarray],
    *,
    kind: str = "model",
    fee: float,
    params: dict[str, object] | None = None,
    selection: Sequence[int] | None = None,
) -> PooledResult:
    """``predict(fold)`` (fit on the pool's ``fold.train`` rows, predict its ``fold.test``
    rows) on every fold, scored per symbol and pooled (module docstring)."""
    spec = pool.spec
    predictions = {f.number: np.asarray(predict(f), dtype="float64") for f in folds}
    fold_sets = {s: member_folds(pool, folds, s) for s in pool.symbols}
    preds = {s: _member_predictions(pool, folds, predictions, s) for s in pool.symbols}
    threshold = None
    if spec.is_classification and kind == "model" and selection:
        threshold = choose_pooled_threshold(pool, fold_sets, preds, selection, fee=fee)
    per_symbol = {}
    for s in pool.symbols:
        member = pool.members[s]
        per_symbol[s] = evaluate_candidate(
            name, fold_sets[s], member.times, member.label.to_numpy(),
            member.forward_return.to_numpy(), spec, lambda f, p=preds[s]: p[f.number],
            kind=kind, fee=fee, params=params, threshold=threshold,
        )  # fmt: skip
    combined = combine(name, kind, per_symbol)
    combined.predictions = predictions
    return PooledResult(combined, per_symbol)


def evaluate_pooled_baselines(
    pool: PooledDataset, folds: Sequence[Fold], *, fee: float
) -> list[PooledResult]:
    """Every baseline of :func:`pricebot.evaluation.evaluate_baselines`, per symbol on its own
    rows, and pooled."""
    per_symbol: dict[str, list[CandidateResult]] = {}
    for s in pool.symbols:
        member = pool.members[s]
        per_symbol[s] = evaluate_baselines(
            member_folds(pool, folds, s), member.times, member.label.to_numpy(),
            member.forward_return.to_numpy(), member.past_return.to_numpy(),
            member.recent_mean.to_numpy(), pool.spec, fee=fee,
        )  # fmt: skip
    results = []
    for i, first in enumerate(per_symbol[pool.symbols[0]]):
        mine = {s: per_symbol[s][i] for s in pool.symbols}
        results.append(PooledResult(combine(first.name, first.kind, mine), mine))
    return results


# ---------------------------------------------------------------------------------------------
# Cross-sectional evaluation of a pooled model (pricebot.cross_section)


def evaluate_cross_section(
    pool: PooledDataset,
    folds: Sequence[Fold],
    model: PooledResult,
    *,
    fee: float,
) -> tuple[CandidateResult, CandidateResult, dict[int, dict[str, float]]]:
    """On every fold's test window: the cross-sectional pool of ``model``'s predictions, the
    same coins' equal-weight buy-and-hold, and the share of periods each coin was held.

    Both come back as position-only results (pool figures, no forecast metrics), named
    :data:`pricebot.cross_section.CROSS_SECTION` and ``EQUAL_WEIGHT_HOLD``, kind "strategy"."""
    from pricebot.cross_section import (
        CROSS_SECTION,
        EQUAL_WEIGHT_HOLD,
        cross_section_pool,
        equal_weight_hold,
    )
    from pricebot.evaluation import FORECAST_METRICS

    spec = pool.spec
    fold_sets = {s: member_folds(pool, folds, s) for s in pool.symbols}
    rows_cross, rows_hold, pools_cross, pools_hold, shares = [], [], [], [], {}
    for i, fold in enumerate(folds):
        times, preds, fwds, holds = {}, {}, {}, []
        for s in pool.symbols:
            member, member_fold = pool.members[s], fold_sets[s][i]
            times[s] = member.times[member_fold.test]
            preds[s] = model.per_symbol[s].predictions[fold.number]
            fwds[s] = member.forward_return.to_numpy()[member_fold.test]
            holds.append(model.per_symbol[s].pools[i][1])
        cross, shares[fold.number] = cross_section_pool(
            times, preds, fwds, spec, fee=fee, threshold=model.combined.threshold
        )
        hold = equal_weight_hold(holds)
        n_test = float(sum(len(t) for t in times.values()))
        for rows, result in ((rows_cross, cross), (rows_hold, hold)):
            rows.append({"fold": fold.number, **dict.fromkeys(FORECAST_METRICS, math.nan),
                         "pool_value_net": result.value, "pool_value_gross": result.gross,
                         "buy_hold_net": hold.value, "trades": float(result.trades),
                         "n_test": n_test})  # fmt: skip
        pools_cross.append((cross, hold))
        pools_hold.append((hold, hold))
    params = {"model": model.combined.name}
    cross_result = CandidateResult(CROSS_SECTION, "strategy",
                                   pd.DataFrame(rows_cross).set_index("fold"), params,
                                   pools=pools_cross)  # fmt: skip
    hold_result = CandidateResult(EQUAL_WEIGHT_HOLD, "strategy",
                                  pd.DataFrame(rows_hold).set_index("fold"), {},
                                  pools=pools_hold)  # fmt: skip
    return cross_result, hold_result, shares


# ---------------------------------------------------------------------------------------------
# Serving: which registered model answers for a symbol


@dataclass(frozen=True)
class PoolModel:
    """A registered pooled model: its name, its symbols and its target (registered-model tags
    ``symbols`` and ``target``, written by the training job)."""

    name: str
    symbols: tuple[str, ...]
    target: str


def registered_pools(registry: object) -> list[PoolModel]:
    """Every registered ``pricebot-pool-*`` model with its symbols (``registry`` is a
    :class:`pricebot.registry.Registry`). One registry call."""
    client = registry.client  # type: ignore[attr-defined]
    found = []
    for model in client.search_registered_models(filter_string=f"name LIKE '{POOL_PREFIX}%'"):
        tags = dict(model.tags or {})
        symbols = tuple(s for s in tags.get("symbols", "").split(",") if s)
        target = tags.get("target") or model.name.rsplit("-", 1)[-1]
        if symbols:
            found.append(PoolModel(model.name, symbols, target))
    return sorted(found, key=lambda p: p.name)


def serving_candidates(symbol: str, target: str, pools: Sequence[PoolModel]) -> list[str]:
    """The registered models that may serve ``symbol``'s ``target``: its own model
    (``pricebot-<symbol>-<target>``) first, then every pool of that target holding it."""
    from pricebot.registry import model_name

    symbol = symbol.upper()
    held = [p.name for p in pools if symbol in p.symbols and p.target == target]
    return [model_name(symbol, target), *held]


def choose_served(
    names: Sequence[str], has_alias: Callable[[str], bool], moved_at: Callable[[str], str]
) -> str:
    """Of ``names`` (:func:`serving_candidates`, the symbol's own model first), the one whose
    alias was moved most recently (``moved_at``: the version tag ``<alias>.moved_at`` written by
    every promotion); a tie, or no recorded move, goes to the symbol's own model. With no alias
    at all it is the symbol's own model (whose "no champion" message the service shows).
    ``moved_at`` is asked only when more than one model has the alias.

    A pool is promoted only after beating the symbol's own champion on the symbol's held-out
    window (by the pooled training job), so the newest promotion is the best-tested."""
    holders = [name for name in names if has_alias(name)]
    if len(holders) <= 1:
        return holders[0] if holders else names[0]
    return max(holders, key=lambda name: (moved_at(name), name == names[0]))


def served_model_name(
    registry: object,
    symbol: str,
    target: str,
    *,
    alias: str = "champion",
    pools: Sequence[PoolModel] | None = None,
) -> str:
    """The registered model that serves ``symbol``'s ``target`` (:func:`choose_served` over
    :func:`serving_candidates`), asked of the registry; the service's
    :class:`pricebot.champion.ModelPool` applies the same rule from its poll."""
    pools = registered_pools(registry) if pools is None else pools
    names = serving_candidates(symbol, target, pools)
    versions = {name: registry.alias_target(name, alias) for name in names}  # type: ignore[attr-defined]
    return choose_served(
        names,
        lambda name: versions[name] is not None,
        lambda name: str((versions[name].tags or {}).get(f"{alias}.moved_at", "")),
    )
