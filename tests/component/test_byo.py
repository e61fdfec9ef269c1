"""Bring your own model: export a dataset, fit a model elsewhere on it, register it through
the walk-forward evaluation and the gate (real PostgreSQL, a real MLflow server)."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from pricebot.dataset import build_dataset
from pricebot.registry import CHALLENGER, Registry, model_name
from pricebot.targets import parse_target
from pricebot.transform import update_features
from pricebot_cli import app
from tests.conftest import TEMPLATE_DB
from tests.fixtures.market_frames import store_candles, synthetic_candles

SYMBOLS = ("BYAUSDT", "BYBUSDT")
TARGET = "ret1h"


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def seeded(postgres) -> Iterator[str]:
    name = f"byo_{os.getpid()}"
    url = postgres.create_database(name, template=TEMPLATE_DB)
    for i, symbol in enumerate(SYMBOLS):
        store_candles(url, synthetic_candles(symbol, 27, seed=10 + i), symbol)
    update_features(url, list(SYMBOLS))
    yield url
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def env(seeded: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from pricebot.settings import get_settings

    monkeypatch.setenv("PRICEBOT_DATABASE_URL", seeded)
    get_settings.cache_clear()
    yield seeded
    get_settings.cache_clear()


def export(out: Path, *args: str) -> None:
    result = CliRunner().invoke(app, ["dataset", "export", "--out", str(out), "--target", TARGET,
                                      *args])  # fmt: skip
    assert result.exit_code == 0, result.output


def test_the_export_holds_the_training_rows_with_their_lineage(env: str, tmp_path: Path) -> None:
    export(tmp_path, "--symbol", "byausdt")

    table = pd.read_parquet(tmp_path / "dataset.parquet")
    lineage = json.loads((tmp_path / "lineage.json").read_text())
    with psycopg.connect(env) as conn:
        dataset = build_dataset(conn, "BYAUSDT", parse_target(TARGET))
    assert len(table) == len(dataset)
    assert lineage["sha256"] == dataset.lineage["sha256"]
    assert lineage["model_columns"] == list(dataset.features.columns)
    assert table[lineage["model_columns"]].to_numpy().tolist() == (
        dataset.features.to_numpy().tolist()
    )
    assert table["label"].tolist() == dataset.label.tolist()
    csv = pd.read_csv(tmp_path / "dataset.csv")
    assert list(csv.columns) == list(table.columns)
    assert len(csv) == len(table)


def test_a_pools_export_has_a_symbol_indicator_per_symbol(env: str, tmp_path: Path) -> None:
    export(tmp_path, "--symbols", ",".join(SYMBOLS), "--format", "csv")

    table = pd.read_csv(tmp_path / "dataset.csv")
    lineage = json.loads((tmp_path / "lineage.json").read_text())
    assert not (tmp_path / "dataset.parquet").exists()
    assert lineage["symbol_indicator_columns"] == [f"symbol={s}" for s in SYMBOLS]
    assert set(table["symbol"]) == set(SYMBOLS)
    assert (table["symbol=BYAUSDT"] == (table["symbol"] == "BYAUSDT")).all()


def test_a_model_fitted_elsewhere_is_evaluated_gated_and_registered_as_challenger(
    env: str, tracking_uri: str, tmp_path: Path
) -> None:
    # Given a model fitted outside pricebot on the exported rows
    from sklearn.ensemble import HistGradientBoostingRegressor

    export(tmp_path, "--symbol", "BYAUSDT")
    table = pd.read_parquet(tmp_path / "dataset.parquet")
    columns = json.loads((tmp_path / "lineage.json").read_text())["model_columns"]
    estimator = HistGradientBoostingRegressor(max_iter=20).fit(table[columns], table["label"])
    path = tmp_path / "mine.pkl"
    path.write_bytes(pickle.dumps(estimator))

    # When it is registered
    result = CliRunner().invoke(app, ["register", str(path), "--symbol", "BYAUSDT", "--target",
                                      TARGET, "--folds", "3"])  # fmt: skip

    # Then it ran walk-forward against the baselines and is the challenger, tagged as external
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "byo_mine" in text
    assert "cash" in text
    name = model_name("BYAUSDT", TARGET)
    version = Registry(tracking_uri).alias_version(name, CHALLENGER)
    tags = MlflowClient(tracking_uri).get_model_version(name, version).tags
    assert (tags["origin"], tags["candidate"]) == ("external", "byo_mine")
    assert len(tags["source.sha256"]) == 64


def test_a_model_fitted_on_other_columns_is_refused_and_registers_nothing(
    env: str, tracking_uri: str, tmp_path: Path
) -> None:
    from sklearn.linear_model import Ridge

    export(tmp_path, "--symbol", "BYBUSDT")
    table = pd.read_parquet(tmp_path / "dataset.parquet")
    columns = json.loads((tmp_path / "lineage.json").read_text())["model_columns"]
    path = tmp_path / "short.pkl"
    path.write_bytes(pickle.dumps(Ridge().fit(table[columns[1:]], table["label"])))

    result = CliRunner().invoke(app, ["register", str(path), "--symbol", "BYBUSDT", "--target",
                                      TARGET])  # fmt: skip

    assert result.exit_code == 1
    assert f"missing ['{columns[0]}']" in flat(result.output)
    assert not Registry(tracking_uri).exists(model_name("BYBUSDT", TARGET))
