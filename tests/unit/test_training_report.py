"""The training report: the winner rule, selection and held-out figures apart, JSON round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricebot.dataset import Dataset
from pricebot.evaluation import (
    CandidateResult,
    evaluate_baselines,
    evaluate_candidate,
    walk_forward_folds,
)
from pricebot.gate import HeldOut, decide_promotion
from pricebot.targets import parse_target
from pricebot.training_report import (
    ChampionScore,
    build_report,
    read_report,
    refit_rows,
    report_cells,
    report_from_json,
    report_to_json,
    select_winner,
    selection_folds,
    tracked_metrics,
    write_report,
)

SPEC = parse_target("ret10m")


def result(name: str, pools: list[float], accuracy: list[float], kind: str = "model"):
    folds = pd.DataFrame(
        {"pool_value_net": pools, "directional_accuracy": accuracy, "trades": [2.0] * len(pools),
         "n_test": [100.0] * len(pools)},
        index=pd.Index(range(1, len(pools) + 1), name="fold"),
    )  # fmt: skip
    return CandidateResult(name, kind, folds)


def small_dataset(n: int = 600, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2026-01-01", periods=n, freq="1min", tz="UTC")
    fwd = pd.Series(rng.normal(0, 0.01, n), index=times)
    features = pd.DataFrame({"x": rng.normal(size=n)}, index=times)
    return Dataset(
        symbol="TESTUSDT", spec=SPEC, feature_set="v1", features=features,
        label=fwd.rename("label"), forward_return=fwd, past_return=fwd.shift(10).fillna(0.0),
        recent_mean=fwd.rolling(7, min_periods=1).mean(),
        lineage={"rows": n, "start": times[0].isoformat(), "end": times[-1].isoformat(),
                 "sha256": "0" * 64},
    )  # fmt: skip


def test_the_winner_is_the_best_mean_pool_value_on_the_selection_folds_only() -> None:
    # Given a model that is best on the newest fold only, and one best on the selection folds
    lucky = result("lucky", [1.00, 1.00, 1.50], [0.5, 0.5, 0.7])
    steady = result("steady", [1.02, 1.03, 0.90], [0.55, 0.55, 0.4])

    winner = select_winner([lucky, steady, result("cash", [1.1] * 3, [0.9] * 3, "baseline")],
                           selection=[1, 2])  # fmt: skip

    # Then the newest fold (held out) plays no part, and no baseline can win
    assert winner.name == "steady"
    assert [r.name for r in winner.ranking] == ["steady", "lucky"]
    assert "selection folds (1, 2)" in winner.rule


def test_a_tie_on_pool_value_goes_to_the_better_accuracy() -> None:
    first = result("first", [1.01, 1.01], [0.50, 0.50])
    second = result("second", [1.01, 1.01], [0.60, 0.60])

    assert select_winner([first, second], selection=[1, 2]).name == "second"


def test_the_newest_fold_is_held_out_from_selection() -> None:
    folds = walk_forward_folds(pd.date_range("2026-01-01", periods=600, freq="1min"), 4, 10,
                               min_train_rows=1)  # fmt: skip

    assert selection_folds(folds) == [1, 2, 3]


def test_one_fold_cannot_be_split_into_selection_and_held_out() -> None:
    folds = walk_forward_folds(pd.date_range("2026-01-01", periods=600, freq="1min"), 1, 10,
                               min_train_rows=1)  # fmt: skip

    with pytest.raises(ValueError, match="nothing would be held out"):
        selection_folds(folds)


def test_tracked_metrics_name_selection_and_held_out_figures_apart() -> None:
    steady = result("steady", [1.02, 1.04, 0.90], [0.55, 0.65, 0.4])

    metrics = tracked_metrics(steady, selection=[1, 2], held_out=[3])

    assert metrics["selection_pool_value_net"] == pytest.approx(1.03)
    assert metrics["heldout_pool_value_net"] == 0.90
    assert metrics["newest_pool_value_net"] == 0.90  # the name older readers use
    assert "pool_value_net" not in metrics  # no figure mixes the two


def test_refit_rows_are_on_the_training_clock() -> None:
    times = pd.date_range("2026-01-01 00:00", periods=10, freq="1min", tz="UTC")

    np.testing.assert_array_equal(refit_rows(times, 4), [0, 4, 8])


def test_a_report_keeps_selection_and_held_out_figures_apart_and_round_trips_as_json(
    tmp_path,
) -> None:
    # Given every candidate of a small run evaluated on three folds
    dataset = small_dataset()
    y, fwd = dataset.label.to_numpy(), dataset.forward_return.to_numpy()
    folds = walk_forward_folds(dataset.times, 3, 10, min_train_rows=1)
    results = evaluate_baselines(folds, dataset.times, y, fwd, dataset.past_return.to_numpy(),
                                 dataset.recent_mean.to_numpy(), SPEC)  # fmt: skip
    results.append(evaluate_candidate("oracle", folds, dataset.times, y, fwd, SPEC,
                                      lambda f: y[f.test]))  # fmt: skip
    selection = selection_folds(folds)
    winner = select_winner(results, selection)
    window = HeldOut.of(folds[-1], dataset.times, y, fwd)
    decision = decide_promotion(results[-1], results[:-1], SPEC, window)

    # When the report is built, written and read back
    report = build_report(
        dataset=dataset, folds=folds, selection=selection, results=results, winner=winner,
        champion=ChampionScore(None, True, None, "no champion yet"), decision=decision,
        model_name="pricebot-testusdt-ret10m", fee=0.001, train_step=1, refit_rows=600,
    )  # fmt: skip
    again = read_report(write_report(report, tmp_path / "report.json"))

    # Then the oracle's figures are split: means over folds 1-2, and fold 3 alone
    oracle = again.candidate("oracle")
    assert again.selection_folds == [1, 2]
    assert again.held_out_folds == [3]
    assert oracle.selection["pool_value_net"] == pytest.approx(
        results[-1].folds.loc[[1, 2], "pool_value_net"].mean()
    )
    assert oracle.held_out["pool_value_net"] == results[-1].folds.loc[3, "pool_value_net"]
    assert report_to_json(again) == report_to_json(report)
    assert again.decision == report_from_json(report_to_json(report)).decision
    assert again.decision.margins[0].rival == decision.margins[0].rival
    assert again.market == "unrecorded"
    # and the table marks the winner
    _, rows = report_cells(again)
    assert [row[0] for row in rows if row[0].endswith("*")] == ["oracle *"]


def test_a_report_that_is_not_json_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "report.json"
    path.write_text("training failed")

    with pytest.raises(ValueError, match="Invalid JSON"):
        read_report(path)
