"""Which Binance Vision files cover a range (pricebot.vision.plan_files)."""

from __future__ import annotations

from datetime import date

from pricebot.vision import VisionFile, plan_files

TODAY = date(2024, 3, 10)


def names(files: list[VisionFile]) -> list[str]:
    return [f.name for f in files]


def test_whole_months_come_monthly_and_the_current_month_daily_up_to_yesterday() -> None:
    files = plan_files("BTCUSDT", date(2024, 1, 1), date(2024, 12, 31), today=TODAY)
    assert names(files) == [
        "BTCUSDT-1m-2024-01.zip",
        "BTCUSDT-1m-2024-02.zip",
        *(f"BTCUSDT-1m-2024-03-{d:02d}.zip" for d in range(1, 10)),
    ]


def test_partial_months_at_either_end_come_as_their_days() -> None:
    files = plan_files("ETHUSDT", date(2023, 11, 29), date(2024, 1, 2), today=TODAY)
    assert names(files) == [
        "ETHUSDT-1m-2023-11-29.zip",
        "ETHUSDT-1m-2023-11-30.zip",
        "ETHUSDT-1m-2023-12.zip",
        "ETHUSDT-1m-2024-01-01.zip",
        "ETHUSDT-1m-2024-01-02.zip",
    ]


def test_a_range_starting_today_has_nothing_published() -> None:
    assert plan_files("BTCUSDT", TODAY, TODAY, today=TODAY) == []


def test_files_know_where_binance_vision_keeps_them() -> None:
    [monthly] = plan_files("BTCUSDT", date(2024, 1, 1), date(2024, 1, 31), today=TODAY)
    assert monthly.url_path == "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip"
    [daily] = plan_files("BTCUSDT", date(2024, 3, 9), date(2024, 3, 9), today=TODAY)
    assert daily.url_path == "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03-09.zip"


def test_a_leap_february_has_29_days() -> None:
    [february] = plan_files("BTCUSDT", date(2024, 2, 1), date(2024, 2, 29), today=TODAY)
    assert len(february.days()) == 29
    assert february.days()[-1].name == "BTCUSDT-1m-2024-02-29.zip"
