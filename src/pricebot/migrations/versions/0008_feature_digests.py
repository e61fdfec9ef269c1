"""Feature digests: what each stored UTC day of feature rows holds, so a full recompute can skip it.

``pricebot transform --full`` recomputes every row of a symbol and writes only those that
differ. Finding them used to mean reading the whole stored year back and comparing it bit for
bit. With one row per (symbol, feature set, UTC day) saying what the day held when it was last
written, a recompute compares a day's rows only when the day's digest, or the row versions it
was taken of, no longer match:

- ``sha256``: of the day's binary COPY rows as :func:`pricebot.transform.feature_rows` encodes
  them (every byte of every row, in open-time order);
- ``rows``: how many rows the day held;
- ``xmins_md5``: MD5 of the ``xmin`` (inserting transaction id) of each of the day's stored row
  versions, 4 bytes big-endian each, in open-time order. PostgreSQL gives every inserted or
  updated row version a new ``xmin``, so a row changed, added or deleted behind the digest's back
  (an ``UPDATE`` by hand, an incremental append) changes this value, and the day is compared
  for real.

A day without a digest is compared row by row, so deleting a symbol's digest rows (or all of
them) is always safe: it only makes the next full recompute read those days back.

Grants (next to the CREATE, as 0004 asks): the pipeline group, which runs the transform, may
read, add and delete digests (it never updates one: a changed day's digest is deleted and
inserted again); monitoring reads it; the service and training do not see it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE feature_digests (
            symbol      text    NOT NULL,
            feature_set text    NOT NULL,
            day         date    NOT NULL,
            rows        integer NOT NULL CHECK (rows > 0),
            sha256      bytea   NOT NULL CHECK (length(sha256) = 32),
            xmins_md5   bytea   NOT NULL CHECK (length(xmins_md5) = 16),
            PRIMARY KEY (symbol, feature_set, day)
        );
        COMMENT ON TABLE feature_digests IS
            'Per UTC day of feature rows: SHA-256 of the binary COPY rows and MD5 of the stored'
            ' rows'' xmin values; a full recompute skips days whose digest and xmins match.'
            ' Deleting rows here only forces a row-by-row compare.';
        GRANT SELECT, INSERT, DELETE ON feature_digests TO pricebot_pipeline_group;
        GRANT SELECT ON feature_digests TO pricebot_monitoring_group;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE feature_digests")
