"""The model file every registered pricebot model is logged with (MLflow "models from code").

MLflow copies this file into the model's directory and runs it when the model is loaded, so a
registered model needs nothing of pricebot to load and predict: only the distributions in its
own ``requirements.txt`` (MLflow, numpy, pandas, scikit-learn and the candidate's library, at the
versions that trained it). ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` work on it
in a fresh environment. (Models logged before this file existed are cloudpickles of
:class:`pricebot.forecaster.Forecaster` and need pricebot installed; they still load where it
is.)

The fitted estimator is the artifact ``estimator`` (a pickle of library objects only: no
pricebot class in it); the model's configuration holds its feature columns, its kind and, for a
pooled model, its symbols.

The contract: input a DataFrame with exactly the feature columns (float64), plus, for a pooled
model, a string column ``symbol`` naming one of its symbols; output one float per row: the
forward return for ``ret`` targets, the probability of the event for classification targets.

Keep this file self-contained: standard library, numpy, pandas and MLflow imports only.
"""

from __future__ import annotations

import pickle
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import set_model

SYMBOL_COLUMN = "symbol"
#: A pooled model's indicator column for symbol S is ``symbol=S`` (pricebot.pooling writes the
#: same names when it builds the training matrix).
INDICATOR_PREFIX = "symbol="


class PortableForecaster(mlflow.pyfunc.PythonModel):
    """A fitted estimator behind the contract (module docstring)."""

    def load_context(self, context: Any) -> None:
        config = context.model_config or {}
        self.columns = [str(c) for c in config["columns"]]
        self.kind = str(config["kind"])
        self.symbols = [str(s) for s in config.get("symbols") or []]
        with open(context.artifacts["estimator"], "rb") as handle:
            self.estimator = pickle.load(handle)  # noqa: S301  (our own artifact)

    # No type hint on model_input: MLflow reads one as a schema and warns unless it is list[...]
    # (the signature logged with the model is the schema).
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        frame = pd.DataFrame(model_input)
        expected = set(self.columns) | ({SYMBOL_COLUMN} if self.symbols else set())
        if set(frame.columns) != expected:
            missing = sorted(expected - set(frame.columns))
            extra = sorted(set(frame.columns) - expected)
            raise ValueError(
                f"expected exactly the {len(self.columns)} feature columns"
                + (f" and {SYMBOL_COLUMN!r}" if self.symbols else "")
                + f"; missing {missing[:5]}, unexpected {extra[:5]}"
            )
        x = frame[self.columns].astype("float64")
        if self.symbols:
            names = frame[SYMBOL_COLUMN].astype(str).str.upper()
            unknown = sorted(set(names) - set(self.symbols))
            if unknown:
                raise ValueError(
                    f"this pooled model serves {', '.join(self.symbols)}, not {', '.join(unknown)}"
                )
            for symbol in self.symbols:
                x[INDICATOR_PREFIX + symbol] = (names == symbol).to_numpy(dtype="float64")
        if self.kind == "classification":
            return np.asarray(self.estimator.predict_proba(x)[:, 1], dtype="float64")
        return np.asarray(self.estimator.predict(x), dtype="float64").ravel()


set_model(PortableForecaster())
