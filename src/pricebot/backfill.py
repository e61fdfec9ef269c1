"""Backfill: a symbol's history from Binance Vision archives into the database.

For each symbol: plan the files covering the range (:func:`pricebot.vision.plan_files`), fetch
each (kept when already here and verified, resumed when cut off, see :mod:`pricebot.vision`),
then import the verified ones through :mod:`pricebot.archive`, the one import path (one
transaction per file, audited, gaps recorded, nothing of a bad file written). Running it again
downloads nothing that is here and verified, and imports nothing that is stored.

The market of the files is checked against what the symbol holds as soon as the server has
named it (the checksum's answer), before the archive is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pricebot.archive import ImportResult, import_archives
from pricebot.db import connect
from pricebot.provenance import check_compatible
from pricebot.vision import Download, VisionClient, plan_files


@dataclass
class BackfillResult:
    """What one symbol's backfill did: each file fetched, each imported."""

    symbol: str
    downloads: list[Download] = field(default_factory=list)
    imports: list[ImportResult] = field(default_factory=list)

    @property
    def missing(self) -> list[Download]:
        return [d for d in self.downloads if d.status == "missing"]

    @property
    def refused(self) -> list[Download]:
        return [d for d in self.downloads if d.status == "bad-checksum"]

    @property
    def failed_imports(self) -> list[ImportResult]:
        return [r for r in self.imports if r.error is not None]

    @property
    def rows_new(self) -> int:
        return sum(r.rows_new for r in self.imports if r.error is None)


def backfill(
    url: str,
    client: VisionClient,
    symbols: Sequence[str],
    since: date,
    until: date,
    *,
    today: date | None = None,
    jobs: int = 1,
    on_download: Callable[[Download], None] | None = None,
    on_import: Callable[[ImportResult], None] | None = None,
) -> list[BackfillResult]:
    """Download and import ``symbols`` from ``since`` to ``until`` (days, both included).

    ``url`` is the database (imports run on ``jobs`` connections, as ``pricebot import`` does).
    Raises :class:`pricebot.errors.MixedMarketsError` before downloading a symbol's archives
    when they come from another class of market than its stored candles.
    """
    today = today or datetime.now(UTC).date()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    results = []
    for symbol in dict.fromkeys(s.upper() for s in symbols):
        result = BackfillResult(symbol)
        checked: set[str] = set()

        def check(market: str, symbol: str = symbol, checked: set[str] = checked) -> None:
            if market not in checked:  # once per market and symbol: one query
                with connect(url) as conn:
                    check_compatible(conn, symbol, market)
                checked.add(market)

        pending = plan_files(symbol, since, until, today)
        while pending:
            file = pending.pop(0)
            download = client.fetch(file, check_market=check)
            if (
                download.status == "missing"
                and file.period == "monthly"
                and (file.first_day == last_month)
            ):
                # Binance publishes a month a few days into the next: its days are out already.
                pending[:0] = file.days()
                continue
            result.downloads.append(download)
            if on_download is not None:
                on_download(download)
        verified = [d for d in result.downloads if d.path is not None]
        for market in dict.fromkeys(d.market for d in verified):
            paths = [d.path for d in verified if d.market == market]
            result.imports += import_archives(url, paths, market=market, jobs=jobs,
                                              on_result=on_import)  # fmt: skip
        results.append(result)
    return results
