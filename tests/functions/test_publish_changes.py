"""PublishChanges: the change log on the bus, through the real handler on real Postgres,
EventBridge through moto (tests/functions/test_reminders.py's recorder); `todo-api publish`;
and the cleanup's pruning of the log.

The module has a database of its own, emptied before every test: a run publishes every
user's changes, so counting what it put needs a database that holds only the test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pg8000.native
import pytest
from moto import mock_aws

from shared import db, events, publish_changes
from shared.cleanup import run_cleanup
from shared.template import REPO_ROOT, functions
from tests.conftest import database_url_set, migrated_database
from tests.functions.test_reminders import BUS, Bus, Context
from tests.functions.test_retries_and_edits import concurrently

pytestmark = pytest.mark.pooler

EVENT = json.loads((REPO_ROOT / "events" / "PublishChanges.json").read_text())


@pytest.fixture(scope="module")
def changes_database_name(postgres_server: dict[str, Any], database_url: str) -> Iterator[str]:
    with migrated_database(postgres_server, "todo_changes") as name:
        yield name


@pytest.fixture(scope="module")
def changes_database(changes_database_name: str, app_url: Callable[[str], str]) -> Iterator[str]:
    with database_url_set(app_url(changes_database_name)) as url:
        yield url


@pytest.fixture
def sql(postgres_server: dict[str, Any], changes_database_name: str, changes_database: str) -> Iterator[pg8000.native.Connection]:
    connection = pg8000.native.Connection(**postgres_server, database=changes_database_name)
    connection.run("TRUNCATE task_tags, tasks, categories, idempotency_keys, change_log, users")
    yield connection
    connection.close()


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    for variable, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(variable, value)
    with mock_aws():
        client = boto3.client("events", region_name="us-east-1")
        client.create_event_bus(Name=BUS)
        recorder = Bus(client, key="event_id")
        publisher = events.EventBridgePublisher(BUS, recorder, sleep=lambda seconds: None)
        monkeypatch.setattr(events, "publisher", lambda: publisher)
        yield recorder


def invoke(context: Context | None = None) -> dict[str, Any]:
    return functions()["PublishChanges"].load_handler()(EVENT, context or Context())


def log_ids(sql, user: str, *, published: bool | None = None) -> list[str]:
    """The event ids of a user's log entries, in log order."""
    condition = "" if published is None else f" AND published_at IS {'NOT ' if published else ''}NULL"
    rows = sql.run(f"SELECT seq FROM change_log WHERE user_id = :u{condition} ORDER BY seq", u=user)
    return [publish_changes.event_id(user, row[0]) for row in rows]


def add_tasks(sql, user: str, count: int) -> None:
    """`count` tasks (one log entry each) in one statement."""
    sql.run("INSERT INTO users (id) VALUES (:u) ON CONFLICT DO NOTHING", u=user)
    sql.run("INSERT INTO tasks (id, user_id, title) SELECT gen_random_uuid(), :u, 't' || i FROM generate_series(1, :n) i", u=user, n=count)


def put_in_order(bus: Bus, user: str) -> list[str]:
    return [detail["event_id"] for detail in bus.put if detail["user_id"] == user]


# ---------------------------------------------------------------------------- what is published


