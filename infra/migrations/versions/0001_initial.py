"""Users, categories and tasks, owner first in every index.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE users (
            id          varchar(255) PRIMARY KEY,
            email       varchar(320),
            created_at  timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE categories (
            id          uuid PRIMARY KEY,
            user_id     varchar(255) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name        varchar(100) NOT NULL CHECK (length(btrim(name)) >= 1),
            color       varchar(7) CHECK (color ~ '^#[0-9A-Fa-f]{6}$'),
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now(),
            version     integer NOT NULL DEFAULT 1,
            -- Lets tasks reference (owner, category): a task can only hold its owner's category.
            CONSTRAINT uq_categories_user_id UNIQUE (user_id, id)
        );
        -- Names are unique per user case-insensitively; also serves the listing order.
        CREATE UNIQUE INDEX uq_categories_user_lower_name ON categories (user_id, lower(name));

        CREATE TABLE tasks (
            id            uuid PRIMARY KEY,
            user_id       varchar(255) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            title         varchar(200) NOT NULL CHECK (length(btrim(title)) >= 1),
            description   varchar(4000),
            completed     boolean NOT NULL DEFAULT false,
            completed_at  timestamptz,
            priority      smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 2),
            due_at        timestamptz,
            category_id   uuid,
            tags          varchar(50)[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20),
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            deleted_at    timestamptz,
            version       integer NOT NULL DEFAULT 1,
            CONSTRAINT ck_tasks_completed_at CHECK (completed = (completed_at IS NOT NULL)),
            CONSTRAINT fk_tasks_category_owner FOREIGN KEY (user_id, category_id)
                REFERENCES categories (user_id, id) ON DELETE SET NULL (category_id)
        );
        -- The default listing (newest first) and the trash (most recently trashed first).
        CREATE INDEX ix_tasks_user_created ON tasks (user_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_trash ON tasks (user_id, deleted_at DESC, id DESC) WHERE deleted_at IS NOT NULL;
        -- task_count and uncategorising on category delete.
        CREATE INDEX ix_tasks_user_category ON tasks (user_id, category_id) WHERE category_id IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE tasks; DROP TABLE categories; DROP TABLE users;")
