"""Walk-forward evaluation: purged folds, honest pool value, metrics, baselines, thresholds.

(The promotion rule is tested in test_gate.py.)"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricebot.errors import InsufficientDataError
from pricebot.evaluation import (
    CASH,
    baseline_predictions,
    choose_threshold,
    evaluate_baselines,
    evaluate_candidate,
    evaluation_table,
    plot_calibration,
    plot_evaluation,
    pool_log_factors,
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
    direction = baseline_predictions(past, mean, parse_target("dir24h"))

    np.testing.assert_array_equal(regression["no_change"], [0, 0, 0])
    np.testing.assert_array_equal(regression["momentum"], [0.02, -0.01, 0.0])
    np.testing.assert_array_equal(regression["recent_mean"], mean)
    assert (regression["buy_and_hold"] > 0).all()
    np.testing.assert_array_equal(classifier["momentum"], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(direction["momentum"], [1.0, 0.0, 0.0])  # a rise, not >= 0


# Classifiers: probabilities, thresholds, baselines --------------------------------------------


def test_classifier_metrics_score_the_probabilities() -> None:
    spec = parse_target("up1pct10m")
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.9, 0.2, 0.6, 0.4])

    metrics, _, _ = score_fold(minutes(4), y, np.zeros(4), p, spec, probabilities=True)

    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert metrics["log_loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert metrics["roc_auc"] == 1.0  # every event ranked above every non-event
    assert metrics["event_rate"] == 0.5


def test_a_regression_has_no_classifier_metrics() -> None:
    metrics, _, _ = score_fold(minutes(4), np.ones(4), np.ones(4), np.ones(4),
                               parse_target("ret10m"), probabilities=True)  # fmt: skip

    assert all(np.isnan(metrics[k]) for k in ("log_loss", "brier", "roc_auc", "event_rate"))


def test_the_decision_threshold_is_chosen_on_the_selection_folds_only() -> None:
    # Given a classifier whose probabilities are informative above 0.3 in folds 1-2, and a
    # held-out fold 3 where a threshold of 0.8 would have been best
    spec = parse_target("up1pct10m")
    times = minutes(900)
    rng = np.random.default_rng(2)
    fwd = rng.normal(0, 0.01, 900)
    folds = walk_forward_folds(times, 3, 10, min_train_rows=1)
    prob = np.where(fwd > 0, 0.35, 0.25) + rng.uniform(0, 0.01, 900)
    held = folds[-1].test
    prob[held] = np.where(fwd[held] > 0, 0.85, 0.75)

    # When the threshold is chosen
    result = evaluate_candidate("model", folds, times, (fwd > 0.01).astype(float), fwd, spec,
                                lambda f: prob[f.test], selection=[1, 2])  # fmt: skip

    # Then it separates the selection folds' probabilities, and fold 3 played no part
    assert 0.25 < result.threshold <= 0.36
    again = choose_threshold({1: prob[folds[0].test], 2: prob[folds[1].test]}, folds[:2], times,
                             fwd, spec)  # fmt: skip
    assert again == result.threshold


def test_without_selection_folds_a_classifier_calls_at_one_half() -> None:
    spec = parse_target("up1pct10m")
    times = minutes(300)
    folds = walk_forward_folds(times, 2, 10, min_train_rows=1)

    result = evaluate_candidate("model", folds, times, np.zeros(300), np.zeros(300), spec,
                                lambda f: np.full(len(f.test), 0.4))  # fmt: skip

    assert result.threshold == 0.5
    assert result.folds["trades"].sum() == 0


@pytest.mark.parametrize("target", ["ret10m", "up1pct10m", "down1pct10m", "dir10m"])
def test_cash_is_a_rival_for_every_target_and_never_invests(target: str) -> None:
    # Given a market that falls, and every baseline for the target
    spec = parse_target(target)
    times = minutes(600)
    fwd = np.full(600, -0.01)
    folds = walk_forward_folds(times, 2, 10, min_train_rows=1)

    baselines = evaluate_baselines(folds, times, (fwd < 0).astype(float), fwd, fwd, fwd, spec)

    # Then cash is among them, keeps 1.0 on every fold, and forecasts nothing
    cash = next(b for b in baselines if b.name == CASH)
    assert (cash.folds["pool_value_net"] == 1.0).all()
    assert cash.folds["trades"].sum() == 0
    assert cash.folds["mae"].isna().all()


def test_classifier_baselines_include_the_training_base_rate_as_a_probability() -> None:
    spec = parse_target("up1pct10m")
    times = minutes(600)
    y = (np.arange(600) % 4 == 0).astype(float)  # the event a quarter of the time
    folds = walk_forward_folds(times, 2, 10, min_train_rows=1)

    zeros = np.zeros(600)
    baselines = {b.name: b for b in evaluate_baselines(folds, times, y, zeros, zeros, zeros, spec)}

    base_rate = baselines["base_rate"]
    np.testing.assert_allclose(base_rate.predictions[1], 0.25, atol=0.01)
    brier = np.mean((0.25 - y[folds[0].test]) ** 2)
    assert base_rate.folds.loc[1, "brier"] == pytest.approx(brier, abs=0.01)
    assert "no_change" not in baselines  # "never the event" is cash (up) or buy-and-hold (down)


def test_pool_log_factors_add_up_to_each_pools_final_value() -> None:
    rng = np.random.default_rng(4)
    times = minutes(500)
    times = times[(np.arange(500) < 200) | (np.arange(500) >= 230)]  # with a hole
    fwd = rng.normal(0, 0.01, len(times))
    long = rng.uniform(size=len(times)) > 0.4

    result = pool_value(times, long, fwd, 10, fee=0.001, pools=5)
    factors = pool_log_factors(result, int(times.asi8[0] // 60_000_000_000), 10)

    finals = [values[-1] for _, values in result.paths]
    np.testing.assert_allclose(np.exp(factors.sum(axis=1)), finals)
    assert factors.shape[0] == 5


# Presentation --------------------------------------------------------------------------------


def test_the_table_keeps_selection_and_held_out_apart_and_the_plots_are_pngs(tmp_path) -> None:
    spec = parse_target("ret10m")
    times = minutes(300)
    rng = np.random.default_rng(1)
    y = rng.normal(0, 0.01, 300)
    folds = walk_forward_folds(times, 2, 10, min_train_rows=1)

    results = [
        evaluate_candidate(name, folds, times, y, y, spec, lambda f, p=p: p[f.test], kind=kind)
        for name, p, kind in (("no_change", np.zeros(300), "baseline"), ("oracle", y, "model"))
    ]

    table = evaluation_table(results, selection=[1], held_out=[2])
    path = plot_evaluation(results, tmp_path / "evaluation.png", held_out=folds[-1])

    assert list(table.index) == ["no_change", "oracle"]
    assert table.loc["oracle", "heldout_directional_accuracy"] == 1.0
    selection_pool = results[1].folds.loc[1, "pool_value_net"]
    assert table.loc["oracle", "selection_pool_value_net"] == selection_pool
    assert "directional_accuracy" not in table.columns  # nothing mixes the two
    assert "heldout_log_loss" not in table.columns  # a regression has no classifier metrics
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_calibration_plot_is_a_png(tmp_path) -> None:
    spec = parse_target("up1pct10m")
    times = minutes(300)
    rng = np.random.default_rng(3)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(float)
    folds = walk_forward_folds(times, 2, 10, min_train_rows=1)
    model = evaluate_candidate("model", folds, times, y, np.zeros(300), spec,
                               lambda f: p[f.test], selection=[1])  # fmt: skip

    path = plot_calibration([model], y, folds, [1], tmp_path / "calibration.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pools_stay_staggered_after_a_hole_in_the_data() -> None:
    # Given two pools 5 minutes apart on a 10-minute horizon, and 30 missing minutes
    times = minutes(100)
    times = times[(np.arange(100) < 30) | (np.arange(100) >= 60)]

    result = pool_value(times, np.ones(len(times), bool), np.zeros(len(times)), 10, pools=2)

    # Then after the hole the pools still end their periods at two different phases
    after = result.curve.index[result.curve.index > times[0] + 60 * MINUTE]
    assert sorted({t.minute % 10 for t in after}) == [0, 5]


def test_the_pool_curve_is_the_outer_join_forward_filled_mean_of_the_pools_paths() -> None:
    # Given a pool result over staggered pools on data with a hole
    rng = np.random.default_rng(3)
    times = pd.date_range("2025-01-01", periods=3000, freq="min", tz="UTC")
    times = times.delete(slice(1200, 1500))
    long = rng.random(len(times)) > 0.4
    fwd = rng.normal(0, 0.01, len(times))
    result = pool_value(times, long, fwd, 60, fee=0.001)

    # When its curve is drawn
    curve = result.curve

    # Then it is, minute by minute, the pandas outer join of the pools' series, each carried
    # forward and 1.0 before its first period ended, averaged over the pools
    series = [pd.Series(v, index=pd.to_datetime(e, unit="m", utc=True), dtype="float64")
              for e, v in result.paths if len(e)]  # fmt: skip
    expected = pd.concat(series, axis=1).sort_index().ffill().fillna(1.0).mean(axis=1)
    assert len(result.paths) == 24
    pd.testing.assert_series_equal(curve, expected, check_freq=False)
