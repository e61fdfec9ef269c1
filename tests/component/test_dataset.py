"""Datasets from a real PostgreSQL: features joined with labels, gaps dropped, lineage."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest

from pricebot.dataset import build_dataset, dataset_from_frames
from pricebot.errors import NoFeaturesError, UnknownSymbolError
from pricebot.features import compute_features, feature_names
from pricebot.targets import parse_target
from pricebot.transform import update_features
from pricebot_local.localdb import LocalPostgres
from tests.conftest import TEMPLATE_DB
from tests.fixtures.market_frames import store_candles, synthetic_candles

DAYS = 27  # 24 days of feature warm-up, then three days of rows
SPEC = parse_target("ret60m")


@pytest.fixture(scope="module")
def seeded(postgres: LocalPostgres) -> Iterator[str]:
    """One database for the module: AVAXUSDT candles and features, ETHUSDT candles only."""
    name = f"dataset_{os.getpid()}"
    url = postgres.create_database(name, template=TEMPLATE_DB)
    store_candles(url, synthetic_candles("AVAXUSDT", DAYS), "AVAXUSDT")
    store_candles(url, synthetic_candles("ETHUSDT", 1), "ETHUSDT")
    update_features(url, ["AVAXUSDT"])
    yield url
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_dataset_has_every_feature_row_with_a_label_and_none_of_the_last_hour(
    seeded: str,
) -> None:
    with psycopg.connect(seeded) as conn:
        dataset = build_dataset(conn, "AVAXUSDT", SPEC, max_gap_minutes=5)

    candles = synthetic_candles("AVAXUSDT", DAYS)
    last_candle = candles.index[-1]
    assert list(dataset.features.columns) == feature_names("v1")
    assert dataset.times[-1] == last_candle - pd.Timedelta(minutes=60)
    assert len(dataset) == 3 * 1440 - 60
    expected = candles["close"].shift(-60) / candles["close"] - 1
    np.testing.assert_allclose(dataset.label, expected.reindex(dataset.times), rtol=1e-9)


def test_lineage_names_the_data_and_its_hash_is_reproducible(seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        first = build_dataset(conn, "AVAXUSDT", SPEC, max_gap_minutes=5)
        again = build_dataset(conn, "AVAXUSDT", SPEC, max_gap_minutes=5)
        shorter = build_dataset(
            conn, "AVAXUSDT", SPEC, max_gap_minutes=5, end=first.times[-1] - timedelta(hours=1)
        )

    lineage = first.lineage
    assert (lineage["symbol"], lineage["target"], lineage["feature_set"]) == (
        "AVAXUSDT", "ret1h", "v1",
    )  # fmt: skip
    assert lineage["rows"] == len(first)
    assert lineage["rows_unlabelled"] == 60
    assert lineage["start"] == first.times[0].isoformat()
    assert len(str(lineage["sha256"])) == 64
    assert again.lineage["sha256"] == lineage["sha256"]
    assert shorter.lineage["sha256"] != lineage["sha256"]


def test_a_range_limits_rows_and_still_labels_up_to_its_end(seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        full = build_dataset(conn, "AVAXUSDT", SPEC, max_gap_minutes=5)
        start, end = full.times[100], full.times[1000]
        part = build_dataset(conn, "AVAXUSDT", SPEC, start=start, end=end, max_gap_minutes=5)

    assert (part.times[0], part.times[-1]) == (start, end)
    pd.testing.assert_series_equal(part.label, full.label.loc[start:end])
    pd.testing.assert_series_equal(part.past_return, full.past_return.loc[start:end])


def test_an_unknown_symbol_is_refused_naming_the_symbols_that_exist(seeded: str) -> None:
    with psycopg.connect(seeded) as conn, pytest.raises(UnknownSymbolError) as caught:
        build_dataset(conn, "NOPEUSDT", SPEC)

    assert "No candles stored for NOPEUSDT" in str(caught.value)
    assert "AVAXUSDT, ETHUSDT" in str(caught.value)


def test_candles_without_features_say_to_run_the_transform(seeded: str) -> None:
    with (
        psycopg.connect(seeded) as conn,
        pytest.raises(NoFeaturesError, match="pricebot transform"),
    ):
        build_dataset(conn, "ETHUSDT", SPEC)


def test_rows_whose_label_window_crosses_a_long_gap_are_dropped() -> None:
    # Given candles with a 20-minute hole two days after the warm-up
    candles = synthetic_candles("AVAXUSDT", 27)
    hole_start = datetime(2026, 1, 27, 12, tzinfo=UTC)
    hole = (candles.index >= hole_start) & (candles.index < hole_start + timedelta(minutes=20))
    candles = candles[~hole]
    features = compute_features(candles)

    # When the dataset is built with a 5-minute limit
    dataset = dataset_from_frames(
        "AVAXUSDT", candles, features, SPEC,
        feature_set="v1", feature_columns=feature_names("v1"), max_gap_minutes=5,
    )  # fmt: skip

    # Then no kept row's hour ahead reaches into the hole, and the drop is counted
    reaches_hole = (dataset.times < hole_start + timedelta(minutes=20)) & (
        dataset.times + timedelta(minutes=60) >= hole_start
    )
    assert not reaches_hole.any()
    assert dataset.lineage["rows_crossing_gaps"] > 0
    assert dataset.times[-1] > hole_start + timedelta(minutes=20)  # rows after it are kept
