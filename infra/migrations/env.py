"""Alembic environment: migrations run through the project's own engine (TLS, retries).

Run by `todo-api migrate`. A transaction-level advisory lock makes two migrations started
at once run one after the other instead of racing.
"""

from alembic import context
from sqlalchemy import text

from shared.connect import migration_engine

MIGRATION_LOCK_ID = 0x7000_0001


def run_migrations_online() -> None:
    with migration_engine().connect() as connection:
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline (SQL script) migrations are not supported; run `todo-api migrate`.")
run_migrations_online()
