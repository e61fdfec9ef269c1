"""Training: the whole job as ``pricebot train`` runs it, on generated minute candles.

Scenarios (each against a throw-away SQLite tracking store, from datasets built in memory from
the synthetic market, so the figure is the training job and not the database):

- ``demo``: what ``pricebot up`` trains per symbol (its ``StackOptions``: 28 days of rows,
  10 trials shared by the seven candidate families), ``ret1h``, 5 folds. Aim: <= 300 s on 2
  cores.
- ``pool``: a pooled run over four coins (14 days each), ``ret1h``, 5 folds, 30 trials.
- ``year`` (``PRICEBOT_BENCH_TRAIN_YEAR=1``, or ``PRICEBOT_BENCH_TRAIN_ONLY=year``): one
  symbol, a year of rows, ``ret24h``, 30 trials
  (the original issue-3 figure; slow with seven families, so off by default).

Per scenario: wall time, the seconds each candidate family took (its tuning and its folds, as
the job measures them: ``candidate_seconds``), the winner and the gate's decision.
Peak memory is ``ru_maxrss`` of this process and of its largest child. The load average at the
end is given because the machine is shared: compare ratios (a family's share of the job) rather
than seconds across runs.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see pricebot_training/__init__.py

FOLDS = 5
POOL_DAYS = 14
POOL_SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT")


def _peak_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb_self": round(own, 1), "peak_rss_mb_children": round(children, 1)}


def _dataset(symbol: str, days: int, target: str, seed: int):  # type: ignore[no-untyped-def]
    import pandas as pd

    from pricebot.dataset import dataset_from_frames
    from pricebot.features import WARMUP_MINUTES, compute_features, feature_names
    from pricebot.targets import parse_target
    from tests.fixtures.market_frames import synthetic_candles

    warmup_days = -(-WARMUP_MINUTES // 1440)
    candles = synthetic_candles(symbol, days + warmup_days + 1, mode="market", seed=seed,
                                start=datetime(2025, 1, 1, tzinfo=UTC))  # fmt: skip
    features = compute_features(candles)
    features = features[features.index > candles.index[-1] - pd.Timedelta(days=days)]
    return dataset_from_frames(symbol, candles, features, parse_target(target), feature_set="v1",
                               feature_columns=feature_names("v1"), max_gap_minutes=5)  # fmt: skip


def _run(name: str, datasets: list, target: str, trials: int, tmp: Path) -> dict:  # type: ignore[type-arg]
    import mlflow

    from pricebot_training import TrainingConfig, train
    from pricebot_training.pool_job import train_pool

    uri = f"sqlite:///{tmp / f'{name}.db'}"
    mlflow.set_tracking_uri(uri)
    pooled = len(datasets) > 1
    config = TrainingConfig(
        symbol="" if pooled else datasets[0].symbol,
        symbols=[d.symbol for d in datasets] if pooled else None,
        target=target, trials=trials, folds=FOLDS, tracking_uri=uri, record_history=False,
        show_progress=False,
    )  # fmt: skip
    from pricebot.registry import model_name, pool_model_name

    experiment = (pool_model_name(config.symbols, target) if pooled
                  else model_name(datasets[0].symbol, target))  # fmt: skip
    # the tracking store's schema and the experiment first: setup, not training
    mlflow.create_experiment(experiment, artifact_location=(tmp / f"{name}-artifacts").as_uri())
    started = time.perf_counter()
    outcome = train_pool(config, datasets=datasets) if pooled else train(config, datasets[0])
    total = time.perf_counter() - started
    families = dict(sorted(outcome.extra["candidate_seconds"].items(), key=lambda kv: -kv[1]))
    return {
        "train_seconds": round(total, 1),
        "rows": int(sum(len(d) for d in datasets)),
        "symbols": [d.symbol for d in datasets],
        "target": target,
        "trials": trials,
        "folds": FOLDS,
        "family_seconds": families,
        "family_share_of_job": {k: round(v / total, 3) for k, v in families.items()},
        "winner": outcome.winner,
        "promoted": outcome.promoted,
        "decision": outcome.decision.reason[:2000],
        "evaluation_table": outcome.table.round(5).reset_index().to_dict(orient="records"),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def run() -> dict:
    from pricebot_local.stack import StackOptions

    # PRICEBOT_BENCH_TRAIN_ONLY=demo (comma-separated) runs only the scenarios named
    only = set(os.environ.get("PRICEBOT_BENCH_TRAIN_ONLY", "demo,pool").split(","))
    if os.environ.get("PRICEBOT_BENCH_TRAIN_YEAR") == "1":
        only.add("year")
    options = StackOptions()
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="pricebot-bench-train-") as tmp:
        root = Path(tmp)
        if "demo" in only:
            demo = [_dataset("AVAXUSDT", options.days, "ret1h", seed=7)]
            result = _run("demo", demo, "ret1h", options.trials, root)
            figures["demo"] = {**result, "aim_seconds": 300,
                               "within_aim": result["train_seconds"] <= 300}  # fmt: skip
        if "pool" in only:
            pool = [_dataset(s, POOL_DAYS, "ret1h", seed=i) for i, s in enumerate(POOL_SYMBOLS)]
            figures["pool"] = _run("pool", pool, "ret1h", 30, root)
        if "year" in only:
            year = [_dataset("AVAXUSDT", 365, "ret24h", seed=7)]
            figures["year"] = _run("year", year, "ret24h", 30, root)
    figures.update(_peak_mb())
    return figures
