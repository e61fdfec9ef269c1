"""An index of the prediction log by symbol, target and feature time.

The monitoring page samples the log one prediction per step of a range (the first of the step by
feature time). Without this index that is a sort of every row of the range (half a million for a
year of minutes); with it, one index probe per step (at most 2,000).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX predictions_symbol_target_feature "
        "ON predictions (symbol, target, feature_time, made_at DESC)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX predictions_symbol_target_feature")
