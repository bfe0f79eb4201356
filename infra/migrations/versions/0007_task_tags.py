"""`tag` through a side table of plain columns: `task_tags`, no GIN, no SECURITY DEFINER.

The per-user GIN index `(user_id, tags)` made `tag` cost more for a bigger user: a GIN
index keeps one posting tree per key, and the query intersects the tag's postings with
the caller's `user_id` posting tree (235 index pages at 1M tasks against 5 for a 1k user),
then rechecks the heap. `task_tags` holds one row per (owner, tag, live task), and its
primary key `(user_id, tag, task_id)` answers `tag` with an index-only range scan whose
cost is the caller's matches, whatever the caller's number of tasks. Its columns are
plain and compared with `=` (leakproof), so the filter is an Index Cond under the policy
(docs/decisions/0007): `id IN (SELECT task_id FROM task_tags WHERE user_id = ... AND tag = ...)`.

- Only LIVE tasks' tags are kept (a trashed task has no rows): the table is exactly the
  candidate set of a list (every list index is `WHERE deleted_at IS NULL`), so a user with
  a full trash does not pay for it; trash and restore are one row-level trigger call.
- Maintained by triggers on `tasks`, inside the writing statement (no round trip):
  AFTER INSERT per statement, set-based from the transition table (a bulk insert is one
  INSERT ... SELECT); AFTER UPDATE OF tags, deleted_at per row, only when the live tag set
  changed (WHEN). The functions are SECURITY INVOKER: they write as the caller (todo_app),
  so the policy's WITH CHECK holds them to the caller's own rows. Roles that never write
  `tags` or `deleted_at` (todo_cleanup, todo_reminders) never fire them.
- A purge (`DELETE FROM tasks`, as todo_app or todo_cleanup) removes a task's rows by
  `ON DELETE CASCADE`: Postgres runs the referential action as the owner of `task_tags`
  with row-level security not forced (ri_triggers.c), so it needs no grant to the deleting
  role and no policy for it; a trashed task has no rows anyway.
- FORCEd row-level security with the caller policy of every owned table.
- `caller_task_ids_tagged` and `ix_tasks_user_tags` go; `q` keeps its SECURITY DEFINER
  function and its per-user trigram index (0005).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE task_tags (
            user_id varchar(255) NOT NULL,
            tag varchar(50) NOT NULL,
            task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            PRIMARY KEY (user_id, tag, task_id)
        );
        -- A task's own rows, for the trigger's deletes and the cascade.
        CREATE INDEX ix_task_tags_task ON task_tags (task_id);

        -- The backfill, before row-level security is forced (the owner has no policy).
        INSERT INTO task_tags (user_id, tag, task_id)
        SELECT DISTINCT t.user_id, tag, t.id FROM tasks t, unnest(t.tags) AS tag WHERE t.deleted_at IS NULL;

        CREATE FUNCTION task_tags_inserted() RETURNS trigger
            LANGUAGE plpgsql SECURITY INVOKER
            SET search_path = pg_catalog, pg_temp
        AS $fn$
        BEGIN
            INSERT INTO public.task_tags (user_id, tag, task_id)
            SELECT DISTINCT n.user_id, tag, n.id FROM inserted n, unnest(n.tags) AS tag WHERE n.deleted_at IS NULL
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END
        $fn$;

        CREATE FUNCTION task_tags_updated() RETURNS trigger
            LANGUAGE plpgsql SECURITY INVOKER
            SET search_path = pg_catalog, pg_temp
        AS $fn$
        DECLARE
            had varchar(50)[] := CASE WHEN OLD.deleted_at IS NULL THEN OLD.tags ELSE '{}' END;
            wanted varchar(50)[] := CASE WHEN NEW.deleted_at IS NULL THEN NEW.tags ELSE '{}' END;
        BEGIN
            DELETE FROM public.task_tags
            WHERE user_id = OLD.user_id AND task_id = OLD.id AND tag = ANY (had) AND NOT tag = ANY (wanted);
            INSERT INTO public.task_tags (user_id, tag, task_id)
            SELECT DISTINCT NEW.user_id, tag, NEW.id FROM unnest(wanted) AS tag WHERE NOT tag = ANY (had)
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END
        $fn$;

        CREATE TRIGGER task_tags_inserted AFTER INSERT ON tasks
            REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION task_tags_inserted();
        CREATE TRIGGER task_tags_updated AFTER UPDATE OF tags, deleted_at ON tasks FOR EACH ROW
            WHEN (OLD.tags IS DISTINCT FROM NEW.tags OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL))
            EXECUTE FUNCTION task_tags_updated();

        GRANT SELECT, INSERT, DELETE ON task_tags TO todo_app;
        ALTER TABLE task_tags ENABLE ROW LEVEL SECURITY;
        ALTER TABLE task_tags FORCE ROW LEVEL SECURITY;
        CREATE POLICY task_tags_caller_only ON task_tags TO todo_app
            USING (user_id = current_setting('app.user_id', true))
            WITH CHECK (user_id = current_setting('app.user_id', true));

        DROP FUNCTION caller_task_ids_tagged(text);
        DROP INDEX ix_tasks_user_tags;
        ANALYZE task_tags;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE INDEX ix_tasks_user_tags ON tasks USING gin (user_id, tags) WHERE deleted_at IS NULL;
        CREATE FUNCTION caller_task_ids_tagged(tag text) RETURNS SETOF uuid
            LANGUAGE sql STABLE STRICT SECURITY DEFINER ROWS 100
            SET search_path = pg_catalog, pg_temp
        AS $fn$
            SELECT t.id FROM public.tasks t
            WHERE t.user_id = current_setting('app.user_id', true) AND t.deleted_at IS NULL
              AND t.tags @> ARRAY[tag]::varchar(50)[]
        $fn$;
        REVOKE ALL ON FUNCTION caller_task_ids_tagged(text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION caller_task_ids_tagged(text) TO todo_app;
        GRANT CREATE ON SCHEMA public TO todo_search;
        ALTER FUNCTION caller_task_ids_tagged(text) OWNER TO todo_search;
        REVOKE CREATE ON SCHEMA public FROM todo_search;

        DROP TRIGGER task_tags_updated ON tasks;
        DROP TRIGGER task_tags_inserted ON tasks;
        DROP FUNCTION task_tags_updated(), task_tags_inserted();
        DROP TABLE task_tags;
        """
    )
