"""Initial schema: candles, ingestion audit, gaps, features, predictions, alias history.

Prices and volumes are ``numeric`` so they come back exactly as Binance sent them (numeric keeps
the scale: '0.01000000' stays '0.01000000').

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE klines (
            symbol                 text        NOT NULL,
            open_time              timestamptz NOT NULL,
            open                   numeric     NOT NULL,
            high                   numeric     NOT NULL,
            low                    numeric     NOT NULL,
            close                  numeric     NOT NULL,
            volume                 numeric     NOT NULL,
            close_time             timestamptz NOT NULL,
            quote_volume           numeric     NOT NULL,
            trades                 bigint      NOT NULL,
            taker_buy_base_volume  numeric     NOT NULL,
            taker_buy_quote_volume numeric     NOT NULL,
            ignore                 text        NOT NULL DEFAULT '0',
            source                 text        NOT NULL,
            PRIMARY KEY (symbol, open_time)
        );
        COMMENT ON TABLE klines IS 'Binance 1-minute candles, all twelve kline fields, as sent.';

        CREATE TABLE ingestion_runs (
            id           bigserial PRIMARY KEY,
            symbol       text        NOT NULL,
            source       text        NOT NULL,
            started_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz,
            range_start  timestamptz,
            range_end    timestamptz,
            rows_written bigint      NOT NULL DEFAULT 0,
            pages        integer     NOT NULL DEFAULT 0,
            retries      integer     NOT NULL DEFAULT 0,
            duration_s   double precision,
            outcome      text        NOT NULL DEFAULT 'running'
                         CHECK (outcome IN ('running', 'success', 'failed')),
            error        text
        );
        CREATE INDEX ingestion_runs_symbol_started ON ingestion_runs (symbol, started_at DESC);

        CREATE TABLE gaps (
            symbol      text        NOT NULL,
            gap_start   timestamptz NOT NULL,
            gap_end     timestamptz NOT NULL,
            minutes     integer     NOT NULL,
            detected_at timestamptz NOT NULL DEFAULT now(),
            run_id      bigint REFERENCES ingestion_runs (id) ON DELETE SET NULL,
            PRIMARY KEY (symbol, gap_start),
            CHECK (gap_end >= gap_start)
        );
        COMMENT ON TABLE gaps IS
            'Minutes with no candle: gap_start/gap_end are the first/last missing open time.';

        CREATE TABLE features (
            symbol      text        NOT NULL,
            feature_set text        NOT NULL,
            open_time   timestamptz NOT NULL,
            close       double precision NOT NULL,
            values      double precision[] NOT NULL,
            computed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (symbol, feature_set, open_time)
        );
        COMMENT ON COLUMN features.values IS
            'Feature values in the order pricebot.features names them for this feature_set.';

        CREATE TABLE predictions (
            id              bigserial PRIMARY KEY,
            made_at         timestamptz NOT NULL,
            symbol          text        NOT NULL,
            target          text        NOT NULL,
            model_name      text        NOT NULL,
            model_version   text        NOT NULL,
            alias           text,
            feature_time    timestamptz NOT NULL,
            horizon_minutes integer     NOT NULL,
            prediction      double precision NOT NULL,
            base_close      double precision,
            request_id      text,
            actual          double precision,
            scored_at       timestamptz
        );
        CREATE INDEX predictions_symbol_target_made ON predictions (symbol, target, made_at);
        CREATE INDEX predictions_unscored ON predictions (feature_time) WHERE actual IS NULL;

        CREATE TABLE model_alias_events (
            id               bigserial PRIMARY KEY,
            model_name       text        NOT NULL,
            alias            text        NOT NULL,
            version          text,
            previous_version text,
            moved_at         timestamptz NOT NULL DEFAULT now(),
            moved_by         text        NOT NULL,
            reason           text        NOT NULL
        );
        CREATE INDEX model_alias_events_model ON model_alias_events (model_name, moved_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE model_alias_events, predictions, features, gaps, ingestion_runs, klines")
