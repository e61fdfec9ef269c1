"""Archive import against a real PostgreSQL: every Binance Vision variant, bad files, the CLI.

Archives are written here, in tmp_path, for each layout Binance publishes: spot (no header,
milliseconds before 2025 and microseconds after), USDT-M futures (header row), monthly and daily,
zipped or plain CSV.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from pricebot.archive import import_archive, import_archives, write_archive
from pricebot.errors import (
    ArchiveNameError,
    ChecksumMismatchError,
    MalformedArchiveError,
    MislabelledArchiveError,
    TruncatedArchiveError,
)
from pricebot.gaps import list_gaps
from pricebot.klines import count_klines, insert_klines, parse_kline, to_millis
from pricebot_cli import app
from pricebot_local.localdb import LocalPostgres
from tests.conftest import TEMPLATE_DB

MINUTE = timedelta(minutes=1)
JAN_2024 = datetime(2024, 1, 1, tzinfo=UTC)
JAN_2025 = datetime(2025, 1, 1, tzinfo=UTC)


def klines(
    start: datetime,
    minutes: int,
    *,
    unit: str = "ms",
    skip: Sequence[int] = (),
    span: timedelta = MINUTE,
) -> list[list[str | int]]:
    """Valid 12-field klines, one per ``span`` from ``start``; prices keep trailing zeros."""
    factor = 1000 if unit == "us" else 1
    rows: list[list[str | int]] = []
    for i in range(minutes):
        if i in skip:
            continue
        opened = to_millis(start + i * span) * factor
        closed = opened + (to_millis(start + (i + 1) * span) - to_millis(start + i * span)) * factor
        base = 100 + i % 50
        rows.append([
            opened, f"{base}.01000000", f"{base}.05000000", f"{base - 1}.99000000",
            f"{base}.02000000", "12.34500000", closed - 1, "1234.56789000", i,
            "6.10000000", "610.00100000", "0",
        ])  # fmt: skip
    return rows


def stored(url: str, symbol: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT open_time, close_time, open::text, high::text, low::text, close::text, "
            "volume::text, quote_volume::text, trades, taker_buy_base_volume::text, "
            "taker_buy_quote_volume::text, ignore, source FROM klines WHERE symbol = %s "
            "ORDER BY open_time",
            (symbol,),
        ).fetchall()


def count(url: str, symbol: str | None = None) -> int:
    with psycopg.connect(url) as conn:
        return count_klines(conn, symbol)


def runs(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, source, outcome, rows_written, range_start, range_end, error "
            "FROM ingestion_runs ORDER BY id"
        ).fetchall()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich fits tables to $COLUMNS; a wide one keeps each summary row on one line."""
    monkeypatch.setenv("COLUMNS", "160")


@pytest.fixture(scope="module")
def refusing_database_url(postgres: LocalPostgres) -> Iterator[str]:
    """One database shared by the tests of refused files: they write no candle, so a fresh
    database each (half a second apiece on a busy machine) buys nothing."""
    name = f"archive_refusals_{os.getpid()}"
    yield postgres.create_database(name, template=TEMPLATE_DB)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Every layout Binance publishes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "start", "unit", "header", "compress", "period"),
    [
        ("spot µs, no header, monthly zip", JAN_2025, "us", False, True, "monthly"),
        ("spot ms, no header, monthly zip", JAN_2024, "ms", False, True, "monthly"),
        ("spot µs, no header, daily csv", JAN_2025, "us", False, False, "daily"),
        ("spot ms, no header, daily zip", JAN_2024, "ms", False, True, "daily"),
        ("futures ms, header, monthly zip", JAN_2025, "ms", True, True, "monthly"),
        ("futures ms, header, daily csv", JAN_2024, "ms", True, False, "daily"),
    ],
)
def test_each_layout_imports_every_row_at_the_right_time(
    database_url: str,
    tmp_path: Path,
    variant: str,
    start: datetime,
    unit: str,
    header: bool,
    compress: bool,
    period: str,
) -> None:
    # Given a 90-minute archive in this layout
    rows = klines(start, 90, unit=unit)
    path = write_archive(
        tmp_path, "BTCUSDT", start.date(), rows, period=period, header=header, compress=compress
    )

    # When it is imported
    result = import_archive(database_url, path)

    # Then every row is stored at its minute, with its close time, whatever the unit
    assert (result.rows, result.rows_new, result.rows_skipped) == (90, 90, 0), variant
    assert (result.header, result.timestamps) == (header, unit)
    kept = stored(database_url, "BTCUSDT")
    assert [r[0] for r in kept] == [start + i * MINUTE for i in range(90)]
    assert kept[0][1] == start + MINUTE - (
        timedelta(microseconds=1) if unit == "us" else timedelta(milliseconds=1)
    )
    assert (result.start, result.end) == (start, start + 89 * MINUTE)
    assert {r[-1] for r in kept} == {"archive"}


