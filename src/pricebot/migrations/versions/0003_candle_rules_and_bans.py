"""The candle rules as CHECK constraints on klines, and the exchange's bans remembered.

The rules of :mod:`pricebot.candle_rules`, one named constraint each (``klines_<rule>``), so
that no writer, ours or anyone's, can store a candle from the future, a negative volume or
prices out of order; a refused row's error names the rule. They are written out here rather
than imported (a migration must not change when the code does); the component tests check that
they agree with the Python and archive forms.

Stored rows are checked first: each constraint is added NOT VALID (which already holds for new
rows), the table is read once for rows breaking any of them, and if there are some the upgrade
stops, changing nothing, with how many break which rule, the first of each, and how to find
them. Otherwise every constraint is validated.

``exchange_bans`` remembers, per exchange (its base URL), until when it has banned this client
(a 418 or 429 with Retry-After), so that no run makes a request before then.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from alembic import op

from pricebot.errors import StoredRowsBreakRulesError

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SKEW = "interval '2 minutes'"
_DECIMALS = ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_base_volume",
             "taker_buy_quote_volume")  # fmt: skip
_VOLUMES = ("volume", "quote_volume", "taker_buy_base_volume", "taker_buy_quote_volume")
RULES = {
    "klines_known_time": "open_time >= timestamptz '2010-01-01 00:00:00+00'",
    # now() makes these hold at the moment of writing; they stay true as time passes.
    "klines_not_in_the_future": f"open_time <= now() + {_SKEW}",
    "klines_on_a_minute": "mod(extract(epoch FROM open_time), 60) = 0",
    "klines_one_minute": (
        "close_time > open_time AND close_time < open_time + interval '1 minute'"
    ),
    "klines_closed": f"close_time < now() + {_SKEW}",
    "klines_in_range": " AND ".join(
        [f"{c} < 1e20 AND coalesce(scale({c}) <= 20, false)" for c in _DECIMALS]
        + ["trades < 1000000000000", "length(ignore) <= 40"]
    ),
    "klines_non_negative": " AND ".join(f"{c} >= 0" for c in (*_VOLUMES, "trades")),
    "klines_positive_prices": "open > 0 AND high > 0 AND low > 0 AND close > 0",
    "klines_ordered_prices": "low <= open AND low <= close AND open <= high AND close <= high",
}


def upgrade() -> None:
    for name, condition in RULES.items():
        op.execute(f"ALTER TABLE klines ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    breaking = _rows_breaking_rules()
    if breaking:
        raise StoredRowsBreakRulesError(_message(breaking))
    for name in RULES:
        op.execute(f"ALTER TABLE klines VALIDATE CONSTRAINT {name}")

    op.execute(
        """
        CREATE TABLE exchange_bans (
            exchange     text        PRIMARY KEY,
            banned_until timestamptz NOT NULL,
            status       integer     NOT NULL CHECK (status IN (418, 429)),
            message      text        NOT NULL,
            recorded_at  timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE exchange_bans IS
            'Until when each exchange (base URL) banned this client; no run asks it before.';
        """
    )


def _rows_breaking_rules() -> list[tuple[str, int, str]]:
    """(constraint, rows breaking it, first symbol, its open time), one read of the table."""
    counts = ", ".join(
        f"count(*) FILTER (WHERE NOT coalesce({c}, false)),"
        f" min(symbol || ' ' || open_time::text) FILTER (WHERE NOT coalesce({c}, false))"
        for c in RULES.values()
    )
    row = op.get_bind().exec_driver_sql(f"SELECT {counts} FROM klines").fetchone()
    found = []
    for index, name in enumerate(RULES):
        rows, first = row[2 * index], row[2 * index + 1]
        if rows:
            found.append((name, rows, first))
    return found


def _message(breaking: list) -> str:
    details = "; ".join(f"{name}: {rows:,} row(s), e.g. {first}" for name, rows, first in breaking)
    name = breaking[0][0]
    return (
        f"klines holds candles that break the candle rules this upgrade adds ({details}). "
        "Nothing was changed. Delete or correct them, then run `pricebot db upgrade` again; "
        f"to list them: SELECT * FROM klines WHERE NOT ({RULES[name]})."
    )


def downgrade() -> None:
    op.execute("DROP TABLE exchange_bans")
    for name in RULES:
        op.execute(f"ALTER TABLE klines DROP CONSTRAINT {name}")
