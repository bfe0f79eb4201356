"""The scheduled cleanup finds expired trash through an index of trashed tasks only.

`deleted_at < cut-off` is answered from an index that holds trashed tasks alone, so a
cleanup batch never scans the live ones, however many there are. (Idempotency records
have had their `expires_at` index since 0002.)

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_tasks_deleted_at ON tasks (deleted_at) WHERE deleted_at IS NOT NULL;")


def downgrade() -> None:
    op.execute("DROP INDEX ix_tasks_deleted_at;")
