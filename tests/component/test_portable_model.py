"""A registered model loads and predicts in a fresh environment built only from its own
requirements.txt: no pricebot installed, nothing but what the model declares.

The environment is built for real with uv (its package cache is warm on a development machine
and in CI, so the install takes seconds, not minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pricebot.targets import parse_target
from pricebot_training import tracking
from pricebot_training.candidates import fit, plugin
from tests.fixtures.market_frames import synthetic_candles

pytestmark = pytest.mark.portable

PREDICT = """
import json, sys
import pandas as pd
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.read_json(sys.argv[2], orient="split")
print(json.dumps([float(v) for v in model.predict(rows)]))
"""


def _fresh_env(root: Path, requirements: Path) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build the model's environment (`pip install uv`)")
    env = root / "env"
    subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(env)], check=True)
    python = env / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), "-r",
                    str(requirements)], check=True, timeout=600)  # fmt: skip
    return python


@pytest.fixture(scope="module")
def logged_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, list]:
    """A LightGBM regressor fitted on generated features and logged the way training logs it,
    saved as a plain model directory (what `mlflow models serve -m` takes)."""
    from pricebot.dataset import dataset_from_frames
    from pricebot.features import compute_features, feature_names

    root = tmp_path_factory.mktemp("portable")
    candles = synthetic_candles("PORTUSDT", 25)
    spec = parse_target("ret60m")
    dataset = dataset_from_frames(
        "PORTUSDT", candles, compute_features(candles), spec, feature_set="v1",
        feature_columns=feature_names("v1"), max_gap_minutes=5,
    )  # fmt: skip
    family = plugin("lightgbm")
    estimator = fit(family.candidate(spec, {"n_estimators": 20}, 0), dataset.features,
                    dataset.label, spec)  # fmt: skip
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.create_experiment("portable", artifact_location=(root / "a").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = tracking.log_forecaster(estimator, dataset.features.iloc[:5], spec.kind,
                                       requirements=family.requirements)  # fmt: skip
    model_dir = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(root)))
    rows = dataset.features.iloc[100:110]
    expected = [float(v) for v in mlflow.pyfunc.load_model(str(model_dir)).predict(rows)]
    return model_dir, rows, expected


def test_the_model_declares_pinned_requirements_and_no_pricebot(
    logged_model: tuple[Path, pd.DataFrame, list],
) -> None:
    model_dir, _, _ = logged_model

    requirements = (model_dir / "requirements.txt").read_text().split()

    names = {line.split("==")[0] for line in requirements}
    assert {"mlflow", "numpy", "pandas", "scikit-learn", "lightgbm"} <= names
    assert all("==" in line for line in requirements), requirements
    assert not any(line.startswith("pricebot") for line in requirements)
    assert not (model_dir / "uv.lock").exists()  # the model's environment is its requirements


@pytest.fixture(scope="module")
def fresh_python(
    logged_model: tuple[Path, pd.DataFrame, list], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A virtual environment with only the model's requirements.txt installed."""
    model_dir, _, _ = logged_model
    return _fresh_env(tmp_path_factory.mktemp("env"), model_dir / "requirements.txt")


def test_a_fresh_environment_from_the_requirements_loads_and_predicts_the_same(
    logged_model: tuple[Path, pd.DataFrame, list], fresh_python: Path, tmp_path: Path
) -> None:
    # Given a virtual environment with only the model's requirements.txt installed
    model_dir, rows, expected = logged_model
    python = fresh_python
    no_pricebot = subprocess.run([str(python), "-c", "import pricebot"], capture_output=True)
    assert no_pricebot.returncode != 0

    # When it loads the model with mlflow.pyfunc.load_model and predicts
    (tmp_path / "rows.json").write_text(rows.to_json(orient="split"))
    (tmp_path / "predict.py").write_text(PREDICT)
    done = subprocess.run(
        [str(python), str(tmp_path / "predict.py"), str(model_dir), str(tmp_path / "rows.json")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip

    # Then it answers what the training environment answers
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.allclose(json.loads(done.stdout.strip().splitlines()[-1]), expected)


def test_mlflow_models_serve_answers_invocations_from_the_fresh_environment(
    logged_model: tuple[Path, pd.DataFrame, list], fresh_python: Path, tmp_path: Path
) -> None:
    import httpx

    from tests.conftest import free_port

    model_dir, rows, expected = logged_model
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    # as in an activated environment: the scoring server is started by name (uvicorn)
    env = {**os.environ, "PATH": f"{fresh_python.parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [str(fresh_python.parent / "mlflow"), "models", "serve", "-m", str(model_dir),
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        answer = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/invocations",
                    json={"dataframe_split": json.loads(rows.to_json(orient="split"))},
                    timeout=10,
                )
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert answer is not None, (tmp_path / "serve.log").read_text()[-3000:]
        assert answer.status_code == 200, answer.text
        assert np.allclose(answer.json()["predictions"], expected)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the mlflow command and the uvicorn it started
        server.wait(timeout=30)
