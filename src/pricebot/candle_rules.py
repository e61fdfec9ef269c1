"""The rules every stored candle obeys, in one place, for every writer.

A 1-minute kline is twelve fields: open time, open, high, low, close, volume, close time, quote
volume, trades, taker buy base volume, taker buy quote volume, ignore. A candle is stored only if

========================  ====================================================================
``fields``                it has the twelve fields, times and trades as integers, the other
                          eight as decimal numbers
``known-time``            it opens on or after 2010-01-01 (no exchange candle is older; a
                          smaller stamp is a unit error or garbage)
``not-in-the-future``     it opens no later than now plus :data:`CLOCK_SKEW` (clocks differ a
                          little, never by more)
``on-a-minute``           it opens on a whole minute
``one-minute``            it closes after it opens and before the next minute opens
``closed``                it closed before now plus :data:`CLOCK_SKEW` (a candle still open is
                          never stored: ingestion skips it, an archive holding one is refused)
``in-range``              its eight numbers are finite, below :data:`MAX_NUMBER` and have at
                          most :data:`MAX_DECIMAL_PLACES` decimal places, trades are below
                          :data:`MAX_TRADES` and the ignore field is short (anything beyond
                          is an overflow or garbage, not a market)
``non-negative``          volumes and the trade count are not negative
``positive-prices``       open, high, low and close are above zero
``ordered-prices``        low <= open <= high and low <= close <= high
========================  ====================================================================

checked in that order, so a refusal names the first rule a row breaks. Three forms of the same
rules, kept side by side here:

- :func:`check_kline` for rows in Python (REST pages, the simulated exchange's archive replay),
- :func:`staged_rule_sql` for archive rows staged in PostgreSQL (one SQL pass over a file),
- the CHECK constraints of migration 0003 on ``klines`` itself, which no writer can bypass
  (named ``klines_<rule>``, with ``-`` as ``_``; a migration is frozen, so they are written out
  there, and the component tests check the three agree).

Nothing here imports numpy or pandas: the ingest Lambda uses this module and must start fast.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from pricebot.errors import MalformedKlineError

MINUTE_MS = 60_000
CLOCK_SKEW = timedelta(minutes=2)
CLOCK_SKEW_MS = int(CLOCK_SKEW / timedelta(milliseconds=1))
EARLIEST_OPEN = datetime(2010, 1, 1, tzinfo=UTC)
EARLIEST_OPEN_MS = int(EARLIEST_OPEN.timestamp() * 1000)
MAX_NUMBER = Decimal("1e20")
MAX_DECIMAL_PLACES = 20
MAX_TRADES = 10**12
MAX_IGNORE_CHARS = 40
#: Binance's archives switched spot timestamps to microseconds on 2025-01-01; a stamp at or
#: above this (year 2286 in milliseconds) is microseconds.
MICROSECOND_THRESHOLD = 10**13
FIELDS = 12
#: The longest line a well-formed archive row can take (twelve fields at their widest, commas,
#: CRLF), which bounds what a file for a period can hold.
MAX_LINE_BYTES = 512

RULES = (
    "fields",
    "known-time",
    "not-in-the-future",
    "on-a-minute",
    "one-minute",
    "closed",
    "in-range",
    "non-negative",
    "positive-prices",
    "ordered-prices",
)
_SUMMARY = {
    "fields": "a kline has 12 fields: times and trades integers, the other eight decimals",
    "known-time": f"a candle opens on or after {EARLIEST_OPEN:%Y-%m-%d}",
    "not-in-the-future": "a candle opens no later than now plus "
    f"{CLOCK_SKEW.total_seconds() / 60:g} minutes of clock skew",
    "on-a-minute": "a 1m candle opens on a whole minute",
    "one-minute": "a 1m candle closes after it opens and before the next minute",
    "closed": "only closed candles are stored (closed before now plus the clock skew)",
    "in-range": f"prices and volumes are finite, below {MAX_NUMBER:.0E} with at most "
    f"{MAX_DECIMAL_PLACES} decimal places, and trades below {MAX_TRADES:.0E}",
    "non-negative": "volumes and trade counts are not negative",
    "positive-prices": "open, high, low and close are above zero",
    "ordered-prices": "low <= open <= high and low <= close <= high",
}
DECIMAL_FIELDS = (
    (1, "open"), (2, "high"), (3, "low"), (4, "close"), (5, "volume"), (7, "quote_volume"),
    (9, "taker_buy_base_volume"), (10, "taker_buy_quote_volume"),
)  # fmt: skip
PRICE_NAMES = ("open", "high", "low", "close")
VOLUME_NAMES = ("volume", "quote_volume", "taker_buy_base_volume", "taker_buy_quote_volume")

# Strings as Binance sends them ("42283.58000000") match this and are within range and not
# negative by their shape; anything else (exponents, signs, padding, JSON numbers) takes the
# slower path through Decimal, which is the authority and gives the same verdict.
_PLAIN = r"\d{1,20}(?:\.\d{1,20})?"
_PLAINS = re.compile(rf"{_PLAIN}(?:\t{_PLAIN}){{7}}")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_NOT_FINITE = re.compile(r"-?(?:nan|inf|infinity)", re.IGNORECASE)


def summary(rule: str) -> str:
    """What ``rule`` asks of a candle, for messages."""
    return _SUMMARY[rule]


def now_ms() -> int:
    return int(time.time() * 1000)


def check_kline(
    row: Sequence[object], symbol: str, *, now: int | None = None
) -> tuple[datetime, datetime, tuple[str, ...], int, str]:
    """Check one 12-field kline against every rule, in order; return what it holds.

    Returns ``(open_time, close_time, decimals, trades, ignore)`` with the eight decimals as
    the text to store (``numeric`` then keeps exactly the digits sent). ``now`` is the clock
    (epoch ms) the time rules compare with, by default ours. Raises
    :class:`MalformedKlineError` whose ``rule`` names the first rule broken and whose message
    says which field and why.
    """
    now = now_ms() if now is None else now
    if not isinstance(row, list | tuple) or len(row) != FIELDS:
        count = len(row) if isinstance(row, list | tuple) else "not a list of"
        raise _broken("fields", f"{symbol}: {count} fields in {row!r:.200}")
    open_raw, close_raw, trades = _integer(row[0]), _integer(row[6]), _integer(row[8])
    if open_raw is None or close_raw is None or trades is None:
        raise _broken(
            "fields", f"{symbol}: open time, close time or trades not integers in {row!r:.200}"
        )
    # Compared in the row's own unit (ms, or µs in newer archives): integers, never a float.
    per_ms = 1000 if open_raw >= MICROSECOND_THRESHOLD else 1
    if open_raw < EARLIEST_OPEN_MS * per_ms:
        raise _broken(
            "known-time", f"{symbol}: open time {open_raw} is before {EARLIEST_OPEN:%Y-%m-%d}"
        )
    if open_raw > (now + CLOCK_SKEW_MS) * per_ms:
        raise _broken(
            "not-in-the-future",
            f"{symbol}: open time {stamp_text(open_raw, per_ms)} ({open_raw}) is in the future "
            f"(now is {stamp_text(now, 1)})",
        )
    open_time = _datetime(open_raw, per_ms)
    opened = _Iso(open_time)  # formatted only if a message needs it: this runs for every candle
    if open_raw % (MINUTE_MS * per_ms):
        raise _broken("on-a-minute", f"{symbol}: open time {opened} is not on a minute")
    if not open_raw < close_raw < open_raw + MINUTE_MS * per_ms:
        raise _broken(
            "one-minute",
            f"{symbol}: close time {stamp_text(close_raw, per_ms)} does not end the 1m "
            f"candle opened at {opened} (is this a 1m kline?)",
        )
    if close_raw >= (now + CLOCK_SKEW_MS) * per_ms:
        closes = stamp_text(close_raw, per_ms)
        raise _broken(
            "closed", f"{symbol} {opened}: the candle closes at {closes}, after now "
            f"({stamp_text(now, 1)})",
        )  # fmt: skip
    decimals = (row[1], row[2], row[3], row[4], row[5], row[7], row[9], row[10])
    try:
        plain = _PLAINS.fullmatch("\t".join(decimals)) is not None  # type: ignore[arg-type]
    except TypeError:
        plain = False
    ignore = row[11] if isinstance(row[11], str) else str(row[11])
    if plain and 0 <= trades < MAX_TRADES and len(ignore) <= MAX_IGNORE_CHARS:
        texts: tuple[str, ...] = decimals  # type: ignore[assignment]
        o, h, lo, c = Decimal(texts[0]), Decimal(texts[1]), Decimal(texts[2]), Decimal(texts[3])
    else:
        texts, values = _checked_decimals(row, symbol, opened, trades, ignore)
        o, h, lo, c = values[:4]
    if not (o > 0 and h > 0 and lo > 0 and c > 0):
        raise _broken(
            "positive-prices",
            f"{symbol} {opened}: a price is not above zero (open {texts[0]}, high {texts[1]}, "
            f"low {texts[2]}, close {texts[3]})",
        )
    if not (lo <= o <= h and lo <= c <= h):
        raise _broken(
            "ordered-prices",
            f"{symbol} {opened}: prices out of order (open {texts[0]}, high {texts[1]}, "
            f"low {texts[2]}, close {texts[3]})",
        )
    return open_time, _datetime(close_raw, per_ms), texts, trades, ignore


class _Iso:
    """A moment that becomes its ISO 8601 text when put in a message."""

    __slots__ = ("moment",)

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __str__(self) -> str:
        return self.moment.isoformat()

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _checked_decimals(
    row: Sequence[object], symbol: str, opened: object, trades: int, ignore: str
) -> tuple[tuple[str, ...], list[Decimal]]:
    """The slow path: each field on its own, rule by rule, naming the field at fault."""
    texts, values = [], []
    for index, name in DECIMAL_FIELDS:
        raw = row[index]
        text = raw.strip() if isinstance(raw, str) else str(raw)
        if isinstance(raw, bool) or not (_NUMBER.fullmatch(text) or _NOT_FINITE.fullmatch(text)):
            raise _broken("fields", f"{symbol} {opened}: {name}={raw!r:.60} is not a number")
        texts.append(text)
        values.append(Decimal(text))
    for (_, name), text, value in zip(DECIMAL_FIELDS, texts, values, strict=True):
        if not value.is_finite():
            raise _broken("in-range", f"{symbol} {opened}: {name}={text!r} is not finite")
        if value.copy_abs() >= MAX_NUMBER or _places(value) > MAX_DECIMAL_PLACES:
            raise _broken("in-range", f"{symbol} {opened}: {name}={text[:40]!r} is out of range")
    if trades >= MAX_TRADES:
        raise _broken("in-range", f"{symbol} {opened}: trades={trades} is out of range")
    if len(ignore) > MAX_IGNORE_CHARS:
        raise _broken("in-range", f"{symbol} {opened}: the ignore field is {len(ignore)} "
                      "characters long")  # fmt: skip
    negative = [
        f"{name}={text}"
        for (_, name), text, value in zip(DECIMAL_FIELDS[4:], texts[4:], values[4:], strict=True)
        if value < 0
    ]
    negative += [f"trades={trades}"] if trades < 0 else []  # fmt: skip
    if negative:
        raise _broken("non-negative", f"{symbol} {opened}: negative {', '.join(negative)}")
    return tuple(texts), values


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _integer(value: object) -> int | None:
    """An integer as Binance sends it (a JSON integer, or its digits); None otherwise."""
    if type(value) is int:
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 40:
        return int(value)
    return None


def _broken(rule: str, problem: str) -> MalformedKlineError:
    return MalformedKlineError(f"{problem} (rule {rule}: {summary(rule)})", rule=rule)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _datetime(raw: int, per_ms: int) -> datetime:
    if per_ms == 1:  # exact: a millisecond count divided by 1000 rounds to its microsecond
        return datetime.fromtimestamp(raw / 1000, UTC)  # tz positional: measurably faster
    return _EPOCH + timedelta(microseconds=raw)


def stamp_text(raw: int, per_ms: int = 1) -> str:
    """A stamp for messages; one beyond datetime's range is shown as the number."""
    try:
        return _datetime(raw, per_ms).isoformat()
    except OverflowError:
        return f"{raw} (beyond year 9999)"


