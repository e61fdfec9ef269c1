"""A simulated Binance spot REST API over real HTTP, for tests, the offline demo and benchmarks.

It answers ``/api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo`` (a subset) and
``/api/v3/klines`` (interval ``1m``) with Binance's semantics and error shapes, from either the
seeded synthetic process of :mod:`pricebot_exchange.synthetic` or replayed Binance Vision archives.

Faults are switched on and off at runtime through the running exchange's ``.config``: random
5xx answers, added latency, malformed rows, request-weight accounting with 429 / 418 and
``Retry-After``, a restricted location (451), and outages (minute ranges with no candles). Their
randomness comes from a RNG seeded from ``config.seed`` so a test sees the same faults every run.

Weight is counted per wall-clock minute, as Binance does, with one simplification: a 429's
``Retry-After`` is ``retry_after_seconds`` and the used weight is cleared when it expires (rather
than at the end of the minute), so a well-behaved client waits seconds, not up to a minute, in
tests. A client that sends again before ``Retry-After`` has passed is banned with 418 and a
longer ``Retry-After``, as Binance does.

The klines path is cheap on purpose (the ingestion benchmark wants 50+ pages of 1,000 candles a
second): closed candles are formatted once per symbol and day into one JSON blob with row
offsets, so serving a page is a slice and a join.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import re
import threading
import time
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pricebot.provenance import MARKET_HEADER, simulated
from pricebot_exchange.synthetic import (
    DAY_MS,
    FIRST_DAY,
    LAST_DAY,
    MINUTE_MS,
    MINUTES_PER_DAY,
    DayBlock,
    MarketMode,
    day_rows,
    market_for,
    partial_row,
)

KLINES_WEIGHT = 2
SYNTHETIC_START = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=FIRST_DAY + 1)
SYNTHETIC_END = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=LAST_DAY - 1)
WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20}
DEFAULT_LIMIT, MAX_LIMIT = 500, 1000
BINANCE_INTERVALS = {
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
    "1M",
}  # fmt: skip
RESTRICTED_MESSAGE = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error."
)
_SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


class ExchangeConfig(BaseModel):
    """Everything the simulated exchange does; mutable while it runs (faults on and off)."""

    model_config = ConfigDict(validate_assignment=True)

    seed: int = 7
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT", "ADAUSDT"])
    history_days: float = Field(30, gt=0)
    now: datetime | None = Field(None, description="Frozen clock; None follows the wall clock.")
    market: MarketMode = "market"
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered 5xx.")
    weight_limit: int | None = Field(None, gt=0, description="Request weight allowed per minute.")
    retry_after_seconds: int = Field(1, ge=1)
    malformed_rate: float = Field(0.0, ge=0, le=1, description="Share of pages with a bad row.")
    latency_ms: float = Field(0.0, ge=0)
    restricted: bool = Field(False, description="Answer everything with 451.")
    announce_market: bool = Field(
        True,
        description="Name the market in an X-Pricebot-Market header (pricebot.provenance); off, "
        "the exchange passes for Binance itself (for testing how clients label what they get).",
    )
    missing: list[tuple[datetime, datetime]] = Field(
        default_factory=list, description="[start, end) ranges with no candles (outages)."
    )
    archives: list[Path] = Field(
        default_factory=list,
        description="Binance Vision files (or directories) to replay instead of the synthetic "
        "market: all their candles up to `now` are served; history_days and symbols do not apply.",
    )

    @field_validator("now")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(
                "now must carry a time zone, e.g. 2026-03-01T12:00:00Z or datetime(..., tzinfo=UTC)"
            )
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not _SYMBOL_RE.match(s)]
        if bad:
            raise ValueError(f"symbols must be upper-case Binance names like BTCUSDT, got {bad}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _within_the_synthetic_span(self) -> ExchangeConfig:
        if self.archives:
            return self
        now = self.now or datetime.now(UTC)
        if now - timedelta(days=self.history_days) < SYNTHETIC_START or now >= SYNTHETIC_END:
            raise ValueError(
                f"the synthetic market covers {SYNTHETIC_START:%Y-%m-%d}..{SYNTHETIC_END:%Y-%m-%d};"
                f" now={now.isoformat()} with history_days={self.history_days:g} reaches "
                "outside it"
            )
        return self

    @field_validator("missing")
    @classmethod
    def _ordered(cls, value: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
        for start, end in value:
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError("missing ranges must be timezone-aware datetimes")
            if end <= start:
                raise ValueError(f"missing range {start.isoformat()}..{end.isoformat()} is empty")
        return value


class AnsweredError(Exception):
    """An error answer in Binance's shape: HTTP status and ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


