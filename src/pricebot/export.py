"""Datasets out, for models trained elsewhere: a symbol's or a pool's features and labels, with
their lineage, as Parquet and CSV.

The files hold exactly the rows ``pricebot train`` evaluates on (:mod:`pricebot.dataset`: every
feature present, a label whose horizon has passed, no label across a long gap), one row per
(open time, symbol), sorted by time:

- ``open_time`` (UTC) and ``symbol``;
- the feature columns, in the feature set's order (``lineage.json`` lists them: a model must be
  fitted on exactly these, in this order; ``pricebot register`` checks it);
- for a pool, one indicator column ``symbol=<S>`` per symbol (1.0 on S's rows), which a pooled
  model is fitted on after the features (``pricebot register --symbols`` expects them);
- ``label`` (the target: a forward return, or 1.0/0.0 for an event) and ``forward_return``
  (what holding the coin for the horizon returned; the pool value is measured in it). Neither
  is a feature: both look into the future.

``lineage.json`` says where the rows came from (symbols, range, feature set, target, market,
the SHA-256 the training run would record) and how to use them honestly: evaluate walk-forward,
with a gap of at least the horizon between training and test rows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from pricebot.dataset import Dataset
from pricebot.errors import MissingExtraError
from pricebot.pooling import SYMBOL_COLUMN, PooledDataset

FILE_STEM = "dataset"
FORMATS = ("parquet", "csv")


def dataset_frame(dataset: Dataset | PooledDataset) -> pd.DataFrame:
    """The rows as one table (module docstring)."""
    if isinstance(dataset, PooledDataset):
        frame = dataset.features.copy()
        frame.insert(0, SYMBOL_COLUMN, dataset.row_symbol)
        frame.insert(0, "open_time", dataset.times)
    else:
        frame = dataset.features.reset_index(drop=True).copy()
        frame.insert(0, SYMBOL_COLUMN, dataset.symbol)
        frame.insert(0, "open_time", dataset.times)
    frame["label"] = dataset.label.to_numpy()
    frame["forward_return"] = dataset.forward_return.to_numpy()
    return frame


def export_lineage(dataset: Dataset | PooledDataset) -> dict[str, Any]:
    pooled = isinstance(dataset, PooledDataset)
    columns = dataset.feature_columns if pooled else list(dataset.features.columns)
    indicators = [c for c in dataset.features.columns if c not in columns] if pooled else []
    return {
        **dict(dataset.lineage),
        "pooled": pooled,
        "model_columns": [*columns, *indicators],
        "feature_columns": columns,
        "symbol_indicator_columns": indicators,
        "label": {
            "column": "label",
            "target": dataset.spec.name,
            "kind": dataset.spec.kind,
            "horizon_minutes": dataset.spec.horizon_minutes,
        },
        "not_features": ["open_time", SYMBOL_COLUMN, "label", "forward_return"],
        "honest_use": (
            "Evaluate walk-forward, purging at least horizon_minutes of wall time between "
            "training and test rows; `pricebot register` does this for you on these rows."
        ),
    }


def export_dataset(
    dataset: Dataset | PooledDataset, directory: Path | str, formats: tuple[str, ...] = FORMATS
) -> dict[str, Path]:
    """Write ``dataset.parquet``, ``dataset.csv`` and ``lineage.json`` into ``directory``.

    All files appear together or not at all: they are written into a temporary directory
    beside it and moved in only when every one is complete."""
    directory = Path(directory)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    frame = dataset_frame(dataset)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=directory))
    written: dict[str, Path] = {}
    try:
        if "parquet" in formats:
            try:
                frame.to_parquet(staging / f"{FILE_STEM}.parquet", index=False)
            except ImportError as exc:
                raise MissingExtraError(
                    f"Parquet needs pyarrow ({exc}); install pricebot with the `train` extra, "
                    "or export --format csv."
                ) from None
        if "csv" in formats:
            frame.to_csv(staging / f"{FILE_STEM}.csv", index=False)
        (staging / "lineage.json").write_text(
            json.dumps(export_lineage(dataset), indent=2, default=str) + "\n"
        )
        for path in staging.iterdir():
            target = directory / path.name
            os.replace(path, target)
            written[path.suffix.lstrip(".") if path.stem == FILE_STEM else path.stem] = target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