def test_csv_saved_with_windows_line_endings_imports(database_url: str, tmp_path: Path) -> None:
    # Given a futures CSV re-saved with CRLF line endings
    path = write_archive(
        tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 20), header=True, compress=False,
        checksum=False,
    )  # fmt: skip
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))

    # When it is imported
    result = import_archive(database_url, path)

    # Then every row is stored with its values intact (no stray carriage return)
    assert (result.rows_new, result.header) == (20, True)
    assert {row[11] for row in stored(database_url, "BTCUSDT")} == {"0"}


def test_prices_and_volumes_round_trip_exactly_as_written(
    database_url: str, tmp_path: Path
) -> None:
    # Given rows whose numbers have trailing zeros, tiny and large values
    rows = klines(JAN_2024, 3)
    rows[1][1:6] = ["0.00001230", "67234.12000000", "0.00000001", "1.10", "123456789.123456789"]
    rows[1][7], rows[1][9], rows[1][10] = "1234.50000000", "0.00000000", "98765432109876543210.5"
    path = write_archive(tmp_path, "SHIBUSDT", JAN_2024.date(), rows)

    # When it is imported
    import_archive(database_url, path)

    # Then the text read back is the text in the file
    second = stored(database_url, "SHIBUSDT")[1]
    assert second[2:8] == (
        "0.00001230", "67234.12000000", "0.00000001", "1.10", "123456789.123456789",
        "1234.50000000",
    )  # fmt: skip
    assert second[9:11] == ("0.00000000", "98765432109876543210.5")


def test_consecutive_files_across_the_microsecond_switch_join_without_a_gap(
    database_url: str, tmp_path: Path
) -> None:
    # Given December 2024 in milliseconds and January 2025 in microseconds (spot layouts)
    december = datetime(2024, 12, 31, 22, 0, tzinfo=UTC)
    write_archive(tmp_path, "BTCUSDT", date(2024, 12, 31), klines(december, 120), period="daily")
    write_archive(
        tmp_path, "BTCUSDT", date(2025, 1, 1), klines(JAN_2025, 60, unit="us"), period="daily"
    )

    # When both are imported
    results = import_archives(database_url, sorted(tmp_path.glob("*.zip")))

    # Then the minutes run on across midnight with no gap
    assert [r.timestamps for r in results] == ["ms", "us"]
    times = [r[0] for r in stored(database_url, "BTCUSDT")]
    assert times == [december + i * MINUTE for i in range(180)]
    with psycopg.connect(database_url) as conn:
        assert list_gaps(conn, "BTCUSDT") == []


