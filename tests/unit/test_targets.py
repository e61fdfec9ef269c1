"""Target specs: the grammar, canonical names, and errors that say what is wrong."""

from __future__ import annotations

import pytest

from pricebot.errors import TargetSpecError
from pricebot.targets import EXAMPLES, parse_target


def test_ret24h_is_the_forward_return_over_a_day() -> None:
    spec = parse_target("ret24h")

    assert (spec.name, spec.kind, spec.horizon_minutes) == ("ret24h", "regression", 1440)
    assert spec.threshold is None
    assert spec.direction is None


def test_up2pct24h_is_a_classifier_of_a_two_percent_rise_within_a_day() -> None:
    spec = parse_target("up2pct24h")

    assert (spec.kind, spec.horizon_minutes, spec.direction) == ("classification", 1440, "up")
    assert spec.threshold == pytest.approx(0.02)


def test_down_with_a_decimal_percent_parses_and_gets_a_dotless_name() -> None:
    spec = parse_target("down1.5pct4h")

    assert (spec.direction, spec.horizon_minutes) == ("down", 240)
    assert spec.threshold == pytest.approx(0.015)
    assert spec.name == "down1p5pct4h"
    assert parse_target(spec.name) == spec


def test_dir24h_asks_whether_the_close_a_day_later_is_higher() -> None:
    spec = parse_target("dir24h")

    assert (spec.kind, spec.rule, spec.direction, spec.threshold) == (
        "classification", "close", "up", 0.0,
    )  # fmt: skip
    assert parse_target("DIR1440M") == spec


def test_trendup5pct10d_compares_the_10_day_average_now_and_in_10_days() -> None:
    spec = parse_target("trendup5pct10d")

    assert (spec.rule, spec.direction, spec.horizon_minutes, spec.window_minutes) == (
        "trend", "up", 14400, 14400,
    )  # fmt: skip
    assert spec.threshold == pytest.approx(0.05)
    assert parse_target("trenddown2pct10d").direction == "down"


def test_touch_targets_keep_their_names_and_rule() -> None:
    assert parse_target("up2pct24h").rule == "touch"
    assert parse_target("up2pct24h").name == "up2pct24h"


@pytest.mark.parametrize("spelling", ["RET1440M", "ret24h", " Ret1d "])
def test_spellings_of_the_same_target_share_one_canonical_name(spelling: str) -> None:
    assert parse_target(spelling).name == "ret24h"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("foo24h", "must start with 'ret', 'dir', 'up', 'down' or 'trend'"),
        ("trend10d", "a trend target needs a move in percent"),
        ("ret", "must end with a horizon"),
        ("up24h", "needs a move in percent"),
        ("ret0h", "at least one minute"),
        ("ret90d", "longer than 30 days"),
        ("up0pct1h", "more than 0%"),
        ("", "empty"),
    ],
)
def test_a_spec_that_does_not_parse_names_the_problem_and_shows_examples(
    spec: str, problem: str
) -> None:
    with pytest.raises(TargetSpecError) as caught:
        parse_target(spec)

    message = str(caught.value)
    assert problem in message
    assert all(example in message for example in EXAMPLES)
