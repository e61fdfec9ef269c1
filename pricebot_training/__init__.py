"""The training job (an adapter): ``python -m pricebot_training`` or ``pricebot train``.

Candidates, tuning, MLflow tracking and promotion live here; the logic they rely on (labels,
datasets, walk-forward evaluation, the promotion rule, registry history) is in the core.
"""

import os

# XGBoost and scikit-learn use OpenMP. With its default (active) wait policy, idle threads spin,
# and on a 2-core machine shared with other work a 2-thread fit took 15x longer than 1 thread
# (measured: 8.7 s vs 0.6 s). Passive waiting removes that; it must be set before the OpenMP
# runtime loads, i.e. before xgboost/sklearn are imported, hence here and not in a function.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import Any

__all__ = ["TrainingConfig", "TrainingOutcome", "train"]


def __getattr__(name: str) -> Any:
    """The job's names, imported on first use: the ``pricebot`` CLI loads this package to find
    the ``train`` command, and every ``pricebot`` process (exchange, serve, monitor, up) would
    otherwise import MLflow, XGBoost and Optuna at start (seconds each time)."""
    if name in __all__:
        from pricebot_training import job

        return getattr(job, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
