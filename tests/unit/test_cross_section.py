"""The cross-sectional pool: hand-checked moves between coins, fees and cash."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricebot.cross_section import cross_section_pool
from pricebot.targets import parse_target

FEE = 0.001
SPEC = parse_target("ret60m")
T0 = pd.Timestamp("2026-02-01", tz="UTC")


def at(*minutes: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([T0 + pd.Timedelta(minutes=m) for m in minutes])


def test_it_holds_the_best_coin_net_of_a_moves_fees_and_stays_when_staying_is_better() -> None:
    times = {"A": at(0, 60, 120), "B": at(0, 60, 120)}
    # t0: A (.05 - 2 fees) beats B; t60: B's .06 - 2 fees beats staying in A (.05);
    # t120: staying in B (.02) beats moving to A (-.01 - 2 fees)
    predictions = {"A": np.array([0.05, 0.05, -0.01]), "B": np.array([0.01, 0.06, 0.02])}
    forward = {"A": np.array([0.02, 0.01, 0.03]), "B": np.array([0.00, 0.04, -0.01])}

    pool, held = cross_section_pool(times, predictions, forward, SPEC, fee=FEE, pools=1)

    # buy A, sell A and buy B, keep B, sell B at the end: four fees
    assert pool.value == pytest.approx(1.02 * 1.04 * 0.99 * (1 - FEE) ** 4)
    assert pool.gross == pytest.approx(1.02 * 1.04 * 0.99)
    assert pool.trades == 2
    assert held == pytest.approx({"A": 1 / 3, "B": 2 / 3, "cash": 0.0})


def test_when_no_coin_is_expected_to_beat_the_fees_it_stays_in_cash() -> None:
    times = {"A": at(0, 60), "B": at(0, 60)}
    predictions = {"A": np.array([0.0015, -0.01]), "B": np.array([0.001, 0.0])}
    forward = {"A": np.array([0.05, 0.05]), "B": np.array([0.05, 0.05])}

    pool, held = cross_section_pool(times, predictions, forward, SPEC, fee=FEE, pools=1)

    assert (pool.value, pool.trades) == (1.0, 0)
    assert held["cash"] == 1.0


def test_a_hole_in_the_data_closes_the_position() -> None:
    times = {"A": at(0, 180)}  # the period starting at 60 is missing
    pool, _ = cross_section_pool(times, {"A": np.array([0.05, 0.05])},
                                 {"A": np.array([0.01, 0.02])}, SPEC, fee=FEE, pools=1)  # fmt: skip

    # bought, sold before the hole, bought again, sold at the end
    assert pool.value == pytest.approx(1.01 * 1.02 * (1 - FEE) ** 4)
    assert pool.trades == 2


def test_a_classifier_holds_the_most_confident_called_coin() -> None:
    spec = parse_target("dir60m")
    times = {"A": at(0), "B": at(0), "C": at(0)}
    predictions = {"A": np.array([0.7]), "B": np.array([0.9]), "C": np.array([0.95])}
    forward = {"A": np.array([0.01]), "B": np.array([0.02]), "C": np.array([0.03])}

    # C is not called at a threshold above its probability... all are called at 0.6: C wins
    pool, held = cross_section_pool(times, predictions, forward, spec, fee=FEE, threshold=0.6,
                                    pools=1)  # fmt: skip

    assert held["C"] == 1.0
    assert pool.value == pytest.approx(1.03 * (1 - FEE) ** 2)


def test_staggered_pools_start_a_fraction_of_the_horizon_apart() -> None:
    minutes = np.arange(0, 240)
    times = {"A": at(*minutes)}
    pool, _ = cross_section_pool(times, {"A": np.full(240, 0.05)}, {"A": np.full(240, 0.001)},
                                 SPEC, fee=0.0)  # fmt: skip

    starts = sorted(int(ends[0]) - 60 for ends, _ in pool.paths)
    first = int(times["A"][0].value // 60_000_000_000)
    assert [s - first for s in starts] == [i * 60 // 24 for i in range(24)]
