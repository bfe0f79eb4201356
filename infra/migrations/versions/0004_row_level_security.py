"""The second wall: row-level security keyed to the caller of each transaction.

The application's queries all filter by owner; these policies make a forgotten filter
harmless. Each request's transaction runs as `todo_app` (`set_config('role', ..., true)`
in shared/db.py), a role that owns nothing and is not a superuser, so the policies bind
it; the caller's id is the transaction-local setting `app.user_id` (safe behind Neon's
transaction pooler). The scheduled cleanup runs as `todo_cleanup`, which sees only
trashed tasks and expired idempotency records. FORCE makes the policies bind the tables'
owner too; only a superuser (migrations, operators) passes them.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OWNED = {"tasks": "user_id", "categories": "user_id", "idempotency_keys": "user_id", "users": "id"}


def upgrade() -> None:
    # Roles are cluster-wide: another database of the same server may have made them.
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todo_app') THEN
                CREATE ROLE todo_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todo_cleanup') THEN
                CREATE ROLE todo_cleanup NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        END $$;
        -- The login role (whoever runs the functions) may act as either, per transaction.
        GRANT todo_app, todo_cleanup TO CURRENT_USER;
        GRANT USAGE ON SCHEMA public TO todo_app, todo_cleanup;
        GRANT SELECT, INSERT, UPDATE, DELETE ON tasks, categories, users, idempotency_keys TO todo_app;
        -- SELECT ... FOR UPDATE needs UPDATE; the policies below keep it to expired rows.
        GRANT SELECT, UPDATE, DELETE ON tasks, idempotency_keys TO todo_cleanup;
        """
    )
    for table, owner_column in _OWNED.items():
        op.execute(
            f"""
            ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
            ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
            CREATE POLICY {table}_caller_only ON {table} TO todo_app
                USING ({owner_column} = current_setting('app.user_id', true))
                WITH CHECK ({owner_column} = current_setting('app.user_id', true));
            """
        )
    op.execute(
        """
        CREATE POLICY tasks_expired_trash ON tasks TO todo_cleanup USING (deleted_at IS NOT NULL);
        CREATE POLICY idempotency_keys_expired ON idempotency_keys TO todo_cleanup USING (expires_at <= now());
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP POLICY tasks_expired_trash ON tasks;
        DROP POLICY idempotency_keys_expired ON idempotency_keys;
        """
    )
    for table in _OWNED:
        op.execute(
            f"""
            DROP POLICY {table}_caller_only ON {table};
            ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
            ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
            """
        )
    op.execute(
        """
        REVOKE ALL ON tasks, categories, users, idempotency_keys FROM todo_app, todo_cleanup;
        REVOKE USAGE ON SCHEMA public FROM todo_app, todo_cleanup;
        """
    )