# --- the same rules on archive rows staged in PostgreSQL ---------------------------------------

#: The staging table's columns in file order (the archive import copies CSV into it).
STAGED_COLUMNS = (
    ("open_time", "bigint"),
    ("open", "numeric"),
    ("high", "numeric"),
    ("low", "numeric"),
    ("close", "numeric"),
    ("volume", "numeric"),
    ("close_time", "bigint"),
    ("quote_volume", "numeric"),
    ("trades", "bigint"),
    ("taker_buy_base_volume", "numeric"),
    ("taker_buy_quote_volume", "numeric"),
    ("ignore", "text"),
)
_NUMERIC = [name for name, kind in STAGED_COLUMNS if kind == "numeric"]
# Each rule on one staged row, in the file's own unit, comparing only with bounds computed in
# Python (%(...)s): nothing multiplies a staged value, so no stamp can overflow a bigint here.
# ``fields`` is COPY's own business (it refuses a missing field, an extra one, a non-number).
_STAGED = (
    ("known-time", "open_time >= %(earliest)s"),
    ("not-in-the-future", "open_time <= %(latest)s"),
    ("on-a-minute", "open_time %% %(minute)s = 0"),
    ("one-minute", "close_time > open_time AND close_time < open_time + %(minute)s"),
    ("closed", "close_time < %(latest)s"),
    (
        "in-range",
        " AND ".join(
            [f"{c} < {MAX_NUMBER:.0E} AND scale({c}) <= {MAX_DECIMAL_PLACES}" for c in _NUMERIC]
            + [f"trades < {MAX_TRADES}", f"length(ignore) <= {MAX_IGNORE_CHARS}"]
        ),
    ),
    ("non-negative", " AND ".join(f"{c} >= 0" for c in (*VOLUME_NAMES, "trades"))),
    ("positive-prices", "open > 0 AND high > 0 AND low > 0 AND close > 0"),
    ("ordered-prices", "low <= open AND low <= close AND open <= high AND close <= high"),
)


