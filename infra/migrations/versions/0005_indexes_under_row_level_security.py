"""Every listing index usable under row-level security.

A policy's qual runs before any of the query's quals that are not LEAKPROOF (they could
leak rows through an error or a side effect), so the planner will not make such a qual an
index condition. `lower()`, `coalesce()`, ILIKE and array `@>` are not leakproof; plain
columns compared with btree operators (`<`, `=` on timestamptz, text, uuid, smallint) are.
See docs/decisions/0007.

- Sort keys become stored generated columns (`due_key_asc`, `due_key_desc`, `title_key`;
  `name_key` for categories), indexed as plain columns: the cursor's row comparison on
  them is an Index Cond again.
- `tag` and `q` go through two narrow SECURITY DEFINER functions owned by `todo_search`,
  a role that can read five columns of `tasks` and nothing else, whose own policy has no
  qual: inside them the GIN indexes (now per user: `btree_gin` puts `user_id` first) serve
  `@>` and ILIKE. Each returns ids of the transaction's caller (`app.user_id`) only; the
  list query then reads those ids through `tasks` under the caller's policy as before.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE EXTENSION IF NOT EXISTS btree_gin;

        ALTER TABLE tasks
            ADD COLUMN due_key_asc timestamptz GENERATED ALWAYS AS (coalesce(due_at, 'infinity'::timestamptz)) STORED,
            ADD COLUMN due_key_desc timestamptz GENERATED ALWAYS AS (coalesce(due_at, '-infinity'::timestamptz)) STORED,
            ADD COLUMN title_key text GENERATED ALWAYS AS (lower(title)) STORED;
        DROP INDEX ix_tasks_user_title, ix_tasks_user_due_asc, ix_tasks_user_due_desc, ix_tasks_tags, ix_tasks_search;
        CREATE INDEX ix_tasks_user_title ON tasks (user_id, title_key, id) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_due_asc ON tasks (user_id, due_key_asc, id) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_due_desc ON tasks (user_id, due_key_desc, id) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_tags ON tasks USING gin (user_id, tags) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_search ON tasks USING gin (user_id, search_text gin_trgm_ops) WHERE deleted_at IS NULL;

        ALTER TABLE categories ADD COLUMN name_key text GENERATED ALWAYS AS (lower(name)) STORED;
        DROP INDEX uq_categories_user_lower_name;
        CREATE UNIQUE INDEX uq_categories_user_lower_name ON categories (user_id, name_key);

        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todo_search') THEN
                CREATE ROLE todo_search NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        END $$;
        GRANT todo_search TO CURRENT_USER;
        GRANT USAGE ON SCHEMA public TO todo_search;
        GRANT SELECT (id, user_id, deleted_at, tags, search_text) ON tasks TO todo_search;
        -- No qual of its own: the functions below are the only way in, and each filters by
        -- the caller itself.
        CREATE POLICY tasks_search ON tasks TO todo_search USING (true);

        CREATE FUNCTION caller_task_ids_tagged(tag text) RETURNS SETOF uuid
            LANGUAGE sql STABLE STRICT SECURITY DEFINER ROWS 100
            SET search_path = pg_catalog, pg_temp
        AS $fn$
            SELECT t.id FROM public.tasks t
            WHERE t.user_id = current_setting('app.user_id', true) AND t.deleted_at IS NULL
              AND t.tags @> ARRAY[tag]::varchar(50)[]
        $fn$;

        -- `rarest` is one of `patterns` (the longest: most trigrams), for the index.
        CREATE FUNCTION caller_task_ids_matching(rarest text, patterns text[]) RETURNS SETOF uuid
            LANGUAGE sql STABLE STRICT SECURITY DEFINER ROWS 100
            SET search_path = pg_catalog, pg_temp
        AS $fn$
            SELECT t.id FROM public.tasks t
            WHERE t.user_id = current_setting('app.user_id', true) AND t.deleted_at IS NULL
              AND t.search_text ILIKE rarest AND t.search_text ILIKE ALL (patterns)
        $fn$;

        REVOKE ALL ON FUNCTION caller_task_ids_tagged(text), caller_task_ids_matching(text, text[]) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION caller_task_ids_tagged(text), caller_task_ids_matching(text, text[]) TO todo_app;
        -- A new owner needs CREATE on the schema at the moment it takes the function, no longer.
        GRANT CREATE ON SCHEMA public TO todo_search;
        ALTER FUNCTION caller_task_ids_tagged(text) OWNER TO todo_search;
        ALTER FUNCTION caller_task_ids_matching(text, text[]) OWNER TO todo_search;
        REVOKE CREATE ON SCHEMA public FROM todo_search;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION caller_task_ids_tagged(text), caller_task_ids_matching(text, text[]);
        DROP POLICY tasks_search ON tasks;
        REVOKE ALL ON tasks FROM todo_search;
        REVOKE USAGE ON SCHEMA public FROM todo_search;

        DROP INDEX uq_categories_user_lower_name;
        ALTER TABLE categories DROP COLUMN name_key;
        CREATE UNIQUE INDEX uq_categories_user_lower_name ON categories (user_id, lower(name));

        DROP INDEX ix_tasks_user_title, ix_tasks_user_due_asc, ix_tasks_user_due_desc, ix_tasks_user_tags, ix_tasks_user_search;
        ALTER TABLE tasks DROP COLUMN due_key_asc, DROP COLUMN due_key_desc, DROP COLUMN title_key;
        CREATE INDEX ix_tasks_user_title ON tasks (user_id, lower(title), id) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_due_asc ON tasks (user_id, coalesce(due_at, 'infinity'::timestamptz), id)
            WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_due_desc ON tasks (user_id, coalesce(due_at, '-infinity'::timestamptz), id)
            WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_tags ON tasks USING gin (tags) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_search ON tasks USING gin (search_text gin_trgm_ops) WHERE deleted_at IS NULL;
        """
    )
