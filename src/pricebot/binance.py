"""A small Binance REST client for market data: klines, server time, symbol checks.

It is built for catch-up ingestion, where the failure modes matter more than the happy path:
it keeps one keep-alive connection, retries what is worth retrying (5xx, timeouts, dropped
connections, and 429/418 after exactly the Retry-After the exchange asks for), slows down before
the per-minute request weight runs out, and turns everything else into one of a few typed
errors whose message says what to do.

No numpy, no pandas: the ingest Lambda imports this and must start fast.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from pricebot.errors import (
    BinanceAPIError,
    MalformedPayloadError,
    RateLimitBanError,
    RestrictedLocationError,
    RetriesExhaustedError,
    SymbolNotListedError,
    UnknownMarketError,
)
from pricebot.provenance import MARKET_HEADER, market_from_header
from pricebot.settings import Settings, get_settings

log = logging.getLogger(__name__)

MAX_KLINES_PER_REQUEST = 1000
MIRROR_URL = "https://data-api.binance.vision"
# Request weights as Binance counts them (GET /api/v3/klines is 2 whatever the limit).
WEIGHT = {"/api/v3/klines": 2, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20}
WEIGHT_HEADER = "x-mbx-used-weight-1m"
UNKNOWN_SYMBOL_CODE = -1121

Sleep = Callable[[float], None]


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the wait the exchange asked for, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class BinanceClient:
    """Market-data calls against ``base_url`` with retries, rate-limit care and typed errors.

    ``sleep`` is every pause the client takes (retry waits and weight throttling), injectable so
    that tests of a 60-second Retry-After need not wait 60 seconds. ``transport`` is httpx's and
    is only for the rare caller that needs one; the tests talk real HTTP.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 300.0,
        weight_limit: int = 6000,
        weight_headroom: float = 0.8,
        sleep: Sleep = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.weight_budget = weight_limit * weight_headroom
        self._sleep = sleep
        self._backoff = wait_exponential_jitter(
            multiplier=backoff_base, max=backoff_cap, jitter=backoff_base
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": "pricebot (+https://github.com/pricebot)"},
            limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=30),
            transport=transport,
        )
        # Counters the ingestion reports (per symbol as differences).
        self.requests = 0
        self.retries = 0
        self.throttle_pauses = 0
        self.throttled_seconds = 0.0
        # The market the server announced (pricebot.provenance), known after the first answer.
        self.market: str | None = None
        # The last weight the exchange reported, and the server's clock when it did.
        self.used_weight: int | None = None
        self._weight_server_time: float | None = None
        self._weight_seen_at: float = 0.0

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, sleep: Sleep = time.sleep
    ) -> BinanceClient:
        s = settings or get_settings()
        return cls(
            s.binance_url,
            timeout=s.http_timeout_seconds,
            max_retries=s.max_retries,
            backoff_base=s.backoff_base_seconds,
            backoff_cap=s.backoff_cap_seconds,
            max_retry_after=s.max_retry_after_seconds,
            weight_limit=s.weight_limit,
            weight_headroom=s.weight_headroom,
            sleep=sleep,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BinanceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the calls ------------------------------------------------------------------------

    def server_time_ms(self) -> int:
        """The exchange's clock in epoch milliseconds."""
        payload = self._get("/api/v3/time")
        try:
            return int(payload["serverTime"])
        except (TypeError, KeyError, ValueError) as exc:
            raise MalformedPayloadError(
                f"{self.base_url}/api/v3/time answered {str(payload)[:200]!r} without an integer "
                "serverTime: is PRICEBOT_BINANCE_URL a Binance REST endpoint?"
            ) from exc

    def check_symbols(self, symbols: Sequence[str]) -> None:
        """Raise :class:`SymbolNotListedError` naming every symbol the exchange does not list."""
        wanted = list(dict.fromkeys(symbols))
        try:
            payload = self._get(
                "/api/v3/exchangeInfo", {"symbols": json.dumps(wanted, separators=(",", ":"))}
            )
        except SymbolNotListedError:
            # Binance rejects the whole list without saying which; ask one by one to name them.
            bad = [s for s in wanted if not self._symbol_listed(s)]
            raise SymbolNotListedError(bad or wanted, self.base_url) from None
        listed = self._listed(payload)
        bad = [s for s in wanted if s not in listed]
        if bad:
            raise SymbolNotListedError(bad, self.base_url)

    def _symbol_listed(self, symbol: str) -> bool:
        try:
            return symbol in self._listed(self._get("/api/v3/exchangeInfo", {"symbol": symbol}))
        except SymbolNotListedError:
            return False

    def _listed(self, payload: Any) -> set[str]:
        try:
            return {str(entry["symbol"]) for entry in payload["symbols"]}
        except (TypeError, KeyError) as exc:
            raise MalformedPayloadError(
                f"{self.base_url}/api/v3/exchangeInfo answered without a 'symbols' list of "
                f"objects with a 'symbol' field: {str(payload)[:200]!r}"
            ) from exc

    def klines(
        self,
        symbol: str,
        start_ms: int,
        end_ms: int | None = None,
        limit: int = MAX_KLINES_PER_REQUEST,
    ) -> list[list[Any]]:
        """Up to ``limit`` 1-minute klines opening at or after ``start_ms`` (and <= ``end_ms``).

        Rows come back as Binance sends them; validating each field is the caller's business
        (``pricebot.klines.parse_kline``), but a body that is not a list of rows is refused here.
        """
        params: dict[str, Any] = {
            "symbol": symbol,
            "interval": "1m",
            "startTime": start_ms,
            "limit": limit,
        }
        if end_ms is not None:
            params["endTime"] = end_ms
        payload = self._get("/api/v3/klines", params, symbol=symbol)
        if not isinstance(payload, list) or not all(isinstance(row, list) for row in payload):
            raise MalformedPayloadError(
                f"{symbol}: klines from {_iso(start_ms)} came back as {str(payload)[:200]!r}, "
                "not a list of 12-field rows; nothing from this page was written."
            )
        return payload

    # --- the machinery --------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None, symbol: str = "") -> Any:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self._sleep,
            before_sleep=self._count_retry,
        )
        try:
            return retrying(self._send, path, params, symbol)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise RetriesExhaustedError(
                f"GET {self.base_url}{path} failed {exc.last_attempt.attempt_number} times "
                f"(last: {last}). The exchange is down, overloaded or rate limiting us: wait "
                "and run again (ingestion resumes where it stopped), or raise "
                "PRICEBOT_MAX_RETRIES / PRICEBOT_HTTP_TIMEOUT_SECONDS."
            ) from last

    def _wait(self, state: RetryCallState) -> float:
        """Exactly the Retry-After the exchange asked for, else capped exponential with jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)

    def _count_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        log.warning("retry %d in %.2fs: %s", state.attempt_number, pause, exc)

    def _send(self, path: str, params: dict[str, Any] | None, symbol: str) -> Any:
        self._respect_weight(WEIGHT.get(path, 1))
        try:
            response = self._http.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"no answer from {self.base_url}{path} within {self.timeout:g}s "
                f"({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach {self.base_url}{path}: {exc}") from exc
        finally:
            self.requests += 1
        self._note_weight(response)
        self._note_market(response)
        status = response.status_code
        if status in (418, 429):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            what = "banned (418)" if status == 418 else "rate limited (429)"
            if retry_after is not None and retry_after > self.max_retry_after:
                raise RateLimitBanError(
                    f"{self.base_url} has {what} this client for {retry_after:.0f}s, longer than "
                    f"PRICEBOT_MAX_RETRY_AFTER_SECONDS={self.max_retry_after:g}: run again "
                    "after that, and lower the request rate (PRICEBOT_WEIGHT_HEADROOM)."
                )
            raise TransientError(f"{what}, Retry-After {retry_after}", retry_after=retry_after)
        if status >= 500:
            raise TransientError(f"HTTP {status} from {self.base_url}{path}")
        if status == 451:
            raise RestrictedLocationError(
                f"{self.base_url} refuses requests from this location (HTTP 451: "
                f"{_message(response)}). Binance's public market-data mirror serves the same "
                f"klines: set PRICEBOT_BINANCE_URL={MIRROR_URL}"
            )
        if status >= 400:
            code, msg = _error_body(response)
            if code == UNKNOWN_SYMBOL_CODE:
                raise SymbolNotListedError([symbol] if symbol else [], self.base_url)
            raise BinanceAPIError(
                f"GET {self.base_url}{path} refused with HTTP {status} (code {code}: {msg}); "
                "check the request parameters and PRICEBOT_BINANCE_URL.",
                status,
                code,
            )
        try:
            return response.json()
        except ValueError as exc:
            where = f"{symbol}: " if symbol else ""
            raise MalformedPayloadError(
                f"{where}GET {self.base_url}{path} with {params} answered with a body that is "
                f"not JSON ({response.text[:120]!r}); nothing from it was written."
            ) from exc

    def _note_market(self, response: httpx.Response) -> None:
        value = response.headers.get(MARKET_HEADER)
        try:
            self.market = market_from_header(value)
        except UnknownMarketError:
            raise MalformedPayloadError(
                f"{self.base_url} announced the market {value!r} in its {MARKET_HEADER} header, "
                "which pricebot does not know: is PRICEBOT_BINANCE_URL a Binance endpoint or a "
                "simulated exchange of this version of pricebot?"
            ) from None

    def _note_weight(self, response: httpx.Response) -> None:
        value = response.headers.get(WEIGHT_HEADER)
        if value is None:
            return
        try:
            self.used_weight = int(value)
        except ValueError:
            return
        self._weight_seen_at = time.monotonic()
        self._weight_server_time = _server_time(response)

    def _respect_weight(self, cost: int) -> None:
        """Pause until the exchange's weight window rolls over when the next call would cross
        the budget (``weight_limit * weight_headroom``); Binance counts per clock minute."""
        if self.used_weight is None or self.used_weight + cost <= self.weight_budget:
            return
        pause = 60.0
        if self._weight_server_time is not None:
            server_now = self._weight_server_time + (time.monotonic() - self._weight_seen_at)
            # The Date header has whole seconds (floored), so this lands just past the boundary.
            pause = min(60.0, 60.0 - server_now % 60.0 + 0.05)
        log.info("request weight %s of budget %.0f used: pausing %.2fs",
                 self.used_weight, self.weight_budget, pause)  # fmt: skip
        self.throttle_pauses += 1
        self.throttled_seconds += pause
        self._sleep(pause)
        self.used_weight = None  # a new window; the next answer tells us where we stand


def _server_time(response: httpx.Response) -> float:
    """The server's clock from the Date header, ours when there is none."""
    value = response.headers.get("date")
    if value:
        try:
            return parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()


def _error_body(response: httpx.Response) -> tuple[int | None, str]:
    try:
        body = response.json()
        return int(body.get("code")), str(body.get("msg", ""))
    except (ValueError, TypeError, AttributeError):
        return None, response.text[:200]


def _message(response: httpx.Response) -> str:
    code, msg = _error_body(response)
    return msg or f"code {code}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()
