"""`todo-api migrate`: the Alembic revisions of infra/migrations, run on the configured database.

Used by the CLI, `todo-api serve` (the local gateway), the tests and bench. Tooling like
the rest of shared/local/: no function imports it, and it is left out of the layer.
"""

from __future__ import annotations

from shared.template import REPO_ROOT

MIGRATIONS = REPO_ROOT / "infra" / "migrations"


def migrate(revision: str = "head") -> None:
    """Brings the database at DATABASE_URL to `revision` (Alembic, under an advisory lock)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    command.upgrade(config, revision)
