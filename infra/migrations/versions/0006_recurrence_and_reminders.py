"""Recurring tasks and reminders.

- `recurrence` (an RRULE value), `timezone` (IANA), `series_id` (generated: the first task
  of its series, `series_root`, or its own id), `rule_start` (the rule's DTSTART: the due_at of the task
  where the rule was set), and the rule's occurrences strictly after `occurrences_after`
  as Python's `dateutil` expanded them (`occurrences`, at most 500; `occurrences_complete`
  when they are all that is left). SQL picks a successor's due_at from them in the completing statement (one
  flight); a list that is missing or too short makes that statement stop with SQLSTATE
  TD001, and the data layer expands the rule and tries again (docs/decisions/0008).
- `successor_of`: the predecessor's id, UNIQUE: a task has at most one successor, ever.
- `remind_at` / `reminded_at`: a reminder is due when remind_at has passed, the task is
  open and live, and reminded_at is null; a partial index holds exactly those, in order.
  The `Reminders` function runs as `todo_reminders`, which sees only due reminders (and
  those its own transaction has just marked sent) and may only mark a due one sent now.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE tasks
            ADD COLUMN recurrence varchar(500),
            ADD COLUMN timezone varchar(64) NOT NULL DEFAULT 'UTC',
            ADD COLUMN series_root uuid,  -- the series' first task; null on that first task itself
            ADD COLUMN rule_start timestamptz,
            ADD COLUMN occurrences timestamptz[],
            ADD COLUMN occurrences_after timestamptz,
            ADD COLUMN occurrences_complete boolean NOT NULL DEFAULT false,
            ADD COLUMN successor_of uuid,
            ADD COLUMN remind_at timestamptz,
            ADD COLUMN reminded_at timestamptz;
        ALTER TABLE tasks
            ADD COLUMN series_id uuid GENERATED ALWAYS AS (coalesce(series_root, id)) STORED,
            ADD CONSTRAINT ck_tasks_recurrence_needs_due_at CHECK (recurrence IS NULL OR due_at IS NOT NULL),
            ADD CONSTRAINT ck_tasks_remind_before_due CHECK (remind_at IS NULL OR due_at IS NULL OR remind_at <= due_at),
            ADD CONSTRAINT uq_tasks_successor_of UNIQUE (successor_of);

        CREATE INDEX ix_tasks_due_reminders ON tasks (remind_at)
            WHERE remind_at IS NOT NULL AND reminded_at IS NULL AND NOT completed AND deleted_at IS NULL;

        CREATE FUNCTION occurrences_needed(task uuid) RETURNS boolean
            LANGUAGE plpgsql VOLATILE
            SET search_path = pg_catalog, pg_temp
        AS $fn$
        BEGIN
            RAISE EXCEPTION 'the occurrences of task % must be expanded first', task
                USING ERRCODE = 'TD001', DETAIL = task::text;
        END
        $fn$;
        GRANT EXECUTE ON FUNCTION occurrences_needed(uuid) TO todo_app;

        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todo_reminders') THEN
                CREATE ROLE todo_reminders NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        END $$;
        GRANT todo_reminders TO CURRENT_USER;
        GRANT USAGE ON SCHEMA public TO todo_reminders;
        GRANT SELECT (id, user_id, title, due_at, remind_at, reminded_at, completed, deleted_at) ON tasks TO todo_reminders;
        GRANT UPDATE (reminded_at) ON tasks TO todo_reminders;
        -- What the role sees: the reminders due now, and the ones its own transaction
        -- has just marked (reminded_at = now(), the transaction's start): an UPDATE whose
        -- WHERE reads the row must see the new row too, or Postgres refuses it (RLS applies
        -- the SELECT policies to the updated row). What it may change: a due reminder, only
        -- into "sent now" (and only reminded_at: the column grant).
        CREATE POLICY tasks_due_reminders ON tasks FOR SELECT TO todo_reminders
            USING ((remind_at <= now() AND reminded_at IS NULL AND NOT completed AND deleted_at IS NULL)
                   OR reminded_at = now());
        CREATE POLICY tasks_mark_reminded ON tasks FOR UPDATE TO todo_reminders
            USING (remind_at <= now() AND reminded_at IS NULL AND NOT completed AND deleted_at IS NULL)
            WITH CHECK (reminded_at = now());
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP POLICY tasks_mark_reminded ON tasks;
        DROP POLICY tasks_due_reminders ON tasks;
        REVOKE ALL ON tasks FROM todo_reminders;
        REVOKE USAGE ON SCHEMA public FROM todo_reminders;
        DROP FUNCTION occurrences_needed(uuid);
        DROP INDEX ix_tasks_due_reminders;
        ALTER TABLE tasks
            DROP CONSTRAINT uq_tasks_successor_of,
            DROP CONSTRAINT ck_tasks_remind_before_due,
            DROP CONSTRAINT ck_tasks_recurrence_needs_due_at,
            DROP COLUMN reminded_at, DROP COLUMN remind_at, DROP COLUMN successor_of,
            DROP COLUMN occurrences_complete, DROP COLUMN occurrences_after, DROP COLUMN occurrences, DROP COLUMN rule_start,
            DROP COLUMN series_id, DROP COLUMN series_root, DROP COLUMN timezone, DROP COLUMN recurrence;
        """
    )
