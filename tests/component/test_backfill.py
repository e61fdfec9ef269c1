"""Backfill from Binance Vision over real HTTP (a local look-alike server, fixture ``vision``)
into the real PostgreSQL: monthly and daily files, checksums, resumed downloads, missing months,
bad checksums, the market, the command."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from pricebot import provenance
from pricebot.backfill import BackfillResult, backfill
from pricebot.errors import MixedMarketsError
from pricebot.klines import count_klines, insert_klines, parse_kline, to_millis
from pricebot.settings import get_settings
from pricebot.vision import VisionClient, VisionFile
from pricebot_cli import app
from tests.fixtures.vision import VisionServer

TODAY = date(2024, 3, 10)  # the backfill's "today": the current month is March 2024
MINUTE = timedelta(minutes=1)
PER_FILE = 30  # minutes of candles in each published file (a file needs not be full)
JANUARY = VisionFile("BTCUSDT", "monthly", date(2024, 1, 1))
REAL_MONTH = Path("/work/shared/data/binance-vision/AVAXUSDT-1m-2026-07.zip")


def rows(first_day: date, minutes: int = PER_FILE) -> list[list]:
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    out = []
    for i in range(minutes):
        ms = to_millis(start + i * MINUTE)
        out.append([ms, "100.01", "100.05", "99.99", "100.02", "12.5", ms + 59_999, "1250.1",
                    7, "6.1", "610.0", "0"])  # fmt: skip
    return out


def publish_range(vision: VisionServer, symbol: str = "BTCUSDT") -> dict[str, Path]:
    """January and February 2024 as monthly files, March 1-9 as daily ones."""
    files = {}
    for month in (date(2024, 1, 1), date(2024, 2, 1)):
        files[f"{month:%Y-%m}"] = vision.publish(symbol, month, rows(month))
    for day in range(1, 10):
        first = date(2024, 3, day)
        files[f"{first}"] = vision.publish(symbol, first, rows(first), period="daily")
    return files


@pytest.fixture
def client(vision: VisionServer, tmp_path: Path) -> Iterator[VisionClient]:
    with VisionClient(vision.url, tmp_path / "archives", backoff_base=0.0) as c:
        yield c


def run(url: str, client: VisionClient, **options: object) -> BackfillResult:
    [result] = backfill(url, client, ["BTCUSDT"], date(2024, 1, 1), date(2024, 3, 31),
                        today=TODAY, **options)  # fmt: skip
    return result


def count(url: str, symbol: str = "BTCUSDT") -> int:
    with psycopg.connect(url) as conn:
        return count_klines(conn, symbol)


def runs(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT source, market, outcome FROM ingestion_runs ORDER BY id"
        ).fetchall()


def test_monthly_and_daily_files_are_downloaded_verified_and_imported(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given two months and nine days published
    publish_range(vision)
    # When BTCUSDT is backfilled from January 2024 on (the current month being March)
    result = run(database_url, client)
    # Then the two monthly and nine daily files came down, verified, and every candle is stored
    assert [d.status for d in result.downloads] == ["downloaded"] * 11
    assert result.rows_new == count(database_url) == 11 * PER_FILE
    # And each file is an audited archive import from Binance Vision
    assert runs(database_url) == [("archive", "binance-vision", "success")] * 11
    with psycopg.connect(database_url) as conn:
        assert provenance.symbol_markets(conn, "BTCUSDT") == {"binance-vision"}


def test_a_second_run_asks_nothing_for_verified_files_and_writes_nothing(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    publish_range(vision)
    run(database_url, client)
    asked = len(vision.seen)

    again = run(database_url, client)

    assert [d.status for d in again.downloads] == ["kept"] * 11
    assert len(vision.seen) == asked
    assert again.rows_new == 0
    assert count(database_url) == 11 * PER_FILE


def test_a_missing_month_is_reported_and_the_rest_imported(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given January never published (the symbol listed in February)
    files = publish_range(vision)
    for path in (files["2024-01"], files["2024-01"].with_name(files["2024-01"].name + ".CHECKSUM")):
        path.unlink()
    # When it is backfilled
    result = run(database_url, client)
    # Then January is reported missing, and February and March are stored
    assert [d.file.name for d in result.missing] == ["BTCUSDT-1m-2024-01.zip"]
    assert count(database_url) == 10 * PER_FILE


def test_a_bad_checksum_keeps_nothing_of_the_file_and_imports_the_others(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given February's published checksum does not match its zip
    files = publish_range(vision)
    vision.spoil_checksum(files["2024-02"])
    # When it is backfilled
    result = run(database_url, client)
    # Then February is refused naming both digests, not kept on disk, nothing of it stored
    [refused] = result.refused
    assert refused.file.name == "BTCUSDT-1m-2024-02.zip"
    assert "does not match" in refused.problem
    assert not client.destination(refused.file).exists()
    with psycopg.connect(database_url) as conn:
        february = conn.execute(
            "SELECT count(*) FROM klines"
            " WHERE open_time >= '2024-02-01' AND open_time < '2024-03-01'"
        ).fetchone()[0]
    assert february == 0
    assert count(database_url) == 10 * PER_FILE


def test_an_interrupted_download_is_resumed_where_it_stopped(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given January's download is cut off half-way, once
    files = publish_range(vision)
    half = files["2024-01"].stat().st_size // 2
    vision.cut_once[files["2024-01"].name] = half
    # When it is backfilled
    result = run(database_url, client)
    # Then the rest was asked for from where it stopped, the joined file verified and stored
    assert result.downloads[0].status == "resumed"
    ranges = [s.range for s in vision.requests_for("BTCUSDT-1m-2024-01.zip")]
    assert ranges == [None, f"bytes={half}-"]
    assert result.downloads[0].path.read_bytes() == files["2024-01"].read_bytes()
    assert count(database_url) == 11 * PER_FILE


def test_a_partial_file_left_by_an_earlier_run_is_resumed(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given half of January's zip on disk from a run that died
    files = publish_range(vision)
    january = files["2024-01"].read_bytes()
    part = client.destination(JANUARY).with_name("BTCUSDT-1m-2024-01.zip.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(january[: len(january) // 2])
    # When the backfill runs again
    result = run(database_url, client)
    # Then only the second half was asked for
    assert result.downloads[0].status == "resumed"
    assert [s.range for s in vision.requests_for("BTCUSDT-1m-2024-01.zip")] == [
        f"bytes={len(january) // 2}-"
    ]
    assert count(database_url) == 11 * PER_FILE


def test_a_server_that_will_not_resume_gets_the_file_downloaded_whole(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    files = publish_range(vision)
    vision.honour_range = False
    vision.cut_once[files["2024-01"].name] = files["2024-01"].stat().st_size // 2

    result = run(database_url, client)

    assert result.downloads[0].status == "downloaded"
    assert result.downloads[0].path.read_bytes() == files["2024-01"].read_bytes()
    assert count(database_url) == 11 * PER_FILE


def test_a_stale_partial_file_that_does_not_verify_is_downloaded_again(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given a .part file holding the start of another version of January's zip
    files = publish_range(vision)
    part = client.destination(JANUARY).with_name("BTCUSDT-1m-2024-01.zip.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"PK\x03\x04 an older upload" * 20)
    # When the backfill runs, Then the resumed join fails its checksum and is redone whole
    result = run(database_url, client)
    assert result.downloads[0].status == "downloaded"
    assert (
        hashlib.sha256(result.downloads[0].path.read_bytes()).hexdigest()
        == hashlib.sha256(files["2024-01"].read_bytes()).hexdigest()
    )
    assert count(database_url) == 11 * PER_FILE


def test_last_months_file_not_yet_published_is_replaced_by_its_days(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given February 2024 published only as daily files (early March, as Binance does)
    files = publish_range(vision)
    for suffix in ("", ".CHECKSUM"):
        files["2024-02"].with_name(files["2024-02"].name + suffix).unlink()
    for day in range(1, 30):
        vision.publish("BTCUSDT", date(2024, 2, day), rows(date(2024, 2, day), 5), period="daily")
    # When it is backfilled, Then February's 29 days came instead, and nothing is missing
    result = run(database_url, client)
    names = [d.file.name for d in result.downloads]
    assert "BTCUSDT-1m-2024-02-29.zip" in names
    assert result.missing == []
    assert count(database_url) == 10 * PER_FILE + 29 * 5


def test_archives_for_a_symbol_stored_from_the_simulated_exchange_are_refused_before_download(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given BTCUSDT holding candles from the simulated exchange
    publish_range(vision)
    with psycopg.connect(database_url) as conn:
        insert_klines(conn, [parse_kline(r, "BTCUSDT", "rest") for r in rows(date(2024, 4, 1))],
                      market="simulated:market")  # fmt: skip
    # When it is backfilled from Binance Vision
    with pytest.raises(MixedMarketsError, match="binance-vision"):
        run(database_url, client)
    # Then only the first checksum was asked for: no archive came down
    assert [s.path.rsplit("/", 1)[1] for s in vision.seen] == ["BTCUSDT-1m-2024-01.zip.CHECKSUM"]


def test_files_from_a_server_naming_a_simulated_market_are_recorded_as_such(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    publish_range(vision)
    vision.market = "simulated:swinging"

    run(database_url, client)

    assert set(runs(database_url)) == {("archive", "simulated:swinging", "success")}


@pytest.mark.skipif(not REAL_MONTH.exists(), reason="no real Binance Vision month on this machine")
def test_a_real_binance_vision_month_comes_down_and_imports_whole(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given a real month (AVAXUSDT, July 2026) published with its checksum
    directory = vision.root / "data/spot/monthly/klines/AVAXUSDT/1m"
    directory.mkdir(parents=True)
    target = directory / REAL_MONTH.name
    target.write_bytes(REAL_MONTH.read_bytes())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    target.with_name(target.name + ".CHECKSUM").write_text(f"{digest}  {target.name}\n")
    # When July 2026 is backfilled
    [result] = backfill(database_url, client, ["AVAXUSDT"], date(2026, 7, 1), date(2026, 7, 31))
    # Then every minute of the month is stored
    assert [d.status for d in result.downloads] == ["downloaded"]
    assert (
        result.rows_new
        == count(database_url, "AVAXUSDT")
        == 31 * 1440 - sum(i.gap_minutes for i in result.imports)
    )


def test_pricebot_backfill_downloads_imports_and_summarises(
    vision: VisionServer, settings_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given January and February 2024 published, and the settings pointing at the server
    for month in (date(2024, 1, 1), date(2024, 2, 1)):
        vision.publish("BTCUSDT", month, rows(month))
    monkeypatch.setenv("PRICEBOT_VISION_URL", vision.url)
    get_settings.cache_clear()
    # When `pricebot backfill` runs for them
    args = ["backfill", "--symbols", "btcusdt", "--since", "2024-01-01", "--until", "2024-02-29",
            "--dir", str(tmp_path / "archives")]  # fmt: skip
    done = CliRunner().invoke(app, args)
    # Then it stored them and says so, file by file and in total
    assert done.exit_code == 0, done.output
    assert "downloaded BTCUSDT-1m-2024-01.zip" in done.output
    assert count(settings_env) == 2 * PER_FILE
    assert f"{2 * PER_FILE}" in done.output.splitlines()[-2]


def test_pricebot_backfill_fails_naming_a_file_with_a_bad_checksum(
    vision: VisionServer, settings_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = vision.publish("BTCUSDT", date(2024, 1, 1), rows(date(2024, 1, 1)))
    vision.spoil_checksum(path)
    monkeypatch.setenv("PRICEBOT_VISION_URL", vision.url)
    get_settings.cache_clear()

    args = ["backfill", "--symbols", "BTCUSDT", "--since", "2024-01-01", "--until", "2024-01-31"]
    done = CliRunner().invoke(app, [*args, "--dir", str(tmp_path / "a")])

    assert done.exit_code == 1
    assert "BTCUSDT-1m-2024-01.zip" in done.output
    assert "does not match" in done.output
    assert count(settings_env) == 0


def test_pricebot_backfill_of_a_symbol_never_published_says_to_check_it(
    vision: VisionServer, settings_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRICEBOT_VISION_URL", vision.url)
    get_settings.cache_clear()

    args = ["backfill", "--symbols", "BTCUSTD", "--since", "2024-01-01", "--until", "2024-01-31"]
    done = CliRunner().invoke(app, [*args, "--dir", str(tmp_path / "a")])

    assert done.exit_code == 1
    assert "has no archive of BTCUSTD" in done.output


def test_pricebot_backfill_rejects_a_bad_date(settings_env: str) -> None:
    done = CliRunner().invoke(app, ["backfill", "--symbols", "BTCUSDT", "--since", "last year"])
    assert done.exit_code == 1
    assert "--since 'last year' is not a date" in done.output


def test_synthetic_days_published_for_rehearsals_come_down_as_the_simulated_market(
    vision: VisionServer, client: VisionClient, database_url: str
) -> None:
    # Given three days of the synthetic market published as Binance Vision daily files
    vision.publish_synthetic_days("BTCUSDT", date(2026, 2, 1), date(2026, 2, 3))
    # When they are backfilled
    [result] = backfill(database_url, client, ["BTCUSDT"], date(2026, 2, 1), date(2026, 2, 3))
    # Then every minute is stored, recorded as the simulated market it is
    assert result.rows_new == count(database_url) == 3 * 1440
    assert set(runs(database_url)) == {("archive", "simulated:market", "success")}
