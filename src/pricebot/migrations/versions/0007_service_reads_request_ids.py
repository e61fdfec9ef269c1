"""The service's role may read the prediction log's ``request_id``, so its idempotent write works.

The log writer inserts with ``ON CONFLICT (request_id) DO NOTHING`` (migration 0006), and
PostgreSQL requires SELECT on the columns of a conflict target: with INSERT alone (migration
0004) every write of the deployed service, and of the batch prediction job that logs in as it,
is refused with "permission denied for table predictions". The grant is that one column, so the
service still reads nothing of the log itself.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("GRANT SELECT (request_id) ON predictions TO pricebot_service_group")


def downgrade() -> None:
    op.execute("REVOKE SELECT (request_id) ON predictions FROM pricebot_service_group")
