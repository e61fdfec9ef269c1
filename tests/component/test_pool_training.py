"""Pooled training end to end: real MLflow server, real PostgreSQL, real models.

Small data (three days of rows after the 24-day warm-up, a 1-hour horizon, 3 folds), a couple
of candidate families, so the module stays within a few minutes on two cores.
"""

from __future__ import annotations

import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from pricebot.champion import ServedModel
from pricebot.dataset import Dataset, dataset_from_frames
from pricebot.features import compute_features, feature_names
from pricebot.pooling import served_model_name
from pricebot.registry import CHALLENGER, CHAMPION, Registry, pool_label
from pricebot.targets import parse_target
from pricebot_cli import app
from pricebot_training import TrainingConfig
from tests.fixtures.market_frames import patterned_candles, synthetic_candles
from tests.fixtures.models import register_model

TARGET = "ret60m"
SYMBOLS = ["PLAUSDT", "PLBUSDT", "PLCUSDT"]


def frames_dataset(candles: pd.DataFrame, symbol: str) -> Dataset:
    return dataset_from_frames(
        symbol, candles, compute_features(candles), parse_target(TARGET), feature_set="v1",
        feature_columns=feature_names("v1"), max_gap_minutes=5,
    )  # fmt: skip


@pytest.fixture(scope="module")
def outcome(mlflow_server: str, postgres):
    from tests.conftest import TEMPLATE_DB

    url = postgres.create_database("pool_training", template=TEMPLATE_DB)
    mlflow.set_tracking_uri(mlflow_server)
    datasets = [frames_dataset(synthetic_candles(s, 27, seed=i), s) for i, s in
                enumerate(SYMBOLS)]  # fmt: skip
    from pricebot_training.pool_job import train_pool

    return train_pool(
        TrainingConfig(symbols=SYMBOLS, target=TARGET, trials=2, folds=3, database_url=url,
                       tracking_uri=mlflow_server, show_progress=False,
                       candidates=["ridge", "lightgbm"]),
        datasets=datasets,
    )  # fmt: skip


def test_a_pool_is_registered_under_its_own_name_with_its_symbols(outcome, mlflow_server) -> None:
    client = MlflowClient(mlflow_server)

    assert outcome.model_name == f"pricebot-pool-{pool_label(SYMBOLS)}-ret1h"
    model = client.get_registered_model(outcome.model_name)
    version = client.get_model_version(outcome.model_name, outcome.version)
    assert model.tags["symbols"] == ",".join(SYMBOLS)
    assert (model.tags["pool"], model.tags["target"]) == ("true", "ret1h")
    assert version.tags["symbols"] == ",".join(SYMBOLS)
    assert Registry(mlflow_server).alias_version(outcome.model_name, CHALLENGER) == outcome.version


def test_every_candidate_is_scored_on_each_symbol_and_pooled(outcome) -> None:
    report = outcome.report

    assert report.symbols == SYMBOLS
    assert set(report.per_symbol) == set(SYMBOLS)
    names = {c.name for c in report.candidates}
    assert {"ridge", "lightgbm", "cash", "buy_and_hold"} <= names
    for symbol in SYMBOLS:
        assert {c.name for c in report.per_symbol[symbol]} == names
    # pooled figures: every coin weighs the same
    ridge = [next(c for c in report.per_symbol[s] if c.name == "ridge") for s in SYMBOLS]
    pooled = report.candidate("ridge")
    assert pooled.held_out["pool_value_net"] == pytest.approx(
        np.mean([r.held_out["pool_value_net"] for r in ridge])
    )


def test_the_gate_decides_on_each_symbols_held_out_window(outcome) -> None:
    decisions = outcome.report.per_symbol_decisions

    assert set(decisions) == set(SYMBOLS)
    assert outcome.decision.promote == all(d.promote for d in decisions.values())
    assert all(d.held_out_fold == 3 for d in decisions.values())
    rivals = {m.rival for m in outcome.decision.margins}
    assert {f"{s}: cash" for s in SYMBOLS} <= rivals


def test_the_cross_section_is_logged_against_equal_weight_hold_and_cash(
    outcome, mlflow_server
) -> None:
    client = MlflowClient(mlflow_server)
    run = client.get_run(outcome.parent_run_id)
    cross = outcome.report.cross_section

    assert {"heldout_cross_section_pool_value_net",
            "heldout_equal_weight_hold_net"} <= set(run.data.metrics)  # fmt: skip
    assert cross.model == outcome.winner
    assert sum(cross.held_share_heldout.values()) == pytest.approx(1.0)
    assert {"cross_section", "equal_weight_hold"} <= set(outcome.table.index)
    artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id)}
    assert {"evaluation.png", "predicted_vs_realised.png", "residuals.png",
            "per_symbol"} <= artifacts  # fmt: skip


