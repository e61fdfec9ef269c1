"""Component roles: one NOLOGIN group role per component, granted only what it uses.

The deployed components no longer log in as the database owner. Each has a group role holding
its privileges; the deployment gives each component a login role that is a member of its group
(created and given its password by ``pricebot db upgrade`` from the component's Secrets Manager
secret, see :mod:`pricebot.roles`). Locally nothing logs in as these roles: the owner keeps
doing everything, as before.

==========================  =====================================================================
group role                  privileges
==========================  =====================================================================
pricebot_service_group      read features, klines and candle markets; add predictions (the log)
pricebot_monitoring_group   read every table (and every table created later: default privileges)
pricebot_pipeline_group     ingest and backfill (klines, candle_markets, ingestion_runs, gaps),
                            transform (features), scoring (read predictions, fill in ``actual``
                            and ``scored_at``)
pricebot_training_group     read klines, features, gaps, candle markets and the alias history;
                            record alias moves
==========================  =====================================================================

Every statement is idempotent (roles are created only if missing, grants repeat harmlessly), so
the revision can run on a cluster where another database already created the roles: roles are
cluster-wide, tables are per database.

Later migrations: the default privileges below give ``pricebot_monitoring_group`` SELECT on any
table the migrating role creates later. Nothing else is granted by default, on purpose: a migration
that adds a table or a column a component writes must GRANT it to that component's group role
in the same revision, next to the CREATE (``GRANT SELECT, INSERT ON new_table TO
pricebot_pipeline_group``, plus ``USAGE`` on its sequence when it has one).

Revision ID: 0004
Revises: 0002 (the lead re-chains it after the market-data helper's 0003)
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

GROUPS = (
    "pricebot_service_group",
    "pricebot_monitoring_group",
    "pricebot_pipeline_group",
    "pricebot_training_group",
)
TABLES = (
    "klines", "ingestion_runs", "gaps", "features", "predictions", "model_alias_events",
    "candle_markets",
)  # fmt: skip

GRANTS = """
-- No role but the owner creates objects (already PostgreSQL 15's default; explicit for older).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public
    TO pricebot_service_group, pricebot_monitoring_group, pricebot_pipeline_group,
       pricebot_training_group;

GRANT SELECT ON features, klines, candle_markets TO pricebot_service_group;
GRANT INSERT ON predictions TO pricebot_service_group;
GRANT USAGE ON SEQUENCE predictions_id_seq TO pricebot_service_group;

GRANT SELECT ON klines, ingestion_runs, gaps, features, predictions, model_alias_events,
                candle_markets
    TO pricebot_monitoring_group;

GRANT SELECT, INSERT ON klines TO pricebot_pipeline_group;
GRANT SELECT, INSERT, UPDATE, DELETE ON candle_markets TO pricebot_pipeline_group;
GRANT SELECT, INSERT, UPDATE ON ingestion_runs TO pricebot_pipeline_group;
GRANT USAGE ON SEQUENCE ingestion_runs_id_seq TO pricebot_pipeline_group;
GRANT SELECT, INSERT, UPDATE, DELETE ON gaps TO pricebot_pipeline_group;
GRANT SELECT, INSERT, DELETE ON features TO pricebot_pipeline_group;
GRANT SELECT ON predictions TO pricebot_pipeline_group;
GRANT UPDATE (actual, scored_at) ON predictions TO pricebot_pipeline_group;

GRANT SELECT ON klines, features, gaps, model_alias_events, candle_markets
    TO pricebot_training_group;
GRANT INSERT ON model_alias_events TO pricebot_training_group;
GRANT USAGE ON SEQUENCE model_alias_events_id_seq TO pricebot_training_group;

ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO pricebot_monitoring_group;
"""


def _create_group(name: str) -> str:
    # Two databases migrating at once can both see the role missing; the loser's duplicate is
    # harmless, so it is swallowed rather than failing the migration.
    return f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
        CREATE ROLE {name} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
"""


def upgrade() -> None:
    for name in GROUPS:
        op.execute(_create_group(name))
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
        " REVOKE SELECT ON TABLES FROM pricebot_monitoring_group"
    )
    for name in GROUPS:
        op.execute(f"REVOKE ALL ON {', '.join(TABLES)} FROM {name}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {name}")
        op.execute(f"REVOKE USAGE ON SCHEMA public FROM {name}")
        # The role may still hold privileges in another database of the cluster; it then stays.
        op.execute(
            f"""
DO $$
BEGIN
    DROP ROLE IF EXISTS {name};
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'role {name} kept: other databases of the cluster still grant it privileges';
END
$$;
"""
        )
