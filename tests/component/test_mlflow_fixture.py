"""The session's MLflow server answers and keeps registry state in PostgreSQL."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient


def test_registered_model_is_visible_through_the_server(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)

    client.create_registered_model("fixture-check")

    assert client.get_registered_model("fixture-check").name == "fixture-check"
    assert mlflow.get_tracking_uri() == tracking_uri