def test_the_pooled_model_predicts_for_each_symbol_and_refuses_others(outcome) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{outcome.model_name}/{outcome.version}")
    rows = pd.DataFrame(np.zeros((2, 17)), columns=feature_names("v1"))

    a = model.predict(rows.assign(symbol="PLAUSDT"))
    b = model.predict(rows.assign(symbol="PLBUSDT"))

    assert np.isfinite(a).all()
    assert np.isfinite(b).all()
    with pytest.raises(Exception, match="serves PLAUSDT, PLBUSDT, PLCUSDT, not NOPEUSDT"):
        model.predict(rows.assign(symbol="NOPEUSDT"))


def test_the_served_model_adds_the_symbol_for_a_pooled_version(outcome) -> None:
    loaded = mlflow.pyfunc.load_model(f"models:/{outcome.model_name}/{outcome.version}")
    values = np.linspace(-1, 1, 17)
    served = ServedModel(
        symbol="PLCUSDT", target="ret1h", name=outcome.model_name, version=outcome.version,
        alias=CHAMPION, feature_set="v1", horizon_minutes=60, run_id=None,
        columns=tuple(feature_names("v1")), loaded_at=pd.Timestamp.now(tz="UTC"),
        model=loaded, pooled=True,
    )  # fmt: skip

    expected = loaded.predict(
        pd.DataFrame([values], columns=feature_names("v1")).assign(symbol="PLCUSDT")
    )
    assert served.predict(values) == pytest.approx(float(expected[0]))


def test_the_most_recently_promoted_of_a_symbols_model_and_its_pool_serves_it(
    outcome, mlflow_server
) -> None:
    registry = Registry(mlflow_server)
    own = register_model(mlflow_server, "PLAUSDT", "ret1h", alias=None)

    registry.move_alias(None, own.name, CHAMPION, own.version, reason="test: own first")
    time.sleep(1.1)  # moved_at has second resolution
    registry.move_alias(None, outcome.model_name, CHAMPION, outcome.version,
                        reason="test: the pool later")  # fmt: skip
    assert served_model_name(registry, "PLAUSDT", "ret1h") == outcome.model_name
    assert served_model_name(registry, "OTHERUSDT", "ret1h") == "pricebot-otherusdt-ret1h"

    time.sleep(1.1)
    registry.move_alias(None, own.name, CHAMPION, own.version, reason="test: own again")
    assert served_model_name(registry, "PLAUSDT", "ret1h") == own.name


def test_a_pool_with_skill_on_every_symbol_is_promoted(tracking_uri, database_url) -> None:
    # Given two coins whose hourly swings are predictable from the last hour
    datasets = [frames_dataset(patterned_candles(28, seed=s), sym) for s, sym in
                ((3, "PATAUSDT"), (4, "PATBUSDT"))]  # fmt: skip
    from pricebot_training.pool_job import train_pool

    # When a pool of them is trained
    result = train_pool(
        TrainingConfig(symbols=["PATAUSDT", "PATBUSDT"], target=TARGET, trials=0, folds=3,
                       database_url=database_url, show_progress=False,
                       candidates=["ridge", "xgboost"]),
        datasets=datasets,
    )  # fmt: skip

    # Then each symbol's gate passes and the pool becomes champion
    assert all(d.promote for d in result.report.per_symbol_decisions.values()), result.decision
    assert result.promoted
    assert Registry(tracking_uri).alias_version(result.model_name, CHAMPION) == result.version


def test_symbol_and_symbols_together_are_refused(tracking_uri) -> None:
    result = CliRunner().invoke(
        app, ["train", "--symbol", "AUSDT", "--symbols", "AUSDT,BUSDT", "--target", "ret45m"]
    )

    assert result.exit_code == 1
    assert "Give --symbol S for one symbol's model or --symbols A,B,C" in " ".join(
        result.output.split()
    )


def test_the_pooled_report_reads_back_as_written(outcome) -> None:
    from pricebot.training_report import cross_section_line, report_from_json, report_to_json

    again = report_from_json(report_to_json(outcome.report))

    # (compared as JSON: an undefined figure is NaN, which equals nothing, not even itself)
    assert report_to_json(again) == report_to_json(outcome.report)
    assert set(again.per_symbol) == set(SYMBOLS)
    assert again.cross_section.model == outcome.winner
    assert cross_section_line(again).startswith(f"cross-section ({outcome.winner}:")