@dataclass
class ExchangeStats:
    """Requests served, by path and status (thread-safe enough: counters under one lock)."""

    counts: Counter = field(default_factory=Counter)
    candles: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, path: str, status: int, candles: int = 0) -> None:
        with self._lock:
            self.counts[(path, status)] += 1
            self.candles += candles

    def requests(self, path: str | None = None, status: int | None = None) -> int:
        """How many requests matched ``path`` and ``status`` (None matches any)."""
        with self._lock:
            return sum(
                n
                for (p, s), n in self.counts.items()
                if (path is None or p == path) and (status is None or s == status)
            )

    def by_status(self) -> dict[int, int]:
        with self._lock:
            out: Counter = Counter()
            for (_, status), n in self.counts.items():
                out[status] += n
            return dict(out)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.candles = 0


# --- candle sources -------------------------------------------------------------------------


def _now_ms(config: ExchangeConfig) -> int:
    moment = config.now.timestamp() if config.now is not None else time.time()
    return int(moment * 1000)


def _missing_minutes(config: ExchangeConfig) -> list[tuple[int, int]]:
    """The outages as [first, last) minute indices, sorted."""
    out = []
    for start, end in config.missing:
        first = -(-int(start.timestamp() * 1000) // MINUTE_MS)
        last = -(-int(end.timestamp() * 1000) // MINUTE_MS)
        if last > first:
            out.append((first, last))
    return sorted(out)


def _segments(lo: int, hi: int, holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Minutes lo..hi-1 minus the holes, as contiguous [a, b) ranges."""
    out, cursor = [], lo
    for a, b in holes:
        if b <= cursor or a >= hi:
            continue
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < hi:
        out.append((cursor, hi))
    return out


def _take(segments: list[tuple[int, int]], limit: int, newest: bool) -> list[tuple[int, int]]:
    """The first (or last) ``limit`` minutes of ``segments``."""
    out, left = [], limit
    for a, b in reversed(segments) if newest else segments:
        if left <= 0:
            break
        n = min(b - a, left)
        out.append((b - n, b) if newest else (a, a + n))
        left -= n
    return out[::-1] if newest else out


class SyntheticSource:
    """Candles of the synthetic market, formatted once per (seed, symbol, mode, day) and cached.

    One instance per process (:data:`_SYNTHETIC`) so that every exchange and
    :func:`synthetic_klines` share the formatted days; the cache is bounded (least recently
    used first out, about 200 kB a day).
    """

    MAX_DAYS = 500

    def __init__(self) -> None:
        self.max_days = self.MAX_DAYS
        self._days: OrderedDict[tuple, tuple[bytes, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def symbols(self, config: ExchangeConfig) -> list[str]:
        return list(config.symbols)

    def _day(self, config: ExchangeConfig, symbol: str, day: int) -> tuple[bytes, np.ndarray]:
        key = (config.seed, symbol, config.market, day)
        with self._lock:
            hit = self._days.get(key)
            if hit is not None:
                self._days.move_to_end(key)
                return hit
        market = market_for(config.seed, symbol, config.market)
        blob, offsets = day_rows(market, _day_block(config.seed, symbol, config.market, day))
        with self._lock:
            self._days[key] = (blob, offsets)
            while len(self._days) > self.max_days:
                self._days.popitem(last=False)
        return blob, offsets

    def warm(self, config: ExchangeConfig) -> int:
        """Generate and format every served day now (as Binance has its history ready).

        Returns the number of days formatted. Benchmarks call this so that what they time is
        serving, not the synthetic market's generation.
        """
        current = _now_ms(config) // MINUTE_MS
        first = current - int(config.history_days * MINUTES_PER_DAY)
        days = range(first // MINUTES_PER_DAY, current // MINUTES_PER_DAY + 1)
        # Room for all of it (about 200 kB a day), or warming would evict what it just made.
        self.max_days = max(self.max_days, len(days) * len(config.symbols) + self.MAX_DAYS // 4)
        for symbol in config.symbols:
            for day in days:
                self._day(config, symbol, day)
        return len(days) * len(config.symbols)

    def select(
        self,
        config: ExchangeConfig,
        symbol: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int | None,
    ) -> tuple[list[bytes], int]:
        """JSON rows (without the comma) for a klines request, and how many there are."""
        now = _now_ms(config)
        current = now // MINUTE_MS
        first = current - int(config.history_days * MINUTES_PER_DAY)
        lo = first if start_ms is None else max(first, -(-start_ms // MINUTE_MS))
        hi = current + 1 if end_ms is None else min(current + 1, end_ms // MINUTE_MS + 1)
        if hi <= lo:
            return [], 0
        segments = _segments(lo, hi, _missing_minutes(config))
        if limit is not None:
            segments = _take(segments, limit, newest=start_ms is None)
        parts: list[bytes] = []
        count = 0
        for a, b in segments:
            closed_end = min(b, current)
            minute = a
            while minute < closed_end:
                day = minute // MINUTES_PER_DAY
                stop = min(closed_end, (day + 1) * MINUTES_PER_DAY)
                blob, offsets = self._day(config, symbol, day)
                i, j = minute - day * MINUTES_PER_DAY, stop - day * MINUTES_PER_DAY
                parts.append(blob[offsets[i] : offsets[j] - 1])
                count += stop - minute
                minute = stop
            if b > current >= a:  # the still-open candle, as Binance includes it
                block = _day_block(config.seed, symbol, config.market, current // MINUTES_PER_DAY)
                market = market_for(config.seed, symbol, config.market)
                elapsed = (now - current * MINUTE_MS) / MINUTE_MS
                row = partial_row(market, block, current, elapsed)
                parts.append(json.dumps(row, separators=(",", ":")).encode())
                count += 1
        return parts, count


@lru_cache(maxsize=64)  # the current day of each symbol, for its still-open candle
def _day_block(seed: int, symbol: str, mode: MarketMode, day: int) -> DayBlock:
    return market_for(seed, symbol, mode).day(day)


_SYNTHETIC = SyntheticSource()


@dataclass
class _Archive:
    minutes: np.ndarray  # sorted open minutes
    rows: list[bytes]


def _archive_lines(path: Path) -> list[list[str]]:
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith(".csv")]
                if len(names) != 1:
                    raise ValueError(f"{path}: expected one .csv inside, found {names}")
                text = archive.read(names[0]).decode()
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{path}: not a readable zip archive ({exc}); download it again"
            ) from None
    else:
        text = path.read_text()
    lines = list(csv.reader(io.StringIO(text)))
    if lines and lines[0] and not lines[0][0].strip().isdigit():
        lines = lines[1:]  # futures archives carry a header row
    return [line for line in lines if line]


def load_archive(paths: list[Path]) -> dict[str, _Archive]:
    """Candles of the archive files (or directories of them) by symbol, as served JSON rows.

    Names and layouts are read as :mod:`pricebot.archive` reads them for import; timestamps are
    served in milliseconds whatever the file holds. A bad name raises its ``ArchiveNameError``.
    """
    from pricebot.archive import find_archives, parse_archive_name

    by_symbol: dict[str, dict[int, bytes]] = {}
    for path in find_archives(paths):
        symbol = parse_archive_name(path).symbol
        rows = by_symbol.setdefault(symbol, {})
        for number, line in enumerate(_archive_lines(path), start=1):
            if len(line) < 11:
                raise ValueError(f"{path}: line {number} has {len(line)} fields, expected 12")
            try:
                open_ms, close_ms, trades = int(line[0]), int(line[6]), int(line[8])
            except ValueError:
                raise ValueError(
                    f"{path}: line {number}: open time, close time or trades is not an integer"
                ) from None
            if open_ms >= 10**13:  # spot archives switched to microseconds in 2025
                open_ms, close_ms = open_ms // 1000, close_ms // 1000
            o, h, lo, c, v, q, tb, tq = (line[i].strip() for i in (1, 2, 3, 4, 5, 7, 9, 10))
            rows[open_ms // MINUTE_MS] = (
                f'[{open_ms},"{o}","{h}","{lo}","{c}","{v}",{close_ms},"{q}",{trades},'
                f'"{tb}","{tq}","0"]'
            ).encode()
    out = {}
    for symbol, rows in by_symbol.items():
        minutes = np.array(sorted(rows), dtype=np.int64)
        out[symbol] = _Archive(minutes, [rows[m] for m in minutes.tolist()])
    return out


class ArchiveSource:
    """Candles replayed from Binance Vision files (loaded once per list of paths)."""

    def __init__(self) -> None:
        self._loaded: tuple[tuple[str, ...], dict[str, _Archive]] | None = None
        self._lock = threading.Lock()

    def _archives(self, config: ExchangeConfig) -> dict[str, _Archive]:
        key = tuple(str(p) for p in config.archives)
        with self._lock:
            if self._loaded is None or self._loaded[0] != key:
                self._loaded = (key, load_archive(list(config.archives)))
            return self._loaded[1]

    def symbols(self, config: ExchangeConfig) -> list[str]:
        return sorted(self._archives(config))

    def select(
        self,
        config: ExchangeConfig,
        symbol: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int | None,
    ) -> tuple[list[bytes], int]:
        archive = self._archives(config)[symbol]
        minutes = archive.minutes
        lo = 0 if start_ms is None else int(np.searchsorted(minutes, -(-start_ms // MINUTE_MS)))
        last = _now_ms(config) // MINUTE_MS if config.now is not None else None
        if end_ms is not None:
            last = end_ms // MINUTE_MS if last is None else min(last, end_ms // MINUTE_MS)
        hi = len(minutes) if last is None else int(np.searchsorted(minutes, last, side="right"))
        index = np.arange(lo, max(lo, hi))
        holes = _missing_minutes(config)
        if holes:
            keep = np.ones(len(index), dtype=bool)
            for a, b in holes:
                keep &= ~((minutes[index] >= a) & (minutes[index] < b))
            index = index[keep]
        if limit is not None:
            index = index[-limit:] if start_ms is None else index[:limit]
        rows = [archive.rows[i] for i in index.tolist()]
        return rows, len(rows)


# --- the HTTP app ---------------------------------------------------------------------------


class ExchangeState:
    """The exchange's mutable state: config, fault RNG, weight window, ban, stats."""

    def __init__(self, config: ExchangeConfig) -> None:
        self.config = config
        self.stats = ExchangeStats()
        self.rng = random.Random(config.seed)
        self.synthetic = _SYNTHETIC
        self.archive = ArchiveSource()
        self.window = int(time.time() // 60)  # Binance counts weight per wall-clock minute
        self.used_weight = 0
        self.banned_until = 0.0
        self.window_reset_at: float | None = None

    def market(self) -> str:
        """The market this exchange serves, as :mod:`pricebot.provenance` names it."""
        return simulated("archive-replay" if self.config.archives else self.config.market)

    def source(self) -> SyntheticSource | ArchiveSource:
        return self.archive if self.config.archives else self.synthetic

    def symbols(self) -> list[str]:
        return self.source().symbols(self.config)

    def charge(self, weight: int) -> None:
        """Count ``weight`` against the limit; raise 429 / 418 as Binance would."""
        now = time.time()
        if self.window_reset_at is not None and now >= self.window_reset_at:
            self.used_weight, self.window_reset_at = 0, None
        if int(now // 60) != self.window:
            self.used_weight, self.window = 0, int(now // 60)
        limit = self.config.weight_limit
        if limit is None:
            self.used_weight += weight
            return
        if now < self.banned_until:
            ban = self.config.retry_after_seconds * 4
            self.banned_until = now + ban
            self.window_reset_at = self.banned_until
            raise _RateLimitedError(418, ban, f"Way too many requests; IP banned for {ban} s.")
        if self.used_weight + weight > limit:
            retry = self.config.retry_after_seconds
            self.banned_until = now + retry
            self.window_reset_at = self.banned_until
            raise _RateLimitedError(
                429,
                retry,
                "Too much request weight used; current limit is "
                f"{limit} request weight per 1 MINUTE. Please use WebSocket Streams for live "
                "updates to avoid polling the API.",
            )
        self.used_weight += weight


class _RateLimitedError(AnsweredError):
    def __init__(self, status: int, retry_after: int, msg: str) -> None:
        super().__init__(status, -1003, msg)
        self.retry_after = retry_after


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status_code=status, headers=headers, media_type="application/json")


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise AnsweredError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        ) from None


def _symbol_param(request: Request, state: ExchangeState, required: bool = True) -> str | None:
    symbol = request.query_params.get("symbol")
    if not symbol:
        if not required:
            return None
        raise AnsweredError(
            400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        )
    if not _SYMBOL_RE.match(symbol):
        raise AnsweredError(
            400,
            -1100,
            "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
        )
    if symbol not in state.symbols():
        raise AnsweredError(400, -1121, "Invalid symbol.")
    return symbol


def _corrupt(rng: random.Random, body: bytes) -> bytes:
    """Spoil one row of the page as a broken upstream would: a bad price or a short row."""
    rows = json.loads(body)
    i = rng.randrange(len(rows))
    if rng.random() < 0.5:
        rows[i][rng.choice((1, 2, 3, 4))] = "abc"
    else:
        rows[i] = rows[i][:5]
    return json.dumps(rows, separators=(",", ":")).encode()


async def _klines(request: Request, state: ExchangeState) -> Response:
    config = state.config
    symbol = _symbol_param(request, state)
    interval = request.query_params.get("interval")
    if not interval:
        raise AnsweredError(
            400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
        )
    if interval not in BINANCE_INTERVALS:
        raise AnsweredError(400, -1120, "Invalid interval.")
    if interval != "1m":
        raise AnsweredError(
            400, -1120, "Invalid interval. (The simulated exchange serves 1m only.)"
        )
    start_ms, end_ms = _int_param(request, "startTime"), _int_param(request, "endTime")
    limit = _int_param(request, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise AnsweredError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise AnsweredError(400, -1023, "Start time is greater than end time.")
    rows, count = state.source().select(config, symbol, start_ms, end_ms, limit)
    body = b"[" + b",".join(rows) + b"]"
    if count and config.malformed_rate and state.rng.random() < config.malformed_rate:
        body = _corrupt(state.rng, body)
    response = Response(body, media_type="application/json")
    response.candles = count  # type: ignore[attr-defined]
    return response


async def _ping(request: Request, state: ExchangeState) -> Response:
    return _json({})


async def _time(request: Request, state: ExchangeState) -> Response:
    return _json({"serverTime": _now_ms(state.config)})


def _base_quote(symbol: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4], symbol[-4:]


async def _exchange_info(request: Request, state: ExchangeState) -> Response:
    from pricebot_exchange.synthetic import symbol_profile

    known = state.symbols()
    wanted = known
    if request.query_params.get("symbol"):
        wanted = [_symbol_param(request, state)]
    elif request.query_params.get("symbols"):
        try:
            wanted = json.loads(request.query_params["symbols"])
            assert isinstance(wanted, list)
        except (ValueError, AssertionError):
            raise AnsweredError(
                400,
                -1100,
                "Illegal characters found in parameter 'symbols'; legal range is "
                '\'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$\'.',
            ) from None
        if any(s not in known for s in wanted):
            raise AnsweredError(400, -1121, "Invalid symbol.")
    symbols = []
    for symbol in wanted:
        base, quote = _base_quote(symbol)
        profile = symbol_profile(symbol)
        tick = f"{10**-profile.price_decimals:.8f}"
        lot = f"{10**-profile.volume_decimals:.8f}"
        symbols.append(
            {
                "symbol": symbol,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "isSpotTradingAllowed": True,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": tick,
                        "maxPrice": "1000000.00000000",
                        "tickSize": tick,
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": lot,
                        "maxQty": "9000000.00000000",
                        "stepSize": lot,
                    },
                ],
            }
        )
    return _json(
        {
            "timezone": "UTC",
            "serverTime": _now_ms(state.config),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": state.config.weight_limit or 6000,
                }
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }
    )


_SERVER_ERRORS = (
    (500, b'{"code":-1000,"msg":"An unknown error occurred while processing the request."}'),
    (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    (503, b'{"code":-1008,"msg":"Service Unavailable. Please try again later."}'),
)


def _endpoint(path: str, handler: Any, weight: int) -> Route:
    """Wrap a handler with the exchange's behaviour: latency, 451, weight, 5xx, stats, headers."""

    async def endpoint(request: Request) -> Response:
        state: ExchangeState = request.app.state.exchange
        config = state.config
        candles = 0
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        try:
            if config.restricted:
                raise AnsweredError(451, 0, RESTRICTED_MESSAGE)
            state.charge(weight)
            if config.failure_rate and state.rng.random() < config.failure_rate:
                status, body = state.rng.choice(_SERVER_ERRORS)
                media = "text/html" if status == 502 else "application/json"
                response = Response(body, status_code=status, media_type=media)
            else:
                response = await handler(request, state)
                candles = getattr(response, "candles", 0)
        except _RateLimitedError as exc:
            response = _json({"code": exc.code, "msg": exc.msg}, exc.status)
            response.headers["Retry-After"] = str(exc.retry_after)
        except AnsweredError as exc:
            response = _json({"code": exc.code, "msg": exc.msg}, exc.status)
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(state.used_weight)
        if config.announce_market:
            # Clients record where their candles came from (pricebot.provenance): say it's us.
            response.headers[MARKET_HEADER] = state.market()
        state.stats.record(path, response.status_code, candles)
        return response

    return Route(path, endpoint, methods=["GET"])


def create_app(config: ExchangeConfig | None = None) -> Starlette:
    """The simulated exchange as an ASGI app (``app.state.exchange`` holds its state)."""
    app = Starlette(
        routes=[
            _endpoint("/api/v3/ping", _ping, WEIGHTS["/api/v3/ping"]),
            _endpoint("/api/v3/time", _time, WEIGHTS["/api/v3/time"]),
            _endpoint("/api/v3/exchangeInfo", _exchange_info, WEIGHTS["/api/v3/exchangeInfo"]),
            _endpoint("/api/v3/klines", _klines, KLINES_WEIGHT),
        ]
    )
    state = ExchangeState(config or ExchangeConfig())
    if state.config.archives:
        state.symbols()  # load (and validate) the archives now, not on the first request
    app.state.exchange = state
    return app


def synthetic_klines(config: ExchangeConfig, symbol: str, start_ms: int, end_ms: int) -> list[list]:
    """Exactly the rows the exchange serves for open times in [start_ms, end_ms] (no page limit).

    Candles come from the configured source (the synthetic market, or the archives when
    ``config.archives`` is set); outages are left out, faults are not applied.
    """
    state = ExchangeState(config)
    if symbol not in state.symbols():
        raise ValueError(f"unknown symbol {symbol!r}; the exchange serves {state.symbols()}")
    rows, _ = state.source().select(config, symbol, start_ms, end_ms, None)
    return json.loads(b"[" + b",".join(rows) + b"]")


@dataclass
class RunningExchange:
    """A simulated exchange serving on 127.0.0.1 in a background thread."""

    url: str
    port: int
    app: Starlette

    @property
    def state(self) -> ExchangeState:
        return self.app.state.exchange

    @property
    def config(self) -> ExchangeConfig:
        return self.state.config

    @property
    def stats(self) -> ExchangeStats:
        return self.state.stats


@contextmanager
def running_exchange(
    config: ExchangeConfig | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    prewarm: bool = False,
) -> Iterator[RunningExchange]:
    """Serve the exchange with uvicorn in a thread until the block ends (port 0: any free one).

    ``prewarm`` formats the whole synthetic history before serving (about 10 ms per symbol and
    day), so that timing a client measures serving rather than first-time generation.
    """
    import uvicorn

    app = create_app(config)
    state: ExchangeState = app.state.exchange
    if prewarm and not state.config.archives:
        state.synthetic.warm(state.config)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, name="simulated-exchange", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the simulated exchange could not start on {host}:{port}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the simulated exchange did not start within 30 s")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningExchange(url=f"http://{host}:{bound}", port=bound, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


__all__ = [
    "DAY_MS",
    "MINUTE_MS",
    "AnsweredError",
    "ExchangeConfig",
    "ExchangeStats",
    "RunningExchange",
    "create_app",
    "load_archive",
    "running_exchange",
    "synthetic_klines",
]