def test_parallel_import_of_overlapping_files_stores_each_minute_once(
    database_url: str, tmp_path: Path
) -> None:
    # Given January as a monthly file and three of its days as daily files (same candles)
    month = klines(JAN_2024, 3 * 1440)
    paths = [write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), month)]
    for day in range(3):
        rows = month[day * 1440 : (day + 1) * 1440]
        first = date(2024, 1, day + 1)
        paths.append(write_archive(tmp_path, "BTCUSDT", first, rows, period="daily"))

    # When they are imported four at a time
    results = import_archives(database_url, paths, jobs=4)

    # Then every minute is stored once, the new rows add up, and results keep the input order
    assert [r.path for r in results] == paths
    assert [r.error for r in results] == [None] * 4
    assert sum(r.rows_new for r in results) == count(database_url, "BTCUSDT") == 3 * 1440


def test_parallel_import_of_the_same_minutes_in_opposite_orders_stores_each_once(
    database_url: str, tmp_path: Path
) -> None:
    # Given one day twice: a daily file in time order, and a monthly file holding the same
    # minutes newest first (two concurrent loads then wait on each other's rows)
    day = klines(JAN_2024, 1440)
    daily = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), day, period="daily")
    monthly = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), day[::-1])

    # When both load at once
    results = import_archives(database_url, [daily, monthly], jobs=2)

    # Then both succeed and the day is stored once
    assert [r.error for r in results] == [None, None]
    assert sum(r.rows_new for r in results) == count(database_url, "BTCUSDT") == 1440


# --- Checksums -----------------------------------------------------------------------------------


def test_matching_checksum_is_reported_ok(database_url: str, tmp_path: Path) -> None:
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 5), checksum=True)

    assert import_archive(database_url, path).checksum == "ok"


def test_absent_checksum_is_reported_absent_and_the_file_imported(
    database_url: str, tmp_path: Path
) -> None:
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 5), checksum=False)

    result = import_archive(database_url, path)

    assert (result.checksum, result.rows_new) == ("absent", 5)


def test_checksum_mismatch_writes_nothing(database_url: str, tmp_path: Path) -> None:
    # Given an archive whose bytes changed after its .CHECKSUM was written
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 5))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("BTCUSDT-1m-2024-01.csv", "tampered")

    # When it is imported
    with pytest.raises(ChecksumMismatchError, match=r"does not match BTCUSDT-1m-2024-01\.zip"):
        import_archive(database_url, path)

    # Then no candle is written, and the attempt is audited as a failed run
    assert count(database_url) == 0
    assert [row[:3] for row in runs(database_url)] == [("BTCUSDT", "archive", "failed")]


# --- Idempotence and overlap with REST -----------------------------------------------------------


def test_second_import_writes_nothing(database_url: str, tmp_path: Path) -> None:
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 200))
    import_archive(database_url, path)

    again = import_archive(database_url, path)

    assert (again.rows, again.rows_new, again.rows_skipped) == (200, 0, 200)
    assert count(database_url, "BTCUSDT") == 200


def test_rows_already_ingested_from_rest_are_kept_and_not_doubled(
    database_url: str, tmp_path: Path
) -> None:
    # Given minutes 10..19 already ingested from the REST API
    rows = klines(JAN_2024, 60)
    with psycopg.connect(database_url) as conn:
        insert_klines(
            conn, [parse_kline(row, "BTCUSDT", "rest") for row in rows[10:20]], market="binance"
        )

    # When the archive covering the hour is imported
    result = import_archive(database_url, write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), rows))

    # Then each minute is stored once, and the REST rows stay as they were
    assert (result.rows_new, result.rows_skipped) == (50, 10)
    kept = stored(database_url, "BTCUSDT")
    assert [r[0] for r in kept] == [JAN_2024 + i * MINUTE for i in range(60)]
    assert [r[-1] for r in kept[10:20]] == ["rest"] * 10
    assert {r[-1] for r in kept[:10] + kept[20:]} == {"archive"}


# --- Truncated, malformed and mislabelled files --------------------------------------------------


def test_truncated_zip_is_refused_and_writes_nothing(database_url: str, tmp_path: Path) -> None:
    # Given a zip cut off half-way through the download (no checksum to catch it first)
    path = write_archive(
        tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 500), checksum=False
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(
        TruncatedArchiveError, match=r"not a readable zip archive.*download it again"
    ):
        import_archive(database_url, path)

    assert count(database_url) == 0


