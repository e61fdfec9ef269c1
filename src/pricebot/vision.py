"""Binance Vision: the archive files that cover a range, fetched resumably and verified.

Binance publishes spot 1-minute klines at ``{base}/data/spot/monthly/klines/{SYMBOL}/1m/
{SYMBOL}-1m-{YYYY-MM}.zip`` (a month, a few days after it ends) and ``.../daily/...
{SYMBOL}-1m-{YYYY-MM-DD}.zip`` (a day, the day after), each with a ``.CHECKSUM`` beside it
(``<sha256>  <file name>``). :func:`plan_files` chooses monthly files for the whole months of a
range and daily files for its partial months and the current month; :class:`VisionClient`
downloads each with its checksum into a directory, where

- a file already there whose checksum verifies is kept, and not asked for again;
- a partial download (``<file>.part``) is resumed with an HTTP Range request, or redone when
  the server will not resume it; a download cut off midway is resumed the same way, up to
  ``max_retries`` times;
- a file whose checksum does not match after a resumed download is downloaded once more from
  scratch, and if it still does not match it is deleted: nothing unverified stays;
- a file the server does not have (404) is reported missing: a month before the symbol was
  listed, or a day not published yet. When last month's file is missing (early in a month,
  Binance has not published it yet), its days are fetched instead.

The files are then imported by :mod:`pricebot.archive`, the one import path. The market is
``binance-vision`` unless the server names another in the ``X-Pricebot-Market`` header (the
simulated exchange does), see :mod:`pricebot.provenance`.

No numpy, no pandas.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx

from pricebot.archive import checksum_path, verify_checksum
from pricebot.errors import ArchiveError, ChecksumMismatchError, VisionDownloadError
from pricebot.provenance import BINANCE_VISION, MARKET_HEADER, check_market

log = logging.getLogger(__name__)

DEFAULT_URL = "https://data.binance.vision"
Period = Literal["monthly", "daily"]
Status = Literal["kept", "downloaded", "resumed", "missing", "bad-checksum"]


@dataclass(frozen=True)
class VisionFile:
    """One archive Binance Vision publishes (spot, 1-minute klines)."""

    symbol: str
    period: Period
    first_day: date

    @property
    def name(self) -> str:
        stamp = f"{self.first_day:%Y-%m}" + (
            f"-{self.first_day:%d}" if self.period == "daily" else ""
        )
        return f"{self.symbol}-1m-{stamp}.zip"

    @property
    def url_path(self) -> str:
        return f"data/spot/{self.period}/klines/{self.symbol}/1m/{self.name}"

    @property
    def last_day(self) -> date:
        if self.period == "daily":
            return self.first_day
        days = calendar.monthrange(self.first_day.year, self.first_day.month)[1]
        return self.first_day.replace(day=days)

    def days(self) -> list[VisionFile]:
        """The daily files of a monthly one."""
        count = (self.last_day - self.first_day).days + 1
        return [
            VisionFile(self.symbol, "daily", self.first_day + timedelta(days=i))
            for i in range(count)
        ]


@dataclass
class Download:
    """What fetching one file did."""

    file: VisionFile
    status: Status
    path: Path | None = None  # the verified file (None when missing or refused)
    market: str = BINANCE_VISION
    bytes_received: int = 0
    problem: str | None = None


def plan_files(
    symbol: str, since: date, until: date, today: date | None = None
) -> list[VisionFile]:
    """The files covering the days ``since`` to ``until`` (both included), oldest first.

    Whole months that ended before the current month come as monthly files; the days of
    partial months and of the current month (up to yesterday: today is not over) as daily
    files. ``today`` is the current UTC date by default.
    """
    today = today or datetime.now(UTC).date()
    until = min(until, today - timedelta(days=1))
    files: list[VisionFile] = []
    month = since.replace(day=1)
    while month <= until:
        whole = VisionFile(symbol, "monthly", month)
        current = (month.year, month.month) == (today.year, today.month)
        if since <= whole.first_day and whole.last_day <= until and not current:
            files.append(whole)
        else:
            files += [d for d in whole.days() if since <= d.first_day <= until]
        month = whole.last_day + timedelta(days=1)
    return files


class VisionClient:
    """Downloads Binance Vision files into ``directory`` (one sub-directory per symbol).

    ``sleep`` is every pause between attempts (injectable, so tests do not wait).
    """

    def __init__(
        self,
        base_url: str,
        directory: Path,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.directory = Path(directory)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": "pricebot (+https://github.com/pricebot)"},
            follow_redirects=True,
        )
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VisionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def destination(self, file: VisionFile) -> Path:
        return self.directory / file.symbol / file.name

    def fetch(
        self, file: VisionFile, *, check_market: Callable[[str], None] | None = None
    ) -> Download:
        """Bring one file here, verified; see the module docstring for what is kept or redone.

        ``check_market`` is called with the market the server names, before the archive itself
        is downloaded (and with the recorded market of a file kept from an earlier run); it
        refuses by raising.
        """
        path = self.destination(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        checksum = checksum_path(path)
        market = _stored_market(path)
        if path.exists() and checksum.exists() and _verifies(path):
            market = market or BINANCE_VISION
            if check_market is not None:
                check_market(market)
            return Download(file, "kept", path, market=market)
        answer = self._get(f"{file.url_path}.CHECKSUM")
        if answer is None:
            return Download(file, "missing", problem=f"{self.base_url} has no {file.name}")
        text, market = answer
        if check_market is not None:
            check_market(market)
        checksum.write_text(text)
        part = path.with_name(path.name + ".part")
        resumed, received = self._download(file, part)
        part.replace(path)
        if not _verifies(path) and resumed:
            # A resumed download can join two versions of a file: fetch it whole once more.
            path.unlink()
            part.unlink(missing_ok=True)
            resumed, more = self._download(file, part)
            received += more
            part.replace(path)
        try:
            verify_checksum(path)
        except ChecksumMismatchError as exc:
            path.unlink()
            return Download(file, "bad-checksum", market=market, bytes_received=received,
                            problem=exc.problem)  # fmt: skip
        _store_market(path, market)
        return Download(file, "resumed" if resumed else "downloaded", path, market, received)

    # --- the machinery --------------------------------------------------------------------

    def _get(self, url_path: str) -> tuple[str, str] | None:
        """A small file's text and the market the server named; None when it has none."""
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.get(url_path)
                self.requests += 1
            except httpx.TransportError as exc:
                self._pause(attempt, f"GET {url_path}: {exc}")
                continue
            if response.status_code == 404:
                return None
            if response.status_code >= 500:
                self._pause(attempt, f"GET {url_path}: HTTP {response.status_code}")
                continue
            self._refuse(response, url_path)
            return response.text, _market(response)
        raise self._exhausted(url_path)

    def _download(self, file: VisionFile, part: Path) -> tuple[bool, int]:
        """Fill ``part`` with the whole file, resuming what is there; returns (resumed, bytes
        received)."""
        resumed, received = False, 0
        for attempt in range(self.max_retries + 1):
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with self._http.stream("GET", file.url_path, headers=headers) as response:
                    self.requests += 1
                    if response.status_code == 416:  # nothing left to send: start over
                        part.unlink()
                        continue
                    if response.status_code >= 500:
                        self._pause(attempt, f"GET {file.url_path}: HTTP {response.status_code}")
                        continue
                    if response.status_code == 404:
                        raise VisionDownloadError(
                            f"{self.base_url} lists {file.name}.CHECKSUM but not {file.name}; "
                            "run the backfill again later"
                        )
                    self._refuse(response, file.url_path)
                    appending = response.status_code == 206 and have > 0
                    resumed = resumed or appending
                    with part.open("ab" if appending else "wb") as out:
                        # As it arrives (no buffering to a size): a cut keeps all that came.
                        for chunk in response.iter_bytes():
                            out.write(chunk)
                            received += len(chunk)
                    return resumed, received
            except httpx.TransportError as exc:
                # Cut off midway: what arrived is kept in the .part file, and resumed from.
                self._pause(attempt, f"GET {file.url_path} broke off: {exc}")
        raise self._exhausted(file.url_path)

    def _refuse(self, response: httpx.Response, url_path: str) -> None:
        if response.status_code >= 400:
            raise VisionDownloadError(
                f"GET {self.base_url}/{url_path} refused with HTTP {response.status_code}; check "
                "the symbol and PRICEBOT_VISION_URL"
            )

    def _pause(self, attempt: int, what: str) -> None:
        if attempt < self.max_retries:
            wait = self.backoff_base * 2**attempt
            log.warning("%s; retrying in %.1fs", what, wait)
            self._sleep(wait)
        self._last = what

    def _exhausted(self, url_path: str) -> VisionDownloadError:
        return VisionDownloadError(
            f"{self.base_url}/{url_path} failed {self.max_retries + 1} times (last: "
            f"{getattr(self, '_last', 'unknown')}); what arrived is kept and the next backfill "
            "resumes it: run it again"
        )


def _market(response: httpx.Response) -> str:
    value = response.headers.get(MARKET_HEADER)
    return check_market(value.strip()) if value else BINANCE_VISION


def _verifies(path: Path) -> bool:
    try:
        return verify_checksum(path) == "ok"
    except ArchiveError:
        return False


def _market_path(path: Path) -> Path:
    return path.with_name(path.name + ".market")


def _store_market(path: Path, market: str) -> None:
    """Remember beside a verified file where it came from, for a later run that keeps it."""
    _market_path(path).write_text(market + "\n")


def _stored_market(path: Path) -> str | None:
    try:
        return check_market(_market_path(path).read_text().strip())
    except (OSError, ArchiveError, ValueError):
        return None
