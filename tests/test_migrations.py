"""Migrations on a database that already holds data: what a deployed API meets."""

from __future__ import annotations

import pg8000.native
from alembic import command
from alembic.config import Config

from shared.local.migrate import MIGRATIONS, migrate
from tests.conftest import database_url_set, migrated_database, server_url


def _downgrade(revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    command.downgrade(config, revision)


def test_a_task_answer_stored_for_a_replay_before_subtasks_still_replays_after_0009(postgres_server, api, alice):
    """An Idempotency-Key's stored answer written before 0009 has no `parent_id` or
    `position`; a retry after the deploy must still get it back (not a 500)."""
    body = {"title": "sent before the deploy"}
    headers = {"Idempotency-Key": "before-0009"}
    with migrated_database(postgres_server, "todo_migrations") as name, database_url_set(server_url(postgres_server, name)):
        first = api.post("/api/me/tasks", user=alice, json=body, headers=headers)
        assert first.status == 201, first.body
        # Back to 0008, and the answer as the code of then stored it.
        _downgrade("0008")
        connection = pg8000.native.Connection(**postgres_server, database=name)
        try:
            connection.run(
                "UPDATE idempotency_keys SET response_body = (response_body::jsonb - 'parent_id' - 'position')::text"
            )
            (stored,) = connection.run("SELECT response_body::jsonb ? 'position' FROM idempotency_keys")
            assert stored == [False]
        finally:
            connection.close()

        migrate()

        replay = api.post("/api/me/tasks", user=alice, json=body, headers=headers)
        assert replay.status == 201, replay.body
        assert replay.headers.get("idempotent-replayed") == "true"
        task = replay.json()
        assert task["id"] == first.json()["id"] and task["parent_id"] is None
        assert task["position"] == api.get(f"/api/me/tasks/{task['id']}", user=alice).json()["position"]

