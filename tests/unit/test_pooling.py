"""Pooled datasets: stacked symbols, shared wall-time folds with a purge across symbols, and
scores per symbol and pooled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricebot.dataset import Dataset, dataset_from_frames
from pricebot.errors import UsageError
from pricebot.evaluation import evaluate_candidate
from pricebot.features import compute_features, feature_names
from pricebot.pooling import (
    evaluate_pooled,
    indicator_columns,
    member_folds,
    parse_symbols,
    pool_datasets,
    pooled_folds,
)
from pricebot.registry import pool_label, pool_model_name
from pricebot.targets import parse_target
from tests.fixtures.market_frames import synthetic_candles

SPEC = parse_target("ret60m")


def dataset(symbol: str, days: int, seed: int, skip_days: int = 0) -> Dataset:
    candles = synthetic_candles(symbol, days, seed=seed)
    features = compute_features(candles)
    features = features[features.index >= features.index[0] + pd.Timedelta(days=skip_days)]
    return dataset_from_frames(symbol, candles, features, SPEC, feature_set="v1",
                               feature_columns=feature_names("v1"), max_gap_minutes=5)  # fmt: skip


@pytest.fixture(scope="module")
def pool():
    # B starts a day later than A: the pool's folds must still be one wall-time grid
    return pool_datasets([dataset("AUSDT", 27, 1), dataset("BUSDT", 27, 2, skip_days=1)])


def test_the_pool_stacks_the_rows_by_time_with_one_indicator_per_symbol(pool) -> None:
    assert len(pool) == len(pool.members["AUSDT"]) + len(pool.members["BUSDT"])
    assert pool.times.is_monotonic_increasing
    assert list(pool.features.columns) == [
        *feature_names("v1"),
        *indicator_columns(["AUSDT", "BUSDT"]),
    ]
    is_b = pool.features["symbol=BUSDT"].to_numpy() == 1.0
    assert (is_b == (pool.row_symbol == "BUSDT")).all()
    assert (pool.features["symbol=AUSDT"].to_numpy() + is_b == 1.0).all()
    # every member row is in the pool, with the same features and label
    rows = pool.positions["BUSDT"]
    member = pool.members["BUSDT"]
    assert (pool.times[rows] == member.times).all()
    assert np.array_equal(pool.label.to_numpy()[rows], member.label.to_numpy())


def test_every_fold_tests_one_wall_time_window_for_every_symbol(pool) -> None:
    folds = pooled_folds(pool, 3, SPEC.horizon_minutes, train_step=1)

    for fold in folds:
        times = pool.times[fold.test]
        assert times.min() >= fold.test_start
        assert times.max() < fold.test_end
        assert set(pool.row_symbol[fold.test]) == {"AUSDT", "BUSDT"}


def test_no_training_row_of_any_symbol_is_within_the_horizon_of_the_test_window(pool) -> None:
    folds = pooled_folds(pool, 3, SPEC.horizon_minutes, train_step=1)

    for fold in folds:
        last_train = pool.times[fold.train].max()
        assert last_train + pd.Timedelta(minutes=SPEC.horizon_minutes) < fold.test_start
    # B's rows begin a day late: the later folds train on both symbols
    assert set(pool.row_symbol[folds[-1].train]) == {"AUSDT", "BUSDT"}


def test_a_members_folds_are_the_pooled_folds_on_its_own_rows(pool) -> None:
    folds = pooled_folds(pool, 3, SPEC.horizon_minutes, train_step=1)
    member = pool.members["BUSDT"]

    mine = member_folds(pool, folds, "BUSDT")

    for fold, own in zip(folds, mine, strict=True):
        expected = pool.times[fold.test][pool.row_symbol[fold.test] == "BUSDT"]
        assert (member.times[own.test] == expected).all()


def test_pooled_figures_are_the_mean_over_symbols_of_each_symbols_figures(pool) -> None:
    folds = pooled_folds(pool, 3, SPEC.horizon_minutes, train_step=10)
    momentum = pool.past_return.to_numpy()

    result = evaluate_pooled("momentum", pool, folds, lambda f: momentum[f.test], fee=0.001,
                             kind="baseline")  # fmt: skip

    for s in pool.symbols:
        member = pool.members[s]
        alone = evaluate_candidate(
            "momentum", member_folds(pool, folds, s), member.times, member.label.to_numpy(),
            member.forward_return.to_numpy(), SPEC,
            lambda f, m=member: m.past_return.to_numpy()[f.test], kind="baseline", fee=0.001,
        )  # fmt: skip
        pd.testing.assert_frame_equal(result.per_symbol[s].folds, alone.folds)
    per = [result.per_symbol[s].folds["pool_value_net"] for s in pool.symbols]
    assert np.allclose(result.combined.folds["pool_value_net"], (per[0] + per[1]) / 2)
    assert (result.combined.folds["n_test"] == sum(
        result.per_symbol[s].folds["n_test"] for s in pool.symbols)).all()  # fmt: skip


def test_the_pools_name_depends_on_its_symbols_not_their_order_or_case() -> None:
    assert pool_model_name(["LTCUSDT", "algousdt"], "ret24h") == pool_model_name(
        ["ALGOUSDT", "LTCUSDT"], "ret24h"
    )
    assert pool_model_name(["A", "B"], "ret24h") == f"pricebot-pool-{pool_label(['A', 'B'])}-ret24h"
    assert pool_model_name(["A", "B"], "ret24h", "majors") == "pricebot-pool-majors-ret24h"


def test_a_pool_of_one_symbol_is_refused_with_the_fix() -> None:
    with pytest.raises(UsageError, match=r"A pool needs at least two symbols .*use --symbol"):
        parse_symbols("ALGOUSDT,algousdt")


def test_symbols_of_different_targets_do_not_pool() -> None:
    a = dataset("AUSDT", 26, 1)
    b = dataset_from_frames("BUSDT", synthetic_candles("BUSDT", 26), compute_features(
        synthetic_candles("BUSDT", 26)), parse_target("ret30m"), feature_set="v1",
        feature_columns=feature_names("v1"), max_gap_minutes=5)  # fmt: skip

    with pytest.raises(UsageError, match="same target and feature set: BUSDT has ret30m/v1"):
        pool_datasets([a, b])