def test_zip_with_damaged_data_is_refused_and_writes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    # Given a zip whose compressed bytes were damaged in the middle (directory intact)
    path = write_archive(
        tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 3000), checksum=False
    )
    data = bytearray(path.read_bytes())
    for offset in range(200, 400):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(TruncatedArchiveError, match="damaged"):
        import_archive(database_url, path)

    assert count(database_url) == 0


def test_csv_cut_off_mid_row_is_refused_naming_the_line(database_url: str, tmp_path: Path) -> None:
    # Given a CSV whose last row was cut off in the middle of a number
    path = write_archive(
        tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 10), compress=False, checksum=False
    )
    text = path.read_text()
    path.write_text(text[: text.rindex(",1234.567")] + ",1234.5")

    with pytest.raises(TruncatedArchiveError, match="line 10 stops mid-row") as caught:
        import_archive(database_url, path)

    assert "download it again" in str(caught.value)
    assert count(database_url) == 0


def test_zipped_csv_cut_off_mid_row_is_refused(database_url: str, tmp_path: Path) -> None:
    text = "\n".join(",".join(map(str, row)) for row in klines(JAN_2024, 10))
    path = tmp_path / "BTCUSDT-1m-2024-01.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1m-2024-01.csv", text[: len(text) - 30])

    with pytest.raises(TruncatedArchiveError, match="line 10 stops mid-row"):
        import_archive(database_url, path)

    assert count(database_url) == 0


def test_hourly_candles_in_a_1m_file_are_refused_as_mislabelled(
    database_url: str, tmp_path: Path
) -> None:
    # Given hourly candles in a file named ETHUSDT-1m-...
    rows = klines(JAN_2024, 24, span=timedelta(hours=1))
    path = write_archive(tmp_path, "ETHUSDT", JAN_2024.date(), rows)

    with pytest.raises(MislabelledArchiveError) as caught:
        import_archive(database_url, path)

    message = str(caught.value)
    assert message.startswith(
        "ETHUSDT-1m-2024-01.zip: line 1 (open time 2024-01-01T00:00:00+00:00)"
    )
    assert "so these are 1h klines, but the file name says 1m" in message
    assert count(database_url) == 0


def test_one_second_candles_in_a_1m_file_are_refused_as_mislabelled(
    database_url: str, tmp_path: Path
) -> None:
    rows = klines(JAN_2024, 120, span=timedelta(seconds=1))
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), rows)

    with pytest.raises(MislabelledArchiveError, match=r"^BTCUSDT-1m-2024-01\.zip: line 2 .* 1s"):
        import_archive(database_url, path)

    assert count(database_url) == 0


def test_rows_from_another_month_are_refused_as_mislabelled(
    database_url: str, tmp_path: Path
) -> None:
    # Given January's rows in a file named for February
    path = write_archive(tmp_path, "BTCUSDT", date(2024, 2, 1), klines(JAN_2024, 10))

    with pytest.raises(MislabelledArchiveError, match="outside 2024-02, the month the file name"):
        import_archive(database_url, path)

    assert count(database_url) == 0


def test_a_day_file_holding_the_next_day_is_refused_naming_the_first_stray_line(
    database_url: str, tmp_path: Path
) -> None:
    # Given a daily file whose last 2 rows belong to the next day
    start = datetime(2024, 1, 1, 23, 0, tzinfo=UTC)
    path = write_archive(tmp_path, "BTCUSDT", start.date(), klines(start, 62), period="daily")

    with pytest.raises(MislabelledArchiveError) as caught:
        import_archive(database_url, path)

    assert "line 61 (open time 2024-01-02T00:00:00+00:00) lies outside 2024-01-01" in str(
        caught.value
    )
    assert count(database_url) == 0


