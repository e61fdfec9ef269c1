"""Provenance: the market of every ingestion run and import, and of each symbol's candles.

``ingestion_runs.market`` names where a run's candles came from (``binance``, ``binance-vision``
or ``simulated:<mode>``, see :mod:`pricebot.provenance`). ``candle_markets`` holds per symbol
the class of its candles ("real" or one simulated market) and the markets they came from; a
CHECK keeps a row from holding real and simulated markets, or two simulated ones, at once.

Candles stored before this revision are recorded by the door they came in through, the only
thing known about them: ``rest`` as ``binance``, ``archive`` as ``binance-vision``. The simulated
exchange also came in through the REST door, so a database filled from it before this revision
is recorded as real; such a database should be recreated (or its candles deleted) before it is
used with simulated data again. Runs from before this revision keep ``market`` NULL (not
recorded).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE ingestion_runs ADD COLUMN market text;
        COMMENT ON COLUMN ingestion_runs.market IS
            'Where the run''s candles came from: binance, binance-vision or simulated:<mode>; '
            'NULL for runs recorded before provenance was.';

        CREATE TABLE candle_markets (
            symbol      text        PRIMARY KEY,
            class       text        NOT NULL,
            markets     text[]      NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT candle_markets_one_class CHECK (
                CASE WHEN class = 'real'
                     THEN cardinality(markets) > 0
                          AND markets <@ ARRAY['binance', 'binance-vision']::text[]
                     ELSE class LIKE 'simulated:%' AND markets = ARRAY[class]
                END
            )
        );
        COMMENT ON TABLE candle_markets IS
            'Per symbol, the class (real or one simulated market) and the markets its stored '
            'candles came from; written with the candles (pricebot.provenance).';

        INSERT INTO candle_markets (symbol, class, markets)
        SELECT symbol, 'real',
               array_agg(DISTINCT CASE source WHEN 'rest' THEN 'binance'
                                              ELSE 'binance-vision' END)
        FROM klines WHERE source IN ('rest', 'archive')
        GROUP BY symbol;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE candle_markets; ALTER TABLE ingestion_runs DROP COLUMN market")