def staged_rule_sql(extra: Sequence[tuple[str, str]] = ()) -> str:
    """An SQL expression naming the first rule a staged row breaks (NULL when it breaks none).

    ``extra`` rules (name, condition) are checked first (the archive's own label: the period
    its name gives). A CASE evaluates its branches in order, so each rule may rely on the ones
    before it (``one-minute`` adds to an open time known to be in range). NULL, as NaN's scale
    is, counts as broken. Parameters: ``earliest`` and ``latest`` (open-time bounds) and
    ``minute``, in the file's unit; see :func:`staged_params`.
    """
    branches = " ".join(
        f"WHEN NOT coalesce({condition}, false) THEN '{name}'"
        for name, condition in (*extra, *_STAGED)
    )
    return f"CASE {branches} END"


def staged_params(microseconds: bool, now: int | None = None) -> dict[str, int]:
    """The bounds :func:`staged_rule_sql` compares with, in the file's unit."""
    per_ms = 1000 if microseconds else 1
    now = now_ms() if now is None else now
    return {
        "earliest": EARLIEST_OPEN_MS * per_ms,
        "latest": (now + CLOCK_SKEW_MS) * per_ms,
        "minute": MINUTE_MS * per_ms,
    }


def explain_staged(rule: str, row: dict[str, object], microseconds: bool) -> str:
    """What is wrong with a staged row that breaks ``rule`` (values as PostgreSQL holds them)."""
    per_ms = 1000 if microseconds else 1
    opened = stamp_text(int(row["open_time"]), per_ms)  # type: ignore[call-overload]
    if rule in ("known-time", "not-in-the-future"):
        problem = f"open time {opened} ({row['open_time']})" + (
            " is in the future" if rule == "not-in-the-future" else " is too early"
        )
    elif rule == "on-a-minute":
        problem = f"the open time is not on a minute (raw value {row['open_time']})"
    elif rule == "one-minute":
        problem = (
            f"close time {row['close_time']} does not end the 1m candle opened at "
            f"{row['open_time']} (it must come after the open and before the next minute)"
        )
    elif rule == "closed":
        problem = f"the candle opened at {opened} had not closed by now"
    elif rule == "in-range":
        bad = [f"{c}={str(row[c])[:40]}" for c in (*_NUMERIC, "trades") if not _in_range(row[c])]
        if len(str(row["ignore"])) > MAX_IGNORE_CHARS:
            bad.append(f"ignore of {len(str(row['ignore']))} characters")
        finite = all(Decimal(str(row[c])).is_finite() for c in _NUMERIC)
        problem = ("" if finite else "a price or volume is NaN or infinite: ") + ", ".join(bad)
        problem += " out of range" if finite else ""
    elif rule == "non-negative":
        bad = [f"{c}={row[c]}" for c in VOLUME_NAMES if Decimal(str(row[c])) < 0]
        bad += [f"trade count {row['trades']}"] if int(row["trades"]) < 0 else []  # type: ignore[call-overload]
        problem = "negative " + ", ".join(bad)
    else:
        problem = f"open {row['open']}, high {row['high']}, low {row['low']}, close {row['close']}"
        problem = (
            (
                "a price is not above zero ("
                if rule == "positive-prices"
                else "prices out of order ("
            )
            + problem
            + ")"
        )
    return f"{problem} (rule {rule}: {summary(rule)})"


def _in_range(value: object) -> bool:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return False
    if not number.is_finite():
        return False
    if isinstance(value, int):
        return value < MAX_TRADES
    return number.copy_abs() < MAX_NUMBER and _places(number) <= MAX_DECIMAL_PLACES
