"""The training job end to end: real PostgreSQL, a real MLflow server, real models.

Data is kept small (a few days of minute rows after the 24-day feature warm-up, a 1-hour
horizon, 3 folds, a couple of trials) so the module runs in well under two minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import psycopg
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from pricebot.dataset import Dataset, dataset_from_frames
from pricebot.features import WARMUP_MINUTES, compute_features, feature_names
from pricebot.registry import CHALLENGER, CHAMPION, Registry, alias_history, model_name
from pricebot.targets import parse_target
from pricebot.training_report import read_report
from pricebot.transform import update_features
from pricebot_cli import app
from pricebot_local.localdb import LocalPostgres
from pricebot_training import TrainingConfig, train
from tests.conftest import TEMPLATE_DB, free_port
from tests.fixtures.market_frames import patterned_candles, store_candles, synthetic_candles

DAYS = 27  # 24 days of warm-up, three days of rows


def flat(output: str) -> str:
    return " ".join(output.split())


def frames_dataset(candles: pd.DataFrame, symbol: str, target: str) -> Dataset:
    return dataset_from_frames(
        symbol, candles, compute_features(candles), parse_target(target),
        feature_set="v1", feature_columns=feature_names("v1"), max_gap_minutes=5,
    )  # fmt: skip


def registered_versions(client: MlflowClient, name: str) -> list[str]:
    return [v.version for v in client.search_model_versions(f"name = '{name}'")]


@pytest.fixture(scope="module")
def seeded(postgres: LocalPostgres) -> Iterator[str]:
    name = f"training_{os.getpid()}"
    url = postgres.create_database(name, template=TEMPLATE_DB)
    store_candles(url, synthetic_candles("AVAXUSDT", DAYS), "AVAXUSDT")
    update_features(url, ["AVAXUSDT"])
    yield url
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def seeded_env(seeded: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from pricebot.settings import get_settings

    monkeypatch.setenv("PRICEBOT_DATABASE_URL", seeded)
    get_settings.cache_clear()
    yield seeded
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report") / "report.json"


@pytest.fixture(scope="module")
def cli_run(seeded: str, mlflow_server: str, report_path: Path) -> tuple[str, str]:
    """``pricebot train`` once for the module; the tests below look at what it left."""
    from pricebot.settings import get_settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRICEBOT_DATABASE_URL", seeded)
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        mlflow.set_tracking_uri(mlflow_server)
        get_settings.cache_clear()
        result = CliRunner().invoke(
            app,
            ["train", "--symbol", "avaxusdt", "--target", "ret60m", "--trials", "2",
             "--folds", "3", "--quiet", "--report-json", str(report_path)],
        )  # fmt: skip
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output, mlflow_server


NAME = model_name("AVAXUSDT", "ret1h")


def test_cli_train_prints_every_candidate_and_registers_a_challenger(
    cli_run: tuple[str, str],
) -> None:
    output, uri = cli_run

    text = flat(output)
    for candidate in ("no_change", "momentum", "recent_mean", "buy_and_hold", "cash", "ridge",
                      "huber", "xgboost"):  # fmt: skip
        assert candidate in text
    assert f"registered {NAME} version 1 @challenger" in text
    assert Registry(uri).alias_version(NAME, CHALLENGER) == "1"


def test_the_version_carries_the_contract_tags_and_its_run_the_evaluation(
    cli_run: tuple[str, str],
) -> None:
    _, uri = cli_run
    client = MlflowClient(uri)

    version = client.get_model_version(NAME, "1")
    run = client.get_run(version.run_id)

    assert {k: version.tags[k] for k in ("symbol", "target", "feature_set", "horizon_minutes")} == {
        "symbol": "AVAXUSDT", "target": "ret1h", "feature_set": "v1", "horizon_minutes": "60",
    }  # fmt: skip
    assert version.tags["market"] == "simulated:market"  # the fixture's candles are synthetic
    # Selection-fold and held-out figures apart, named so; no metric mixes the two
    for metric in ("mae", "rmse", "directional_accuracy", "pool_value_net"):
        assert {f"selection_{metric}", f"heldout_{metric}"} <= set(run.data.metrics)
        assert metric not in run.data.metrics
    assert run.data.metrics["newest_pool_value_net"] == run.data.metrics["heldout_pool_value_net"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"feature_importance.json", "feature_importance.png", "evaluation.png",
            "evaluation_table.csv", "lineage.json"} <= artifacts  # fmt: skip
    importance = json.loads(
        Path(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="feature_importance.json"
        )).read_text()
    )  # fmt: skip
    assert set(importance["mean_abs"]) == set(feature_names("v1"))


def test_the_parent_run_holds_lineage_folds_and_nested_candidate_and_trial_runs(
    cli_run: tuple[str, str],
) -> None:
    _, uri = cli_run
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]

    names = {r.data.tags["mlflow.runName"] for r in children}
    assert {"baseline no_change", "ridge", "huber", "xgboost", "xgboost tuning"} <= names
    tuning = next(r for r in children if r.data.tags["mlflow.runName"] == "xgboost tuning")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == tuning.info.run_id]
    assert len(trials) == 2
    assert parent.data.params["dataset.rows"] == str(3 * 1440 - 60)
    assert len(parent.data.tags["dataset.sha256"]) == 64
    xgb_run = next(r for r in children if r.data.tags["mlflow.runName"] == "xgboost")
    fold_mae = client.get_metric_history(xgb_run.info.run_id, "fold_mae")
    assert sorted(m.step for m in fold_mae) == [1, 2, 3]


def test_the_registered_model_takes_exactly_the_feature_columns(
    cli_run: tuple[str, str],
) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHALLENGER}")
    rows = pd.DataFrame(np.zeros((3, len(feature_names("v1")))), columns=feature_names("v1"))

    predictions = np.asarray(model.predict(rows), dtype="float64")

    assert predictions.shape == (3,)
    assert np.isfinite(predictions).all()
    with pytest.raises(Exception, match="close"):
        model.predict(rows.assign(close=1.0).drop(columns=[feature_names("v1")[0]]))


def test_the_report_json_says_what_the_run_found_and_did(
    cli_run: tuple[str, str], report_path: Path
) -> None:
    _, uri = cli_run
    client = MlflowClient(uri)

    report = read_report(report_path)

    # Then it names the registered version, and the run's own report.json is the same document
    assert report.registration is not None
    assert (report.registration.model_name, report.registration.version) == (NAME, "1")
    assert report.selection_folds == [1, 2]
    assert report.held_out_folds == [3]
    assert {c.name for c in report.candidates} >= {"no_change", "cash", "ridge", "huber", "xgboost"}
    assert report.decision.held_out_fold == 3
    logged = mlflow.artifacts.load_dict(f"runs:/{report.registration.parent_run_id}/report.json")
    assert logged == json.loads(report_path.read_text())
    version = client.get_model_version(NAME, "1")
    assert version.tags["candidate"] == report.winner.name


def test_the_challenger_move_is_in_the_alias_history(cli_run: tuple[str, str], seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        events = alias_history(conn, NAME)

    assert (events[0].alias, events[0].version) == (CHALLENGER, "1")
    assert events[0].moved_by.startswith("pricebot train")


# Honesty --------------------------------------------------------------------------------------


def test_on_a_random_walk_no_skill_is_found_and_nothing_is_promoted(
    tracking_uri: str, database_url: str
) -> None:
    # Given candles with no predictable structure at all
    candles = synthetic_candles("RWALKUSDT", 24 + 6, mode="random_walk")
    dataset = frames_dataset(candles, "RWALKUSDT", "ret60m")

    # When the whole job runs on them
    outcome = train(
        TrainingConfig(symbol="RWALKUSDT", target="ret60m", trials=2, folds=3,
                       database_url=database_url, show_progress=False),
        dataset=dataset,
    )  # fmt: skip

    # Then out-of-sample direction is a coin flip for every model and nothing becomes champion
    accuracy = {r.name: r.mean_over("directional_accuracy") for r in outcome.results
                if r.kind == "model"}  # fmt: skip
    assert all(0.42 <= a <= 0.58 for a in accuracy.values()), accuracy
    assert not outcome.promoted
    assert Registry(tracking_uri).alias_version(outcome.model_name, CHAMPION) is None


def test_the_offline_demos_swinging_market_gets_a_model_promoted_over_the_demos_window(
    tracking_uri: str, database_url: str
) -> None:
    # Given the demo's market (swinging, seed 7) and its window: 14 days of feature rows after
    # the features' warm-up, with the demo's target (ret60m) and the default 5 folds
    days, warmup_days = 14, WARMUP_MINUTES // 1440 + 1
    start = datetime(2026, 11, 21, tzinfo=UTC) - timedelta(days=days + warmup_days + 1)
    candles = synthetic_candles("BTCUSDT", days + warmup_days + 1, start=start, mode="swinging")
    features = compute_features(candles)
    first_row = candles.index[-1] - pd.Timedelta(days=days)
    dataset = dataset_from_frames(
        "BTCUSDT", candles, features[features.index >= first_row], parse_target("ret60m"),
        feature_set="v1", feature_columns=feature_names("v1"), max_gap_minutes=5,
        market="simulated:swinging",
    )  # fmt: skip

    # When the whole job runs on it, under the same promotion gate as any other data
    outcome = train(
        TrainingConfig(symbol="BTCUSDT", target="ret60m", trials=0, folds=5,
                       database_url=database_url, show_progress=False),
        dataset=dataset,
    )  # fmt: skip

    # Then on the held-out fold the winner beats every baseline, cash included, by a margin the
    # data supports, with accuracy significantly above the best baseline's on the same rows,
    # and becomes champion (the random walk above, under the same gate, promotes nothing)
    assert outcome.promoted, outcome.decision.reason
    margins = {m.rival: m for m in outcome.decision.margins}
    baselines = {r.name for r in outcome.results if r.kind == "baseline"}
    assert set(margins) == baselines >= {"cash", "buy_and_hold", "momentum"}
    assert all(m.lower_bound > 0 for m in margins.values()), margins
    assert Registry(tracking_uri).alias_version(outcome.model_name, CHAMPION) == outcome.version
    version = MlflowClient(tracking_uri).get_model_version(outcome.model_name, outcome.version)
    assert version.tags["market"] == "simulated:swinging"


def test_real_skill_is_promoted_and_a_retrain_that_is_no_better_is_not(
    tracking_uri: str, database_url: str
) -> None:
    # Given a market whose hourly swings are predictable from the last hour (four days of rows:
    # a held-out day of 24 hourly holds, at least the 20 the gate asks for)
    dataset = frames_dataset(patterned_candles(24 + 4), "SWINGUSDT", "ret60m")
    config = TrainingConfig(symbol="SWINGUSDT", target="ret60m", trials=0, folds=3,
                            database_url=database_url, show_progress=False)  # fmt: skip

    # When the job runs twice on the same data
    first = train(config, dataset=dataset)
    second = train(config, dataset=dataset)

    # Then the first model beats every baseline and is promoted; the retrain ties and is not
    assert first.promoted, first.decision.reason
    assert first.table.loc[first.winner, "heldout_directional_accuracy"] > 0.8
    assert not second.promoted
    assert "champion" in second.decision.reason
    client = MlflowClient(tracking_uri)
    assert Registry(client=client).alias_version(first.model_name, CHAMPION) == first.version
    assert Registry(client=client).alias_version(first.model_name, CHALLENGER) == second.version
    with psycopg.connect(database_url) as conn:
        moves = [(e.alias, e.version) for e in alias_history(conn, first.model_name)]
    assert moves == [(CHALLENGER, "1"), (CHAMPION, "1"), (CHALLENGER, "2")]


def test_a_classification_target_registers_a_model_that_outputs_probabilities(
    tracking_uri: str, database_url: str
) -> None:
    dataset = frames_dataset(synthetic_candles("CLASSUSDT", 24 + 3), "CLASSUSDT", "up0.5pct1h")

    outcome = train(
        TrainingConfig(symbol="CLASSUSDT", target="up0.5pct1h", trials=0, folds=3,
                       database_url=database_url, show_progress=False),
        dataset=dataset,
    )  # fmt: skip

    assert outcome.model_name == "pricebot-classusdt-up0p5pct1h"
    assert set(outcome.table.index) >= {"logistic", "xgboost", "momentum", "base_rate", "cash"}
    model = mlflow.pyfunc.load_model(f"models:/{outcome.model_name}/{outcome.version}")
    probabilities = np.asarray(model.predict(dataset.features.iloc[:50]), dtype="float64")
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    # with its decision threshold (chosen on the selection folds), classifier metrics and a
    # calibration plot
    client = MlflowClient(tracking_uri)
    version = client.get_model_version(outcome.model_name, outcome.version)
    winner = outcome.report.candidate(outcome.winner)
    assert float(version.tags["decision_threshold"]) == winner.threshold
    run = client.get_run(version.run_id)
    assert {"heldout_log_loss", "heldout_brier", "heldout_roc_auc",
            "selection_brier"} <= set(run.data.metrics)  # fmt: skip
    assert "calibration.png" in {a.path for a in client.list_artifacts(version.run_id)}


# Bad input -------------------------------------------------------------------------------------


def test_an_unreachable_tracking_server_is_a_clear_error_before_any_work(
    seeded_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", nowhere)
    mlflow.set_tracking_uri(nowhere)

    result = CliRunner().invoke(app, ["train", "--symbol", "AVAXUSDT", "--target", "ret45m"])

    assert result.exit_code == 1
    assert f"The MLflow tracking server at {nowhere} is unreachable" in flat(result.output)


def test_an_unknown_symbol_is_a_clear_error_and_registers_nothing(
    seeded_env: str, tracking_uri: str
) -> None:
    result = CliRunner().invoke(app, ["train", "--symbol", "NOPEUSDT", "--target", "ret45m"])

    assert result.exit_code == 1
    assert "No candles stored for NOPEUSDT. Symbols with candles: AVAXUSDT" in flat(result.output)
    assert registered_versions(MlflowClient(tracking_uri), model_name("NOPEUSDT", "ret45m")) == []


def test_a_target_that_does_not_parse_is_a_clear_error(seeded_env: str) -> None:
    result = CliRunner().invoke(app, ["train", "--symbol", "AVAXUSDT", "--target", "up24h"])

    assert result.exit_code == 1
    assert "Target spec 'up24h' does not parse" in flat(result.output)


def test_one_fold_is_refused_before_any_work_and_registers_nothing(
    seeded_env: str, tracking_uri: str
) -> None:
    result = CliRunner().invoke(
        app, ["train", "--symbol", "AVAXUSDT", "--target", "ret45m", "--folds", "1"]
    )

    assert result.exit_code == 1
    assert "--folds 1 leaves no held-out data" in flat(result.output)
    assert registered_versions(MlflowClient(tracking_uri), model_name("AVAXUSDT", "ret45m")) == []


def test_too_little_data_for_the_folds_is_a_clear_error_and_registers_nothing(
    seeded_env: str, tracking_uri: str
) -> None:
    result = CliRunner().invoke(
        app, ["train", "--symbol", "AVAXUSDT", "--target", "ret45m", "--folds", "100"]
    )

    assert result.exit_code == 1
    assert "Too little data for the folds" in flat(result.output)
    assert registered_versions(MlflowClient(tracking_uri), model_name("AVAXUSDT", "ret45m")) == []


def test_a_failure_while_registering_leaves_no_half_registered_model(
    tracking_uri: str, database_url: str
) -> None:
    # Given a database that cannot record alias moves
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE model_alias_events")
    dataset = frames_dataset(synthetic_candles("BROKEUSDT", 24 + 3), "BROKEUSDT", "ret60m")

    # When the job gets as far as registering
    with pytest.raises(psycopg.errors.UndefinedTable):
        train(
            TrainingConfig(symbol="BROKEUSDT", target="ret60m", trials=0, folds=3,
                           database_url=database_url, show_progress=False),
            dataset=dataset,
        )  # fmt: skip

    # Then no version (nor an empty registered model) is left behind
    client = MlflowClient(tracking_uri)
    assert client.search_registered_models(f"name = '{model_name('BROKEUSDT', 'ret60m')}'") == []


def test_python_m_training_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pricebot_training", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "--trials" in result.stdout