def test_zip_holding_another_files_csv_is_refused(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "ETHUSDT-1m-2024-01.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("BTCUSDT-1m-2024-01.csv", "")

    with pytest.raises(MislabelledArchiveError, match="named ETHUSDT-1m-2024-01 but holds BTC"):
        import_archive(database_url, path)


def test_zip_with_two_members_is_refused(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("BTCUSDT-1m-2024-01.csv", "")
        archive.writestr("extra.csv", "")

    with pytest.raises(MalformedArchiveError, match="exactly one CSV"):
        import_archive(database_url, path)


def test_unknown_file_name_is_refused_before_touching_the_database(tmp_path: Path) -> None:
    path = tmp_path / "bitcoin-prices.csv"
    path.write_text("1,2,3\n")

    with pytest.raises(ArchiveNameError, match=re.escape("expected SYMBOL-1m-YYYY-MM.zip")):
        import_archive("postgresql://nobody@127.0.0.1:1/never-reached", path)


@pytest.mark.parametrize(
    ("line", "change", "expected"),
    [
        (3, {2: "abc"}, r"line 3 \(column high\): invalid input syntax for type numeric"),
        (4, {8: "12.5"}, r"line 4 \(column trades\): invalid input syntax for type bigint"),
        (5, {2: "1.00"}, r"line 5 \(open time 2024-01-01T00:03:00\+00:00\): prices out of order"),
        (6, {3: "999.0"}, r"line 6 .*: prices out of order \(open 104.01000000, high 104.05"),
        (7, {0: "1704067230000"}, r"line 7 .*: the open time is not on a minute"),
        (8, {6: "{open}"}, r"line 8 .*: close time \d+ does not end the 1m candle opened at"),
        (9, {8: "-1"}, r"line 9 .*: negative trade count -1"),
        (10, {5: "NaN"}, r"line 10 .*: a price or volume is NaN or infinite"),
        (11, {1: "Infinity"}, r"line 11 .*: a price or volume is NaN or infinite"),
        (12, {2: "NaN"}, r"line 12 .*: a price or volume is NaN or infinite"),
        (2, {11: "0,extra"}, r"line 2: extra data after last expected column"),
        (3, {4: ""}, r"line 3 \(column close\): invalid input syntax for type numeric: \"\""),
        (4, {5: "\\N"}, r"line 4: volume is \\N \(no value\)"),
        (5, {4: '"1.0"'}, r"line 5 \(column close\): invalid input syntax for type numeric"),
    ],
)
def test_bad_row_fails_the_file_naming_line_and_problem(
    refusing_database_url: str, tmp_path: Path, line: int, change: dict[int, str], expected: str
) -> None:
    database_url = refusing_database_url
    # Given a futures file (header on line 1) with one bad row
    rows = klines(JAN_2024, 14)
    for index, value in change.items():
        rows[line - 2][index] = value.format(open=rows[line - 2][0])
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), rows, header=True)

    # When it is imported
    with pytest.raises(MalformedArchiveError, match=expected):
        import_archive(database_url, path)

    # Then nothing from the file is stored
    assert count(database_url) == 0


def test_a_minute_repeated_in_the_file_is_refused(database_url: str, tmp_path: Path) -> None:
    rows = klines(JAN_2024, 5)
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), [*rows, rows[2]])

    with pytest.raises(
        MalformedArchiveError, match=r"2024-01-01T00:02:00\+00:00 .* more than once"
    ):
        import_archive(database_url, path)

    assert count(database_url) == 0


def test_empty_file_is_refused(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01.csv"
    path.write_text("")

    with pytest.raises(MalformedArchiveError, match="holds no kline rows"):
        import_archive(database_url, path)


# --- Audit and gaps ------------------------------------------------------------------------------


def test_missing_minutes_are_recorded_as_gaps(database_url: str, tmp_path: Path) -> None:
    # Given an hour with minutes 10, 11, 12 and 40 missing
    rows = klines(JAN_2024, 60, skip=[10, 11, 12, 40])
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), rows)

    # When it is imported
    result = import_archive(database_url, path)

    # Then both holes are recorded with their first and last missing minute
    with psycopg.connect(database_url) as conn:
        gaps = list_gaps(conn, "BTCUSDT")
    assert [(g.start, g.end, g.minutes) for g in gaps] == [
        (JAN_2024 + 10 * MINUTE, JAN_2024 + 12 * MINUTE, 3),
        (JAN_2024 + 40 * MINUTE, JAN_2024 + 40 * MINUTE, 1),
    ]
    assert (result.gaps, result.gap_minutes) == (2, 4)


