"""Indexes for every list sort and filter; idempotency records.

Every sort of `GET /tasks` has an index in its exact order (owner first, ties on id), so
keyset pages cost the same at any depth. `due_at` sorts put tasks without one last in both
directions by sorting on coalesce(due_at, ±infinity). Text search (`q`) uses a trigram
index over title and description.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE EXTENSION IF NOT EXISTS pg_trgm;

        ALTER TABLE tasks ADD COLUMN search_text text
            GENERATED ALWAYS AS (title || ' ' || coalesce(description, '')) STORED;

        CREATE INDEX ix_tasks_user_updated ON tasks (user_id, updated_at, id) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_priority ON tasks (user_id, priority, id) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_title ON tasks (user_id, lower(title), id) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_due_asc ON tasks (user_id, coalesce(due_at, 'infinity'::timestamptz), id)
            WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_due_desc ON tasks (user_id, coalesce(due_at, '-infinity'::timestamptz), id)
            WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_tags ON tasks USING gin (tags) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_search ON tasks USING gin (search_text gin_trgm_ops) WHERE deleted_at IS NULL;

        CREATE TABLE idempotency_keys (
            user_id        varchar(255) NOT NULL,  -- no foreign key: a key may be claimed before the user's first write
            key            varchar(255) NOT NULL,
            fingerprint    char(64) NOT NULL,
            status_code    smallint NOT NULL,
            response_body  text NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now(),
            expires_at     timestamptz NOT NULL,
            PRIMARY KEY (user_id, key)
        );
        CREATE INDEX ix_idempotency_keys_expires_at ON idempotency_keys (expires_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE idempotency_keys;
        DROP INDEX ix_tasks_search, ix_tasks_tags, ix_tasks_user_due_desc, ix_tasks_user_due_asc,
            ix_tasks_user_title, ix_tasks_user_priority, ix_tasks_user_updated;
        ALTER TABLE tasks DROP COLUMN search_text;
        """
    )
