"""Binance Vision file names, directory expansion and .CHECKSUM files (no database needed)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pricebot.archive import find_archives, parse_archive_name, verify_checksum
from pricebot.errors import ArchiveError, ArchiveNameError, ChecksumMismatchError


def test_monthly_zip_name_gives_symbol_and_the_whole_month() -> None:
    name = parse_archive_name(Path("/data/BTCUSDT-1m-2024-02.zip"))

    assert (name.symbol, name.interval, name.period, name.extension) == (
        "BTCUSDT", "1m", "monthly", "zip",
    )  # fmt: skip
    assert name.start == datetime(2024, 2, 1, tzinfo=UTC)
    assert name.end == datetime(2024, 3, 1, tzinfo=UTC)  # leap year: 29 days
    assert name.stem == "BTCUSDT-1m-2024-02"


def test_daily_csv_name_gives_one_day() -> None:
    name = parse_archive_name("ETHUSDT-1m-2025-01-31.csv")

    assert (name.symbol, name.period, name.first_day) == ("ETHUSDT", "daily", date(2025, 1, 31))
    assert name.end == datetime(2025, 2, 1, tzinfo=UTC)
    assert name.stem == "ETHUSDT-1m-2025-01-31"


def test_december_month_ends_at_new_year() -> None:
    assert parse_archive_name("ADAUSDT-1m-2024-12.zip").end == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("interval", ["1h", "5m", "1s", "1d", "1M"])
def test_other_intervals_are_refused_naming_the_interval(interval: str) -> None:
    with pytest.raises(ArchiveNameError, match=f"interval {interval} is not supported"):
        parse_archive_name(f"ETHUSDT-{interval}-2024-01.zip")


@pytest.mark.parametrize(
    "filename",
    [
        "notes.csv",
        "BTCUSDT-1m-2024.zip",
        "btcusdt-1m-2024-01.zip",
        "BTCUSDT-1m-2024-01.tar.gz",
        "BTCUSDT-trades-2024-01.zip",
        "BTCUSDT-1m-2024-01-01-extra.zip",
    ],
)
def test_unknown_file_names_are_refused_with_the_expected_pattern(filename: str) -> None:
    with pytest.raises(ArchiveNameError) as caught:
        parse_archive_name(filename)

    assert caught.value.path.name == filename
    assert "expected SYMBOL-1m-YYYY-MM.zip" in str(caught.value)


def test_impossible_date_is_refused() -> None:
    with pytest.raises(ArchiveNameError, match="not a calendar date"):
        parse_archive_name("BTCUSDT-1m-2024-02-30.zip")


def test_directory_expands_to_archives_in_name_order_skipping_checksums(tmp_path: Path) -> None:
    # Given a directory with archives, their checksums and a nested folder
    for name in ["ETHUSDT-1m-2024-01.zip", "BTCUSDT-1m-2024-02.csv", "BTCUSDT-1m-2024-01.zip"]:
        (tmp_path / name).write_bytes(b"")
        (tmp_path / f"{name}.CHECKSUM").write_text("x")
    (tmp_path / "daily").mkdir()
    (tmp_path / "daily" / "BTCUSDT-1m-2024-03-01.csv").write_bytes(b"")

    # When it is expanded
    found = find_archives([tmp_path])

    # Then only the archives come back, sorted by path
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "BTCUSDT-1m-2024-01.zip",
        "BTCUSDT-1m-2024-02.csv",
        "ETHUSDT-1m-2024-01.zip",
        "daily/BTCUSDT-1m-2024-03-01.csv",
    ]


def test_a_badly_named_archive_in_a_directory_fails_before_anything_is_imported(
    tmp_path: Path,
) -> None:
    (tmp_path / "BTCUSDT-1m-2024-01.zip").write_bytes(b"")
    (tmp_path / "BTCUSDT-1h-2024-01.zip").write_bytes(b"")

    with pytest.raises(ArchiveNameError, match=re.escape("BTCUSDT-1h-2024-01.zip: interval 1h")):
        find_archives([tmp_path])


def test_missing_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such file or directory"):
        find_archives([tmp_path / "nowhere"])


def _with_checksum(tmp_path: Path, content: bytes, digest: str | None = None) -> Path:
    path = tmp_path / "BTCUSDT-1m-2024-01.zip"
    path.write_bytes(content)
    digest = digest or hashlib.sha256(content).hexdigest()
    (tmp_path / "BTCUSDT-1m-2024-01.zip.CHECKSUM").write_text(f"{digest}  {path.name}\n")
    return path


def test_matching_checksum_is_ok(tmp_path: Path) -> None:
    assert verify_checksum(_with_checksum(tmp_path, b"archive bytes")) == "ok"


def test_no_checksum_file_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01.zip"
    path.write_bytes(b"archive bytes")

    assert verify_checksum(path) == "absent"


def test_checksum_mismatch_names_both_digests_and_the_fix(tmp_path: Path) -> None:
    path = _with_checksum(tmp_path, b"archive bytes", digest="0" * 64)

    with pytest.raises(ChecksumMismatchError) as caught:
        verify_checksum(path)

    message = str(caught.value)
    assert message.startswith("BTCUSDT-1m-2024-01.zip: SHA-256 ")
    assert hashlib.sha256(b"archive bytes").hexdigest() in message
    assert "0" * 64 in message
    assert "download it again" in message


def test_checksum_file_for_another_file_is_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01.zip"
    path.write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    (tmp_path / "BTCUSDT-1m-2024-01.zip.CHECKSUM").write_text(f"{digest}  ETHUSDT-1m-2024-01.zip")

    with pytest.raises(ChecksumMismatchError, match=re.escape("is for ETHUSDT-1m-2024-01.zip")):
        verify_checksum(path)


def test_garbled_checksum_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01.zip"
    path.write_bytes(b"x")
    (tmp_path / "BTCUSDT-1m-2024-01.zip.CHECKSUM").write_text("<html>Not Found</html>")

    with pytest.raises(ChecksumMismatchError, match="not '<sha256>  <file name>'"):
        verify_checksum(path)