def test_minutes_missing_at_the_start_of_a_file_show_against_the_previous_file(
    database_url: str, tmp_path: Path
) -> None:
    # Given December's last hour stored, and a January file that starts at 00:05
    december = datetime(2023, 12, 31, 23, 0, tzinfo=UTC)
    import_archive(
        database_url, write_archive(tmp_path, "BTCUSDT", december.date(), klines(december, 60))
    )
    january = write_archive(
        tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 30, skip=range(5))
    )

    # When January is imported
    import_archive(database_url, january)

    # Then the first five minutes of the year are a gap
    with psycopg.connect(database_url) as conn:
        gaps = list_gaps(conn, "BTCUSDT")
    assert [(g.start, g.minutes) for g in gaps] == [(JAN_2024, 5)]


def test_each_file_is_audited_as_an_archive_run(database_url: str, tmp_path: Path) -> None:
    good = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 30))
    bad_rows = klines(JAN_2024, 30)
    bad_rows[3][2] = "0.5"
    bad = write_archive(tmp_path / "bad", "ETHUSDT", JAN_2024.date(), bad_rows)

    results = import_archives(database_url, [good, bad])

    assert [type(r.error) for r in results] == [type(None), MalformedArchiveError]
    audit = runs(database_url)
    assert [row[:4] for row in audit] == [
        ("BTCUSDT", "archive", "success", 30),
        ("ETHUSDT", "archive", "failed", 0),
    ]
    assert audit[0][4:6] == (JAN_2024, JAN_2024 + 29 * MINUTE)
    assert "line 4" in audit[1][6]


def test_database_gone_mid_file_keeps_finished_files_and_writes_nothing_of_the_current_one(
    database_url: str, tmp_path: Path
) -> None:
    # Given two files, and a database connection that is killed while the second is read
    first = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 30))
    second = write_archive(tmp_path, "ETHUSDT", JAN_2024.date(), klines(JAN_2024, 30))
    seen: list[int] = []

    def kill_the_import_connection(size: int) -> None:
        seen.append(size)
        if len(seen) == 2:
            with psycopg.connect(database_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

    # When they are imported
    with pytest.raises(psycopg.OperationalError):
        import_archives(database_url, [first, second], on_bytes=kill_the_import_connection)

    # Then the first file is stored, nothing of the second, and its run is audited as failed
    assert (count(database_url, "BTCUSDT"), count(database_url, "ETHUSDT")) == (30, 0)
    assert [row[:3] for row in runs(database_url)] == [
        ("BTCUSDT", "archive", "success"),
        ("ETHUSDT", "archive", "failed"),
    ]


def test_stop_on_error_raises_the_first_failure(database_url: str, tmp_path: Path) -> None:
    bad_rows = klines(JAN_2024, 3)
    bad_rows[0][1] = "x"
    bad = write_archive(tmp_path, "ETHUSDT", JAN_2024.date(), bad_rows)
    good = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 3))

    with pytest.raises(MalformedArchiveError, match="line 1"):
        import_archives(database_url, [bad, good], stop_on_error=True)

    assert count(database_url) == 0


# --- The command line ----------------------------------------------------------------------------


def _summary_row(output: str, filename: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.split()[:1] == [filename])


