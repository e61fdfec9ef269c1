"""Provenance: which market a symbol's candles came from, recorded as they are written.

A market is one of

- ``binance``: the Binance REST API (or any server that does not say otherwise),
- ``binance-vision``: Binance Vision archive files,
- ``simulated:<mode>``: the simulated exchange, which announces its mode in every answer
  (header :data:`MARKET_HEADER`); mode is one of :data:`SIMULATED_MODES`.

Binance REST and Binance Vision are the same real market seen through two doors, so they may
share a symbol. A simulated market shares a symbol with nothing else: prices from a synthetic
process next to real ones would give a model trained on one the look of having been trained on
the other, and a model trained on simulated prices must never be served on real ones. So the
first candles written for a symbol fix its *class* ("real" or the one simulated market), and
a write of another class is refused before anything of it is stored
(:class:`pricebot.errors.MixedMarketsError`).

Where it is kept: ``ingestion_runs.market`` says where each run's and each import's candles came
from; ``candle_markets`` holds, per symbol, the class and the markets its stored candles came
from. :func:`record_market` updates it in the same transaction as the candles it vouches for
(one statement, which also serialises concurrent writers of one symbol on its row), so the
record never claims less than what is stored. A CHECK constraint keeps a row from ever holding
two classes.
"""

from __future__ import annotations

import psycopg

from pricebot.errors import MixedMarketsError, UnknownMarketError

BINANCE = "binance"
BINANCE_VISION = "binance-vision"
SIMULATED_PREFIX = "simulated:"
#: The simulated exchange's modes: its synthetic markets, and replaying archive files.
SIMULATED_MODES = ("market", "random_walk", "swinging", "archive-replay")
REAL_MARKETS = (BINANCE, BINANCE_VISION)
MARKETS = (*REAL_MARKETS, *(SIMULATED_PREFIX + mode for mode in SIMULATED_MODES))
#: The response header in which the simulated exchange names its market.
MARKET_HEADER = "X-Pricebot-Market"

REAL = "real"
MIXED = "mixed"
#: The class of a symbol none of whose candles has a recorded market (rows written before
#: provenance was recorded by other means than ingest or import).
UNRECORDED = "unrecorded"

_DESCRIPTIONS = {
    BINANCE: "the Binance REST API",
    BINANCE_VISION: "Binance Vision archives",
}


def simulated(mode: str) -> str:
    """The market name of the simulated exchange in ``mode``."""
    return check_market(SIMULATED_PREFIX + mode)


def check_market(market: str) -> str:
    """``market`` if it is one pricebot knows, else :class:`UnknownMarketError` listing them."""
    if market not in MARKETS:
        raise UnknownMarketError(
            f"unknown market {market!r}: pricebot records candles as coming from one of "
            f"{', '.join(MARKETS)}"
        )
    return market


def is_simulated(market: str) -> bool:
    """Whether ``market`` is the simulated exchange (in any mode)."""
    return market.startswith(SIMULATED_PREFIX)


def market_class(markets: set[str] | frozenset[str]) -> str:
    """ "real", "simulated:<mode>" or "mixed" for the markets a symbol's candles came from.

    "unrecorded" for an empty set (candles stored without a recorded market, or none at all).
    """
    if not markets:
        return UNRECORDED
    classes = {_class_of(market) for market in markets}
    return classes.pop() if len(classes) == 1 else MIXED


def describe(market: str) -> str:
    """The market for a person: "simulated:swinging (the simulated exchange, swinging mode)"."""
    if is_simulated(market):
        mode = market.removeprefix(SIMULATED_PREFIX)
        return f"{market} (the simulated exchange, {mode.replace('-', ' ')} mode)"
    return f"{market} ({_DESCRIPTIONS.get(market, 'unknown')})"


def market_from_header(value: str | None) -> str:
    """The market a server announced in :data:`MARKET_HEADER`; Binance when it says nothing."""
    if value is None or not value.strip():
        return BINANCE
    return check_market(value.strip())


def symbol_markets(conn: psycopg.Connection, symbol: str) -> set[str]:
    """The markets the stored candles of ``symbol`` came from (empty when none is stored).

    Two index probes; the record of a symbol whose candles were all deleted does not count.
    """
    row = conn.execute(
        "SELECT markets FROM candle_markets WHERE symbol = %(symbol)s"
        " AND EXISTS (SELECT 1 FROM klines WHERE symbol = %(symbol)s)",
        {"symbol": symbol},
    ).fetchone()
    return set(row[0]) if row else set()


def check_compatible(conn: psycopg.Connection, symbol: str, market: str) -> None:
    """Refuse, before any work, candles from ``market`` for a symbol stored from another class.

    Writers call it once before a run or a file so that a refusal costs no request and no read;
    :func:`record_market` at each write is what guarantees it. A record left by candles that
    have since been deleted is dropped here, so deleting a symbol's candles frees it.
    """
    check_market(market)
    row = conn.execute(
        """WITH stale AS (
               DELETE FROM candle_markets m WHERE m.symbol = %(symbol)s
                  AND NOT EXISTS (SELECT 1 FROM klines k WHERE k.symbol = m.symbol)
               RETURNING m.symbol)
           SELECT class, markets FROM candle_markets
           WHERE symbol = %(symbol)s AND NOT EXISTS (SELECT 1 FROM stale)""",
        {"symbol": symbol},
    ).fetchone()
    if row is not None and row[0] != _class_of(market):
        raise mixed_markets_error(symbol, set(row[1]), market)


def record_market(conn: psycopg.Connection, symbol: str, market: str) -> None:
    """Record that candles of ``symbol`` from ``market`` are being written; raise if it mixes.

    Call it inside the transaction that writes the candles, after writing them: on a refusal
    the caller's transaction rolls back with them, and the row lock taken here is held only
    from then until the commit (concurrent imports of one symbol do not queue for the whole
    file). One round trip.
    """
    check_market(market)
    row = conn.execute(
        """INSERT INTO candle_markets AS m (symbol, class, markets)
           VALUES (%(symbol)s, %(class)s, ARRAY[%(market)s])
           ON CONFLICT (symbol) DO UPDATE
               SET markets = CASE WHEN %(market)s = ANY (m.markets) THEN m.markets
                                  ELSE m.markets || %(market)s END
               WHERE m.class = excluded.class
           RETURNING m.markets""",
        {"symbol": symbol, "class": _class_of(market), "market": market},
    ).fetchone()
    if row is None:  # the row exists with another class: it was locked, not updated
        stored = conn.execute(
            "SELECT markets FROM candle_markets WHERE symbol = %s", (symbol,)
        ).fetchone()
        raise mixed_markets_error(symbol, set(stored[0]) if stored else set(), market)


def mixed_markets_error(symbol: str, stored: set[str], market: str) -> MixedMarketsError:
    names = ", ".join(describe(m) for m in sorted(stored)) or "another market"
    return MixedMarketsError(
        f"{symbol}: the stored candles came from {names}; these come from {describe(market)}. "
        "One symbol's candles come from real markets or from one simulated market, never both, "
        "so that a model trained on simulated prices is never taken for (or served as) one "
        "trained on real prices. Nothing was written. Keep simulated candles in a database of "
        "their own (PRICEBOT_DATABASE_URL), or, to replace what is stored, delete the symbol's "
        f"candles first (DELETE FROM klines WHERE symbol = '{symbol}'; and its rows in "
        "features and gaps)."
    )


def _class_of(market: str) -> str:
    return market if is_simulated(market) else REAL
