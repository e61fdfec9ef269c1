"""The MLflow pyfunc every registered pricebot model is: feature columns in, target value out.

It lives in the core (not in training/) because a pickled model refers to its class by module
path: the service loads models without the training job installed. Imported only by code that
has MLflow (training, serving).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd


class Forecaster(mlflow.pyfunc.PythonModel):
    """A fitted estimator behind the contract: input a DataFrame with exactly ``columns``
    (float64), output one float per row: the forward return for ``ret`` targets, the probability
    of the event for classification targets.
    """

    def __init__(self, estimator: Any, columns: list[str], kind: str) -> None:
        self.estimator = estimator
        self.columns = list(columns)
        self.kind = kind

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        frame = pd.DataFrame(model_input)
        if set(frame.columns) != set(self.columns):
            missing = sorted(set(self.columns) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(self.columns))
            raise ValueError(
                f"expected exactly the {len(self.columns)} feature columns; "
                f"missing {missing[:5]}, unexpected {extra[:5]}"
            )
        return predict_values(self.estimator, frame[self.columns].astype("float64"), self.kind)


def predict_values(estimator: Any, features: pd.DataFrame, kind: str) -> np.ndarray:
    """Regressors' predictions, or the positive class's probability for classifiers."""
    if kind == "classification":
        return np.asarray(estimator.predict_proba(features)[:, 1], dtype="float64")
    return np.asarray(estimator.predict(features), dtype="float64").ravel()