def test_each_change_is_put_once_in_order_per_user_with_the_contracts_detail(api, sql, bus, alice, bob):
    home = api.create_category(alice, "home")
    task = api.create_task(alice, title="milk", category_id=home["id"])
    api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"title": "oat milk"})
    api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice)
    api.delete(f"/api/me/tasks/{task['id']}", user=alice)
    api.post(f"/api/me/trash/{task['id']}/restore", user=alice)
    api.patch(f"/api/me/categories/{home['id']}", user=alice, json={"color": "#00ff00"})
    bobs = api.create_task(bob, title="bob's")
    api.delete(f"/api/me/categories/{home['id']}", user=alice)

    assert invoke() == {"published": len(log_ids(sql, alice)) + len(log_ids(sql, bob)), "finished": True}

    for user in (alice, bob):
        assert put_in_order(bus, user) == log_ids(sql, user)  # every change, in its user's order
    types = [(d["_entry"]["DetailType"], d["kind"], d["op"]) for d in bus.put if d["user_id"] == alice]
    assert types == [
        ("Category Created", "category", "upsert"),
        ("Task Created", "task", "upsert"),
        ("Category Updated", "category", "upsert"),
        ("Task Updated", "task", "upsert"),
        ("Task Completed", "task", "upsert"),
        ("Task Deleted", "task", "delete"),
        ("Category Updated", "category", "upsert"),
        ("Task Restored", "task", "upsert"),
        ("Category Updated", "category", "upsert"),
        ("Category Updated", "category", "upsert"),
        ("Category Deleted", "category", "delete"),
        ("Task Updated", "task", "upsert"),
    ]
    (bobs_event,) = [d for d in bus.put if d["user_id"] == bob]
    assert {k: v for k, v in bobs_event.items() if k != "_entry"} == {
        "event_id": log_ids(sql, bob)[0],
        "user_id": bob,
        "kind": "task",
        "op": "upsert",
        "id": bobs["id"],
        "data": api.get(f"/api/me/tasks/{bobs['id']}", user=bob).json(),  # as GET shows it
        "at": bobs_event["at"],
    }
    assert bobs_event["_entry"]["Source"] == "todo-api" and bobs_event["_entry"]["EventBusName"] == BUS
    assert all(d["data"] is None for d in bus.put if d["op"] == "delete")
    assert log_ids(sql, alice, published=False) == log_ids(sql, bob, published=False) == []
    # Published once: the next run has nothing.
    assert invoke() == {"published": 0, "finished": True}
    assert len(bus.put) == len(bus.attempts)


def test_two_runs_at_once_never_put_one_change_twice_nor_a_users_change_before_an_earlier_one(sql, bus, alice, bob):
    users = [alice, bob] + [f"{alice}-{i}" for i in range(6)]
    for user in users:
        add_tasks(sql, user, 130)  # more than one batch holds of a user (PER_USER)
    add_tasks(sql, alice, 120)

    results = concurrently(2, lambda i: publish_changes.run_publish(batch_users=2))

    put = [detail["event_id"] for detail in bus.put]
    assert len(put) == len(set(put)), "a change was put twice"
    assert sum(result["published"] for result in results) == len(put) == 8 * 130 + 120
    for user in users:
        assert put_in_order(bus, user) == log_ids(sql, user)
    assert log_ids(sql, alice, published=False) == []


def test_a_failed_change_is_put_again_with_the_same_event_id_and_its_users_later_changes_wait(sql, bus, alice, bob):
    add_tasks(sql, alice, 5)
    add_tasks(sql, bob, 2)
    ids = log_ids(sql, alice)
    bus.fail({ids[2]})

    assert invoke() == {"published": 2 + 2, "finished": False}
    assert log_ids(sql, alice, published=True) == ids[:2]  # up to the failed one, not past it
    assert log_ids(sql, bob, published=False) == []  # another user is not held up
    first_try = [d["event_id"] for d in bus.attempts if d["user_id"] == alice]
    assert ids[2] in first_try
    # Its round's later ones may have been put (a round goes together), but stay unmarked.
    assert put_in_order(bus, alice) == [ids[0], ids[1], *ids[3:]]

    bus.fail(set())
    before = len(put_in_order(bus, alice))
    assert invoke() == {"published": 3, "finished": True}
    assert put_in_order(bus, alice)[before:] == ids[2:]  # the same ids, in order from the failed one
    assert log_ids(sql, alice, published=False) == []


