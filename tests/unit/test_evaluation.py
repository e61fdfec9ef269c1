"""Walk-forward evaluation: purged folds, honest pool value, metrics, baselines, the rule."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricebot.errors import InsufficientDataError
from pricebot.evaluation import (
    SKILL_Z,
    CandidateResult,
    baseline_predictions,
    decide_promotion,
    evaluation_table,
    plot_evaluation,
    pool_value,
    score_fold,
    walk_forward_folds,
)
from pricebot.targets import parse_target

MINUTE = pd.Timedelta(minutes=1)


def minutes(n: int, start: str = "2026-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="1min", tz="UTC")


# Folds ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n_folds=st.integers(1, 6),
    horizon=st.integers(1, 240),
    extra=st.integers(0, 3000),
    hole_at=st.floats(0.0, 1.0),
    hole=st.integers(0, 500),
)
def test_folds_never_overlap_once_purged(
    n_folds: int, horizon: int, extra: int, hole_at: float, hole: int
) -> None:
    # Given minute rows, possibly with a hole, long enough for the folds
    n = (n_folds + 1) * 2 * horizon + extra + hole + 50
    times = minutes(n)
    cut = int(hole_at * (n - hole))
    times = times[(np.arange(n) < cut) | (np.arange(n) >= cut + hole)]
    try:
        folds = walk_forward_folds(times, n_folds, horizon, min_train_rows=1)
    except InsufficientDataError:
        return  # a hole can leave a block too thin: refusing is the right answer

    for fold in folds:
        # every training label window [t, t + H] ends before the first test row
        assert times[fold.train].max() + horizon * MINUTE < times[fold.test].min()
        assert np.intersect1d(fold.train, fold.test).size == 0
    for earlier, later in itertools.pairwise(folds):
        assert earlier.test.max() < later.test.min()


def test_training_rows_are_subsampled_on_the_clock() -> None:
    times = minutes(14 * 1440)

    folds = walk_forward_folds(times, 3, 1440, train_step=60)

    assert all(t.minute == 0 for t in times[folds[-1].train])
    assert len(folds[-1].test) == folds[-1].test.max() - folds[-1].test.min() + 1  # all test rows


def test_a_purge_shorter_than_the_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than the 60 min horizon"):
        walk_forward_folds(minutes(5000), 2, 60, purge_minutes=30)


def test_too_little_data_for_the_folds_says_what_is_needed() -> None:
    with pytest.raises(InsufficientDataError) as caught:
        walk_forward_folds(minutes(3 * 1440), 5, 1440)

    message = str(caught.value)
    assert "need at least 12.0 days" in message
    assert "fewer --folds" in message


# Pool value ----------------------------------------------------------------------------------


def test_always_long_on_a_steady_rise_compounds_once_per_horizon_and_pays_two_fees() -> None:
    # Given a price rising 1% every 10 minutes, sampled every minute, for 40 minutes of decisions
    h, fee = 10, 0.001
    times = minutes(40)
    forward = np.full(40, 0.01)  # every row's 10-minute forward return

    result = pool_value(times, np.ones(40, bool), forward, h, fee=fee, pools=1)

    # Then the pool holds 4 non-overlapping periods, not 40 overlapping ones
    assert result.value == pytest.approx((1 - fee) ** 2 * 1.01**4)
    assert result.trades == 1


def test_a_model_that_never_calls_a_rise_keeps_its_cash() -> None:
    result = pool_value(minutes(100), np.zeros(100, bool), np.full(100, 0.05), 10)

    assert result.value == 1.0
    assert result.trades == 0


def test_switching_in_and_out_every_period_pays_a_fee_per_side() -> None:
    h, fee = 5, 0.01
    times = minutes(20)
    long = np.array([True] * 5 + [False] * 5 + [True] * 5 + [False] * 5)

    result = pool_value(times, long, np.zeros(20), h, fee=fee, pools=1)

    assert result.value == pytest.approx((1 - fee) ** 4)
    assert result.trades == 2


def test_perfect_foresight_cannot_compound_overlapping_minutes() -> None:
    # Given a random walk and a model that knows every forward return exactly
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 3000)))
    h = 60
    forward = np.r_[close[h:] / close[:-h] - 1, np.full(h, np.nan)][: 3000 - h]
    times = minutes(3000 - h)

    result = pool_value(times, forward > 0, forward, h, fee=0.0, pools=1)

    # Then its value is bounded by the best non-overlapping holds, not by 2940 overlapping ones
    periods = forward[::h]
    assert result.value == pytest.approx(np.prod(np.maximum(1.0, 1.0 + periods)))
    assert result.value < 10


def test_a_hole_in_the_data_closes_the_position() -> None:
    times = minutes(30)
    times = times[(np.arange(30) < 10) | (np.arange(30) >= 15)]  # 5 minutes missing
    fee = 0.01

    result = pool_value(times, np.ones(len(times), bool), np.zeros(len(times)), 10, fee=fee,
                        pools=1)  # fmt: skip

    assert result.value == pytest.approx((1 - fee) ** 4)  # in, out at the hole, in, out
    assert result.trades == 2


# Metrics -------------------------------------------------------------------------------------


def test_fold_metrics_count_directions_and_up_calls() -> None:
    spec = parse_target("ret10m")
    y = np.array([0.01, -0.02, 0.03, -0.01])
    pred = np.array([0.02, 0.01, -0.01, -0.02])

    metrics, _, _ = score_fold(minutes(4), y, y, pred, spec)

    assert metrics["mae"] == pytest.approx(np.mean(np.abs(pred - y)))
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)))
    assert metrics["directional_accuracy"] == 0.5
    assert metrics["precision_up"] == 0.5  # two up calls, one right
    assert metrics["recall_up"] == 0.5  # two rises, one caught


def test_baselines_predict_from_the_past_only() -> None:
    past = np.array([0.02, -0.01, np.nan])
    mean = np.array([0.001, -0.003, 0.0])

    regression = baseline_predictions(past, mean, parse_target("ret24h"))
    classifier = baseline_predictions(past, mean, parse_target("up1pct24h"))

    np.testing.assert_array_equal(regression["no_change"], [0, 0, 0])
    np.testing.assert_array_equal(regression["momentum"], [0.02, -0.01, 0.0])
    np.testing.assert_array_equal(regression["recent_mean"], mean)
    assert (regression["buy_and_hold"] > 0).all()
    np.testing.assert_array_equal(classifier["momentum"], [1.0, 0.0, 0.0])


# The promotion rule --------------------------------------------------------------------------


def result(name: str, pools: list[float], accuracy: float, kind: str = "model") -> CandidateResult:
    folds = pd.DataFrame(
        {
            "pool_value_net": pools,
            "directional_accuracy": [accuracy] * len(pools),
            "n_test": [100 * 1440] * len(pools),
            "mae": [0.01] * len(pools),
            "rmse": [0.01] * len(pools),
            "precision_up": [0.5] * len(pools),
            "recall_up": [0.5] * len(pools),
            "pool_value_gross": pools,
            "buy_hold_net": [1.0] * len(pools),
            "trades": [3] * len(pools),
        },
        index=pd.Index(range(1, len(pools) + 1), name="fold"),
    )
    empty = pd.Series(dtype="float64")
    return CandidateResult(name, kind, folds, empty, empty)


BASELINES = [
    result("no_change", [1.0, 1.0], 0.5, "baseline"),
    result("buy_and_hold", [1.1, 1.05], 0.5, "baseline"),
]
SPEC = parse_target("ret24h")


def test_a_challenger_that_beats_every_rival_with_real_skill_is_promoted() -> None:
    decision = decide_promotion(result("xgboost", [1.0, 1.2], 0.62), BASELINES, SPEC)

    assert decision.promote
    assert "beats buy_and_hold" in decision.reason


def test_a_challenger_below_one_baseline_on_the_newest_fold_is_not_promoted() -> None:
    decision = decide_promotion(result("xgboost", [1.5, 1.04], 0.62), BASELINES, SPEC)

    assert not decision.promote
    assert decision.bar_name == "buy_and_hold"
    assert "does not beat buy_and_hold" in decision.reason


def test_a_challenger_below_the_champion_is_not_promoted() -> None:
    decision = decide_promotion(
        result("xgboost", [1.0, 1.2], 0.62), BASELINES, SPEC, champion_value=1.25
    )

    assert not decision.promote
    assert decision.bar_name == "champion"


def test_a_tie_with_the_champion_is_not_promoted() -> None:
    decision = decide_promotion(
        result("xgboost", [1.0, 1.2], 0.62), BASELINES, SPEC, champion_value=1.2
    )

    assert not decision.promote


def test_a_lucky_pool_value_without_significant_accuracy_is_not_promoted() -> None:
    # 200 days of test at 24 h are ~200 independent calls: 52% is within noise
    decision = decide_promotion(result("xgboost", [1.0, 1.2], 0.52), BASELINES, SPEC)

    assert not decision.promote
    assert f"< {SKILL_Z}" in decision.reason


def test_a_champion_that_cannot_be_scored_blocks_automatic_promotion() -> None:
    decision = decide_promotion(
        result("xgboost", [1.0, 1.2], 0.62), BASELINES, SPEC, champion_scored=False
    )

    assert not decision.promote
    assert "promote by hand" in decision.reason


# Presentation --------------------------------------------------------------------------------


def test_the_table_has_a_row_per_candidate_and_the_plot_is_a_png(tmp_path) -> None:
    spec = parse_target("ret10m")
    times = minutes(200)
    rng = np.random.default_rng(1)
    y = rng.normal(0, 0.01, 200)
    folds = walk_forward_folds(times, 2, 10, min_train_rows=1)
    from pricebot.evaluation import evaluate_candidate

    results = [
        evaluate_candidate(name, folds, times, y, y, spec, lambda f, p=p: p[f.test], kind=kind)
        for name, p, kind in (("no_change", np.zeros(200), "baseline"), ("oracle", y, "model"))
    ]

    table = evaluation_table(results)
    path = plot_evaluation(results, tmp_path / "evaluation.png")

    assert list(table.index) == ["no_change", "oracle"]
    assert table.loc["oracle", "directional_accuracy"] == 1.0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pools_stay_staggered_after_a_hole_in_the_data() -> None:
    # Given two pools 5 minutes apart on a 10-minute horizon, and 30 missing minutes
    times = minutes(100)
    times = times[(np.arange(100) < 30) | (np.arange(100) >= 60)]

    result = pool_value(times, np.ones(len(times), bool), np.zeros(len(times)), 10, pools=2)

    # Then after the hole the pools still end their periods at two different phases
    after = result.curve.index[result.curve.index > times[0] + 60 * MINUTE]
    assert sorted({t.minute % 10 for t in after}) == [0, 5]