def test_cli_imports_a_directory_and_prints_the_summary(settings_env: str, tmp_path: Path) -> None:
    # Given a directory with a spot µs zip (checksum), and a futures csv without a checksum
    folder = tmp_path / "archives"
    write_archive(folder, "BTCUSDT", JAN_2025.date(), klines(JAN_2025, 120, unit="us"))
    write_archive(
        folder, "ETHUSDT", JAN_2024.date(), klines(JAN_2024, 60, skip=[7]), header=True,
        compress=False, checksum=False,
    )  # fmt: skip

    # When `pricebot import DIR` runs (database from PRICEBOT_DATABASE_URL)
    result = CliRunner().invoke(app, ["import", str(folder)])

    # Then both are imported and the summary shows file, symbol, rows, new, skipped, gaps, checksum
    assert result.exit_code == 0, result.output
    assert _summary_row(result.output, "BTCUSDT-1m-2025-01.zip") == [
        "BTCUSDT-1m-2025-01.zip", "BTCUSDT", "120", "120", "0", "0", "ok",
    ]  # fmt: skip
    assert _summary_row(result.output, "ETHUSDT-1m-2024-01.csv") == [
        "ETHUSDT-1m-2024-01.csv", "ETHUSDT", "59", "59", "0", "1", "(1", "min)", "absent",
    ]  # fmt: skip
    assert re.search(r"2 of 2 files\s+179\s+179\s+0\s+1", result.output)
    assert count(settings_env) == 179


def test_cli_second_import_reports_rows_skipped(database_url: str, tmp_path: Path) -> None:
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 45))
    args = ["import", str(path), "--database-url", database_url]
    CliRunner().invoke(app, args)

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert _summary_row(result.output, "BTCUSDT-1m-2024-01.zip")[2:5] == ["45", "0", "45"]


def test_cli_imports_good_files_and_fails_naming_the_bad_one(
    database_url: str, tmp_path: Path
) -> None:
    # Given one good file and one whose checksum does not match
    good = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 10))
    bad = write_archive(tmp_path, "ETHUSDT", JAN_2024.date(), klines(JAN_2024, 10))
    Path(f"{bad}.CHECKSUM").write_text(f"{'0' * 64}  {bad.name}\n")

    # When both are imported
    result = CliRunner().invoke(
        app, ["import", str(good), str(bad), "--database-url", database_url]
    )

    # Then the good one is stored, the bad one is named, and the exit code is 1
    assert result.exit_code == 1
    assert "failed: ETHUSDT-1m-2024-01.zip: SHA-256" in result.output
    assert "1 of 2 files not imported" in result.output
    assert _summary_row(result.output, "ETHUSDT-1m-2024-01.zip")[2:] == [
        "-", "-", "-", "-", "-", "bad-checksum",
    ]  # fmt: skip
    assert count(database_url, "BTCUSDT") == 10
    assert count(database_url, "ETHUSDT") == 0


def test_cli_refuses_an_unknown_file_name_before_importing_anything(
    database_url: str, tmp_path: Path
) -> None:
    good = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 10))
    odd = tmp_path / "BTCUSDT-1h-2024-01.zip"
    odd.write_bytes(b"")

    result = CliRunner().invoke(
        app, ["import", str(good), str(odd), "--database-url", database_url]
    )

    assert result.exit_code == 1
    assert "BTCUSDT-1h-2024-01.zip: interval 1h is not supported" in result.output
    assert count(database_url) == 0


def test_cli_says_when_a_directory_holds_no_archives(database_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["import", str(tmp_path), "--database-url", database_url])

    assert result.exit_code == 1
    assert "no .zip or .csv archives found" in result.output


def test_cli_unreachable_database_says_what_to_check(tmp_path: Path) -> None:
    path = write_archive(tmp_path, "BTCUSDT", JAN_2024.date(), klines(JAN_2024, 10))
    url = "postgresql://nobody@127.0.0.1:1/nowhere"

    result = CliRunner().invoke(app, ["import", str(path), "--database-url", url])

    assert result.exit_code == 1
    assert "Cannot connect to postgresql://nobody@127.0.0.1:1/nowhere" in result.output