def test_a_run_that_dies_after_putting_puts_the_same_events_again(sql, bus, alice, monkeypatch):
    add_tasks(sql, alice, 3)
    real = events.publisher()

    class PutsThenDies:
        def publish(self, batch):
            real.publish(batch)
            raise RuntimeError("the Lambda died before its COMMIT")

    with pytest.raises(RuntimeError):
        publish_changes.run_publish(publisher=PutsThenDies())
    assert log_ids(sql, alice, published=False) == log_ids(sql, alice)  # nothing marked
    assert publish_changes.run_publish() == {"published": 3, "finished": True}
    assert [d["event_id"] for d in bus.put] == log_ids(sql, alice) * 2  # at least once, same ids


def test_nothing_is_published_from_a_transaction_that_rolled_back(api, sql, bus, alice):
    api.create_task(alice, title="kept")
    insert = db.Query("INSERT INTO tasks (id, user_id, title) VALUES (gen_random_uuid(), $1, 'rolled back')", (alice,))
    with pytest.raises(db.QueryFailed):
        db.flight(insert, db.Query("SELECT 1 / 0"), user_id=alice)
    refused = api.post("/api/me/tasks", user=alice, json={"title": "x", "category_id": "00000000-0000-0000-0000-000000000000"})
    assert refused.status == 422
    assert invoke() == {"published": 1, "finished": True}
    assert [d["data"]["title"] for d in bus.put] == ["kept"]
    assert sql.run("SELECT count(*) FROM change_log") == [[1]]


# ---------------------------------------------------------------------------- the cleanup


def test_the_cleanup_appends_a_delete_for_each_purge_and_prunes_only_published_old_entries(api, sql, bus, alice, bob, monkeypatch):
    task = api.create_task(alice)
    api.delete(f"/api/me/tasks/{task['id']}", user=alice)
    cursor = api.get("/api/me/changes", user=alice).json()["next_cursor"]
    api.create_task(bob)
    sql.run("UPDATE tasks SET deleted_at = now() - interval '40 days' WHERE id = :id", id=task["id"])
    assert run_cleanup()["tasks_deleted"] == 1
    assert [row[0] for row in sql.run("SELECT action FROM change_log WHERE user_id = :u ORDER BY seq", u=alice)] == [
        "created", "deleted", "deleted",
    ]  # fmt: skip
    assert publish_changes.run_publish()["published"] == 4
    api.create_task(alice, title="new")  # unpublished: never pruned, however old
    sql.run("UPDATE change_log SET at = at - interval '10 days'")
    monkeypatch.setenv("CHANGES_RETENTION_DAYS", "7")
    db.reset()
    try:
        assert run_cleanup()["finished"] is True
    finally:
        monkeypatch.undo()
        db.reset()
    assert sql.run("SELECT user_id = :a, seq FROM change_log ORDER BY 1, 2", a=alice) == [[True, 4]]
    reply = api.get("/api/me/changes", user=alice, query={"cursor": cursor})
    assert reply.status == 410 and reply.problem["code"] == "resync_required"


def test_the_cleanup_role_may_prune_only_published_entries(sql, alice):
    add_tasks(sql, alice, 2)
    sql.run("UPDATE change_log SET published_at = now() WHERE seq = 1")
    sql.run("BEGIN; SET LOCAL ROLE todo_cleanup")
    try:
        assert sql.run("DELETE FROM change_log RETURNING seq") == [[1]]
    finally:
        sql.run("ROLLBACK")


# ---------------------------------------------------------------------------- command line


def test_todo_api_publish_prints_one_json_object_and_writes_the_local_events(sql, changes_database, alice, tmp_path):
    add_tasks(sql, alice, 3)
    env = {k: v for k, v in os.environ.items() if k != "EVENT_BUS_NAME"}
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "publish"],
        cwd=REPO_ROOT,
        env={**env, "DATABASE_URL": changes_database, "TODO_API_LOCAL_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and json.loads(result.stdout) == {"published": 3, "finished": True}
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [line["detail"]["event_id"] for line in lines] == log_ids(sql, alice)
    assert {line["detail-type"] for line in lines} == {"Task Created"}
    assert functions()["PublishChanges"].schedules and not functions()["PublishChanges"].routes
