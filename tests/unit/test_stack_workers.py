"""How `pricebot up` sets its service's worker count: through BENTOML_CONFIG_OPTIONS."""

from __future__ import annotations

from pricebot_local.stack import BENTO_SERVICE, with_workers


def test_the_worker_count_is_the_only_option_when_none_are_set() -> None:
    assert with_workers("", 1) == "services.pricebot.workers=1"


def test_the_users_other_options_are_kept() -> None:
    # Given options the user set for something else
    options = "api_server.traffic.timeout=60 services.pricebot.traffic.timeout=60"

    # When the stack adds its worker count
    combined = with_workers(options, 2)

    # Then theirs stay, in order, and the worker count follows
    assert combined == f"{options} services.pricebot.workers=2"


def test_a_worker_count_the_user_set_wins() -> None:
    assert with_workers("services.pricebot.workers=4", 1) == "services.pricebot.workers=4"


def test_the_options_name_the_bentos_service() -> None:
    from pricebot_service.service import PriceBot

    assert PriceBot.name == BENTO_SERVICE
