"""The exchange's bans, remembered across runs.

Binance answers a client that used too much request weight with 429 and a ``Retry-After``, and
one that keeps asking with 418 and a longer one (minutes to days); asking again during a ban
makes it longer. A run sits out a short wait in-process (up to
``PRICEBOT_MAX_RETRY_AFTER_SECONDS``); a longer one is recorded here, in ``exchange_bans``, and
every run before its end, in this process or any other (the next Lambda invocation, a CLI),
makes no request at all and says when it will resume.

Keyed by the exchange's base URL: Binance counts per IP, so a ban seen by one run holds for all
runs reaching that host from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg


@dataclass(frozen=True)
class Ban:
    exchange: str
    until: datetime
    status: int
    message: str

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.until - now).total_seconds())

    def describe(self, now: datetime) -> str:
        """For people: who banned us, until when, and what happens meanwhile."""
        return (
            f"{self.exchange} has banned this client (HTTP {self.status}) until "
            f"{self.until:%Y-%m-%d %H:%M:%S} UTC, {_duration(self.seconds_left(now))} from now; "
            "no request is made before then, and ingestion resumes by itself at the first run "
            "after it"
        )


def record_ban(conn: psycopg.Connection, ban: Ban) -> Ban:
    """Remember ``ban`` (committed at once); keeps the later end if one is recorded already.

    Returns the ban now in force (the later of the two).
    """
    with conn.transaction():
        exchange, until, status, message = conn.execute(
            """INSERT INTO exchange_bans AS b (exchange, banned_until, status, message)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (exchange) DO UPDATE
                   SET banned_until = excluded.banned_until, status = excluded.status,
                       message = excluded.message, recorded_at = now()
                   WHERE excluded.banned_until > b.banned_until
               RETURNING exchange, banned_until, status, message""",
            (ban.exchange, ban.until, ban.status, ban.message[:2000]),
        ).fetchone() or (ban.exchange, None, None, None)
        if until is None:  # an equal or later ban was recorded already: it stands
            return active_ban(conn, ban.exchange, datetime.min.replace(tzinfo=UTC)) or ban
    return Ban(exchange, until, status, message)


def active_ban(conn: psycopg.Connection, exchange: str, now: datetime) -> Ban | None:
    """The ban of ``exchange`` still in force at ``now``, if any (one index probe)."""
    row = conn.execute(
        "SELECT exchange, banned_until, status, message FROM exchange_bans"
        " WHERE exchange = %s AND banned_until > %s",
        (exchange, now),
    ).fetchone()
    return Ban(*row) if row else None


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
