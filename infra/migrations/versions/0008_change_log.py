"""The change log: one ordered record per user of every change to a task or a category.

Written by triggers on `tasks` and `categories`, inside the writing statement (so in the
request's one flight, and rolled back with it): docs/decisions/0009.

- `users.last_change` is the user's last number; `change_log (user_id, seq)` its entries.
  An entry holds what changed (`kind`, `object_id`) and how (`action`: created, updated,
  completed, deleted, restored), never the object: the feed and the publisher read the
  object as it is when they read the entry (its latest state), the way GET shows it.
- Numbers are taken under the user row's lock (`UPDATE users SET last_change = ...`,
  held to the commit): a user's writers queue there, so commit order is number order and
  a reader never sees n+1 before n has committed. The lock is taken at the end of the
  writing statement (AFTER STATEMENT triggers), after every row lock of the write, and
  several users' rows (the cleanup's purge) in id order: no lock cycle.
- `at` is the change's time, never earlier than the user's previous one
  (`users.last_change_at`): a user's `at` only grows with `seq`, so "older than N days"
  is a prefix of the log, and the cleanup never leaves a hole in the middle of it.
- The triggers are statement-level with transition tables (one call per statement,
  set-based, however many rows), in one SECURITY DEFINER function owned by
  `todo_changes`, a role that may only bump those two columns of `users` and append to
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

        -- Numbers the changes (one row per change, in the order given) and appends them.
        CREATE FUNCTION change_log_append(owners text[], kinds text[], objects uuid[], actions text[]) RETURNS void
            LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
        AS $fn$
        BEGIN
            IF coalesce(cardinality(owners), 0) = 0 THEN
                RETURN;
            END IF;
            IF EXISTS (SELECT FROM unnest(owners) AS o WHERE o <> owners[1]) THEN
                -- Several users (a purge): their rows locked in one order, so two runs never
                -- wait on each other in a cycle.
                PERFORM FROM public.users u WHERE u.id = ANY (owners) ORDER BY u.id FOR NO KEY UPDATE;
            END IF;
            WITH wanted AS (
                SELECT * FROM unnest(owners, kinds, objects, actions) WITH ORDINALITY AS w(user_id, kind, object_id, action, ord)
            ), counted AS (
                SELECT user_id, count(*) AS n FROM wanted GROUP BY user_id
            ), numbered AS (
                UPDATE public.users u
                SET last_change = u.last_change + c.n, last_change_at = greatest(u.last_change_at, now())
                FROM counted c WHERE u.id = c.user_id
                RETURNING u.id, u.last_change - c.n AS base, u.last_change_at AS at
            )
            INSERT INTO public.change_log (user_id, seq, kind, object_id, action, at)
            SELECT w.user_id, n.base + row_number() OVER (PARTITION BY w.user_id ORDER BY w.ord), w.kind, w.object_id, w.action, n.at
            FROM wanted w JOIN numbered n ON n.id = w.user_id;
        END
        $fn$;
        REVOKE ALL ON FUNCTION change_log_append(text[], text[], uuid[], text[]) FROM PUBLIC;

        -- Tasks: the task itself, and the categories whose task_count it changed.
        CREATE FUNCTION change_log_tasks() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
        AS $fn$
        DECLARE
            owners text[];
            kinds text[];
            objects uuid[];
            actions text[];
        BEGIN
            IF TG_OP = 'INSERT' THEN
                WITH changes AS (
                    SELECT n.user_id, 'task' AS kind, n.id AS object_id, 'created' AS action, 0 AS part
                    FROM inserted n WHERE n.deleted_at IS NULL
                    UNION ALL
                    SELECT DISTINCT n.user_id, 'category', n.category_id, 'updated', 1
                    FROM inserted n WHERE n.deleted_at IS NULL AND n.category_id IS NOT NULL
                )
                SELECT array_agg(user_id ORDER BY part, object_id), array_agg(kind ORDER BY part, object_id),
                       array_agg(object_id ORDER BY part, object_id), array_agg(action ORDER BY part, object_id)
                INTO owners, kinds, objects, actions FROM changes;
            ELSIF TG_OP = 'UPDATE' THEN
                WITH pairs AS (
                    SELECT o.user_id, o.id, o.version AS old_version, n.version AS new_version,
                           o.deleted_at IS NULL AS was_live, n.deleted_at IS NULL AS is_live,
                           o.completed AS was_completed, n.completed AS is_completed,
                           o.category_id AS old_category, n.category_id AS new_category
                    FROM old_rows o JOIN new_rows n ON n.id = o.id
                ), changes AS (
                    SELECT user_id, 'task' AS kind, id AS object_id,
                           CASE WHEN NOT is_live THEN 'deleted' WHEN NOT was_live THEN 'restored'
                                WHEN is_completed AND NOT was_completed THEN 'completed' ELSE 'updated' END AS action,
                           0 AS part
                    FROM pairs
                    WHERE (was_live OR is_live) AND (old_version IS DISTINCT FROM new_version OR was_live <> is_live)
                    UNION ALL
                    SELECT DISTINCT p.user_id, 'category', c.category, 'updated', 1
                    FROM pairs p
                    CROSS JOIN LATERAL (VALUES (CASE WHEN p.was_live THEN p.old_category END),
                                               (CASE WHEN p.is_live THEN p.new_category END)) AS c(category)
                    WHERE c.category IS NOT NULL
                      AND (p.was_live, p.old_category) IS DISTINCT FROM (p.is_live, p.new_category)
                      AND EXISTS (SELECT FROM public.categories k WHERE k.user_id = p.user_id AND k.id = c.category)
                )
                SELECT array_agg(user_id ORDER BY part, object_id), array_agg(kind ORDER BY part, object_id),
                       array_agg(object_id ORDER BY part, object_id), array_agg(action ORDER BY part, object_id)
                INTO owners, kinds, objects, actions FROM changes;
            ELSE
                WITH changes AS (
                    SELECT o.user_id, 'task' AS kind, o.id AS object_id, 'deleted' AS action, 0 AS part
                    FROM deleted o
                    UNION ALL
                    SELECT DISTINCT o.user_id, 'category', o.category_id, 'updated', 1
                    FROM deleted o
                    WHERE o.deleted_at IS NULL AND o.category_id IS NOT NULL
                      AND EXISTS (SELECT FROM public.categories k WHERE k.user_id = o.user_id AND k.id = o.category_id)
                )
                SELECT array_agg(user_id ORDER BY part, object_id), array_agg(kind ORDER BY part, object_id),
                       array_agg(object_id ORDER BY part, object_id), array_agg(action ORDER BY part, object_id)
                INTO owners, kinds, objects, actions FROM changes;
            END IF;
            PERFORM public.change_log_append(owners, kinds, objects, actions);
            RETURN NULL;
        END
        $fn$;

        CREATE FUNCTION change_log_categories() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
        AS $fn$
        DECLARE
            owners text[];
            objects uuid[];
            actions text[];
        BEGIN
            IF TG_OP = 'INSERT' THEN
                SELECT array_agg(n.user_id ORDER BY n.id), array_agg(n.id ORDER BY n.id), array_agg('created'::text)
                INTO owners, objects, actions FROM inserted n;
            ELSIF TG_OP = 'UPDATE' THEN
                SELECT array_agg(n.user_id ORDER BY n.id), array_agg(n.id ORDER BY n.id), array_agg('updated'::text)
                INTO owners, objects, actions
                FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE n.version IS DISTINCT FROM o.version;
            ELSE
                SELECT array_agg(o.user_id ORDER BY o.id), array_agg(o.id ORDER BY o.id), array_agg('deleted'::text)
                INTO owners, objects, actions FROM deleted o;
            END IF;
            PERFORM public.change_log_append(owners, array_fill('category'::text, ARRAY[coalesce(cardinality(owners), 0)]), objects, actions);
            RETURN NULL;
        END
        $fn$;

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
        ALTER FUNCTION change_log_append(text[], text[], uuid[], text[]) OWNER TO todo_changes;
        ALTER FUNCTION change_log_tasks() OWNER TO todo_changes;
        ALTER FUNCTION change_log_categories() OWNER TO todo_changes;
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
        DROP FUNCTION change_log_tasks(), change_log_categories(), change_log_append(text[], text[], uuid[], text[]);
        DROP POLICY users_change_numbers ON users;
        DROP POLICY categories_change_log ON categories;
        DROP POLICY tasks_publish ON tasks;
        DROP POLICY categories_publish ON categories;
        REVOKE ALL ON users, categories, tasks FROM todo_changes, todo_publisher;
        DROP TABLE change_log;
        REVOKE USAGE ON SCHEMA public FROM todo_changes, todo_publisher;
        ALTER TABLE users DROP COLUMN last_change_at, DROP COLUMN last_change;
        """
    )
