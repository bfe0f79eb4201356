"""The change log: one ordered record per user of every change to a task or a category.

Written by triggers on `tasks` and `categories`, inside the writing statement (so in the
request's one flight, and rolled back with it): docs/decisions/0009-change-log.md.

- `users.last_change` is the user's last number; `change_log (user_id, seq)` its entries.
  An entry holds what changed (`kind`, `object_id`) and how (`action`: created, updated,
  completed, deleted, restored), never the object: the feed and the publisher read the
  object as it is when they read the entry (its latest state), the way GET shows it.
- Numbers are taken under the user row's lock (`UPDATE users SET last_change = ...`,
  held to the commit): a user's writers queue there, so commit order is number order and
  a reader never sees n+1 before n has committed. The lock is taken at the end of the
  writing statement (AFTER STATEMENT triggers), after every row lock of the write, and
  several users' rows (the cleanup's purge, the one write that spans users) in id order:
  no lock cycle.
- `at` is the change's time, never earlier than the user's previous one
  (`users.last_change_at`): a user's `at` only grows with `seq`, so "older than N days"
  is a prefix of the log, and the cleanup never leaves a hole in the middle of it.
- The triggers are statement-level with transition tables (one call per statement,
  set-based, however many rows), two SECURITY DEFINER functions (one a table, each branch
  one statement made by `_append`, the one place that numbers) owned by `todo_changes`, a role that may only bump those two columns of `users` and append to
  the log. The functions can be called by no one else (a trigger function cannot be
  called directly), so `todo_cleanup`, whose purge appends tombstones for many users,
  needs no right on `users` or the log.
- A task's entry is made when its `version` moved, or it went to or came back from the
  trash; its category's too when the task joined or left it (`task_count`). A write
  that changes nothing (`PATCH {}`, the reminders' `reminded_at`, stored occurrences)
  makes none.
- Readers: `todo_app` reads its own entries (the caller policy; `GET /changes` by
  `(user_id, seq)`, the primary key, plain columns: an Index Cond under the policy,
  docs/decisions/0007); `todo_publisher` takes unpublished entries through a partial
  index and marks them published; `todo_cleanup` deletes published entries older than
  CHANGES_RETENTION_DAYS by `at` (another partial index) and may see no other.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _append(changes: str) -> str:
    """The one statement that numbers and appends the rows of `changes` (a SELECT of
    user_id, kind, object_id, action, part): per user, the count bumps `last_change` (the
    lock), and the rows take the numbers after the old value, in (part, object_id) order.
    Each trigger branch is one such statement: planned once, no nested function call."""
    return f"""WITH changes AS (
                    {changes}
                ), counted AS (
                    SELECT user_id, count(*) AS n FROM changes GROUP BY user_id
                ), numbered AS (
                    UPDATE public.users u
                    SET last_change = u.last_change + c.n, last_change_at = greatest(u.last_change_at, now())
                    FROM counted c WHERE u.id = c.user_id
                    RETURNING u.id, u.last_change - c.n AS base, u.last_change_at AS at
                )
                INSERT INTO public.change_log (user_id, seq, kind, object_id, action, at)
                SELECT c.user_id, n.base + row_number() OVER (PARTITION BY c.user_id ORDER BY c.part, c.object_id),
                       c.kind, c.object_id, c.action, n.at
                FROM changes c JOIN numbered n ON n.id = c.user_id"""


# What each trigger appends (user_id, kind, object_id, action, part): the object, then the
# categories whose task_count moved (only those that still exist: a category deleted by the
# same statement gets its own `deleted`).
_TASKS_INSERTED = """
    SELECT n.user_id, 'task'::varchar AS kind, n.id AS object_id, 'created'::varchar AS action, 0 AS part
    FROM inserted n WHERE n.deleted_at IS NULL
    UNION ALL
    SELECT DISTINCT n.user_id, 'category', n.category_id, 'updated', 1
    FROM inserted n WHERE n.deleted_at IS NULL AND n.category_id IS NOT NULL"""
_TASKS_UPDATED = """
    SELECT n.user_id, 'task'::varchar AS kind, n.id AS object_id,
           CASE WHEN n.deleted_at IS NOT NULL THEN 'deleted' WHEN o.deleted_at IS NOT NULL THEN 'restored'
                WHEN n.completed AND NOT o.completed THEN 'completed' ELSE 'updated' END::varchar AS action,
           0 AS part
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE (o.deleted_at IS NULL OR n.deleted_at IS NULL)
      AND (o.version IS DISTINCT FROM n.version OR (o.deleted_at IS NULL) <> (n.deleted_at IS NULL))
    UNION ALL
    SELECT DISTINCT n.user_id, 'category', c.category, 'updated', 1
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    CROSS JOIN LATERAL (VALUES (CASE WHEN o.deleted_at IS NULL THEN o.category_id END),
                               (CASE WHEN n.deleted_at IS NULL THEN n.category_id END)) AS c(category)
    WHERE c.category IS NOT NULL
      AND (o.deleted_at IS NULL, o.category_id) IS DISTINCT FROM (n.deleted_at IS NULL, n.category_id)
      AND EXISTS (SELECT FROM public.categories k WHERE k.user_id = n.user_id AND k.id = c.category)"""
_TASKS_DELETED = """
    SELECT o.user_id, 'task'::varchar AS kind, o.id AS object_id, 'deleted'::varchar AS action, 0 AS part FROM deleted o
    UNION ALL
    SELECT DISTINCT o.user_id, 'category', o.category_id, 'updated', 1
    FROM deleted o
    WHERE o.deleted_at IS NULL AND o.category_id IS NOT NULL
      AND EXISTS (SELECT FROM public.categories k WHERE k.user_id = o.user_id AND k.id = o.category_id)"""
_CATEGORIES_INSERTED = """
    SELECT n.user_id, 'category'::varchar AS kind, n.id AS object_id, 'created'::varchar AS action, 0 AS part FROM inserted n"""
_CATEGORIES_UPDATED = """
    SELECT n.user_id, 'category'::varchar AS kind, n.id AS object_id, 'updated'::varchar AS action, 0 AS part
    FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE n.version IS DISTINCT FROM o.version"""
_CATEGORIES_DELETED = """
    SELECT o.user_id, 'category'::varchar AS kind, o.id AS object_id, 'deleted'::varchar AS action, 0 AS part FROM deleted o"""

_TASK_PUBLIC_COLUMNS = (
    "id, user_id, title, description, completed, completed_at, priority, due_at, category_id, tags, created_at,"
    " updated_at, deleted_at, version, recurrence, timezone, series_id, remind_at"
)


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE users
            ADD COLUMN last_change bigint NOT NULL DEFAULT 0,
            ADD COLUMN last_change_at timestamptz;

        CREATE TABLE change_log (
            user_id      varchar(255) NOT NULL,
            seq          bigint NOT NULL,
            kind         varchar(8) NOT NULL CHECK (kind IN ('task', 'category')),
            object_id    uuid NOT NULL,
            action       varchar(9) NOT NULL CHECK (action IN ('created', 'updated', 'completed', 'deleted', 'restored')),
            at           timestamptz NOT NULL,
            published_at timestamptz,
            PRIMARY KEY (user_id, seq)
        );
        -- The publisher's queue (only what is left to publish) and the cleanup's prune order.
        CREATE INDEX ix_change_log_unpublished ON change_log (user_id, seq) WHERE published_at IS NULL;
        CREATE INDEX ix_change_log_published_at ON change_log (at) WHERE published_at IS NOT NULL;

        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todo_changes') THEN
                CREATE ROLE todo_changes NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todo_publisher') THEN
                CREATE ROLE todo_publisher NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        END $$;
        GRANT todo_changes, todo_publisher TO CURRENT_USER;
        GRANT USAGE ON SCHEMA public TO todo_changes, todo_publisher;

        ALTER TABLE change_log ENABLE ROW LEVEL SECURITY;
        ALTER TABLE change_log FORCE ROW LEVEL SECURITY;
        -- The feed: the caller's own entries, read only.
        GRANT SELECT ON change_log TO todo_app;
        CREATE POLICY change_log_caller_only ON change_log FOR SELECT TO todo_app
            USING (user_id = current_setting('app.user_id', true));
        -- The application may write a user's email, not the numbers (only the triggers do).
        REVOKE INSERT, UPDATE ON users FROM todo_app;
        GRANT INSERT (id, email, created_at), UPDATE (email) ON users TO todo_app;
        -- The triggers' function: append, and bump the user's number.
        GRANT INSERT ON change_log TO todo_changes;
        CREATE POLICY change_log_append ON change_log FOR INSERT TO todo_changes WITH CHECK (true);
        GRANT SELECT (id, last_change, last_change_at), UPDATE (last_change, last_change_at) ON users TO todo_changes;
        CREATE POLICY users_change_numbers ON users TO todo_changes USING (true) WITH CHECK (true);
        GRANT SELECT (id, user_id) ON categories TO todo_changes;
        CREATE POLICY categories_change_log ON categories FOR SELECT TO todo_changes USING (true);
        -- The publisher: every user's entries, marking them published, and the objects they name.
        GRANT SELECT, UPDATE (published_at) ON change_log TO todo_publisher;
        CREATE POLICY change_log_publish ON change_log TO todo_publisher USING (true) WITH CHECK (published_at IS NOT NULL);
        GRANT SELECT ({_TASK_PUBLIC_COLUMNS}) ON tasks TO todo_publisher;
        GRANT SELECT ON categories TO todo_publisher;
        CREATE POLICY tasks_publish ON tasks FOR SELECT TO todo_publisher USING (true);
        CREATE POLICY categories_publish ON categories FOR SELECT TO todo_publisher USING (true);
        -- The cleanup: published entries only (FOR UPDATE needs an UPDATE grant; the policy
        -- lets it change nothing).
        GRANT SELECT, DELETE, UPDATE (published_at) ON change_log TO todo_cleanup;
        CREATE POLICY change_log_prune ON change_log TO todo_cleanup USING (published_at IS NOT NULL) WITH CHECK (false);

        -- Tasks: the task itself, and the categories whose task_count it changed.
        CREATE FUNCTION change_log_tasks() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
        AS $fn$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {_append(_TASKS_INSERTED)};
            ELSIF TG_OP = 'UPDATE' THEN
                {_append(_TASKS_UPDATED)};
            ELSE
                -- A purge deletes many users' tasks: their rows are locked in one order, so
                -- two runs never wait on each other in a cycle.
                PERFORM FROM public.users u WHERE u.id IN (SELECT user_id FROM deleted) ORDER BY u.id FOR NO KEY UPDATE;
                {_append(_TASKS_DELETED)};
            END IF;
            RETURN NULL;
        END
        $fn$;

        CREATE FUNCTION change_log_categories() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
        AS $fn$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {_append(_CATEGORIES_INSERTED)};
            ELSIF TG_OP = 'UPDATE' THEN
                {_append(_CATEGORIES_UPDATED)};
            ELSE
                {_append(_CATEGORIES_DELETED)};
            END IF;
            RETURN NULL;
        END
        $fn$;

        -- The cleanup's purge: of these owners, those whose user row it could lock at once
        -- (SKIP LOCKED: a user writing right now is left for the next run, never waited on).
        CREATE FUNCTION change_log_free_owners(owners varchar[]) RETURNS SETOF varchar
            LANGUAGE sql VOLATILE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
        AS $fn$
            SELECT u.id FROM public.users u WHERE u.id = ANY (owners) ORDER BY u.id FOR NO KEY UPDATE SKIP LOCKED
        $fn$;
        REVOKE ALL ON FUNCTION change_log_free_owners(varchar[]) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION change_log_free_owners(varchar[]) TO todo_cleanup;

        CREATE TRIGGER change_log_inserted AFTER INSERT ON tasks
            REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION change_log_tasks();
        CREATE TRIGGER change_log_updated AFTER UPDATE ON tasks
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_log_tasks();
        CREATE TRIGGER change_log_deleted AFTER DELETE ON tasks
            REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION change_log_tasks();
        CREATE TRIGGER change_log_inserted AFTER INSERT ON categories
            REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION change_log_categories();
        CREATE TRIGGER change_log_updated AFTER UPDATE ON categories
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_log_categories();
        CREATE TRIGGER change_log_deleted AFTER DELETE ON categories
            REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION change_log_categories();

        -- A new owner needs CREATE on the schema at the moment it takes the function, no longer.
        GRANT CREATE ON SCHEMA public TO todo_changes;
        ALTER FUNCTION change_log_tasks() OWNER TO todo_changes;
        ALTER FUNCTION change_log_categories() OWNER TO todo_changes;
        ALTER FUNCTION change_log_free_owners(varchar[]) OWNER TO todo_changes;
        REVOKE CREATE ON SCHEMA public FROM todo_changes;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER change_log_inserted ON tasks;
        DROP TRIGGER change_log_updated ON tasks;
        DROP TRIGGER change_log_deleted ON tasks;
        DROP TRIGGER change_log_inserted ON categories;
        DROP TRIGGER change_log_updated ON categories;
        DROP TRIGGER change_log_deleted ON categories;
        DROP FUNCTION change_log_tasks(), change_log_categories(), change_log_free_owners(varchar[]);
        DROP POLICY users_change_numbers ON users;
        DROP POLICY categories_change_log ON categories;
        DROP POLICY tasks_publish ON tasks;
        DROP POLICY categories_publish ON categories;
        REVOKE ALL ON users, categories, tasks FROM todo_changes, todo_publisher;
        GRANT INSERT, UPDATE ON users TO todo_app;
        DROP TABLE change_log;
        REVOKE USAGE ON SCHEMA public FROM todo_changes, todo_publisher;
        ALTER TABLE users DROP COLUMN last_change_at, DROP COLUMN last_change;
        """
    )
