"""Per-user limits: MAX_TASKS_PER_USER and MAX_CATEGORIES_PER_USER, race-free (409 quota_exceeded).

A small limit through the settings (the environment, as in Lambda); 20 creates at once at
the limit leave exactly the limit, and another user is never affected.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import db

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler


@pytest.fixture
def limits(monkeypatch):
    def set_limits(tasks: int = 10_000, categories: int = 500) -> None:
        monkeypatch.setenv("MAX_TASKS_PER_USER", str(tasks))
        monkeypatch.setenv("MAX_CATEGORIES_PER_USER", str(categories))
        db.reset()

    yield set_limits
    monkeypatch.undo()
    db.reset()


def concurrently(count: int, call):
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def _count(sql, table: str, user: str) -> int:
    return sql.run(f"SELECT count(*) FROM {table} WHERE user_id = :u", u=user)[0][0]


def test_one_task_more_than_the_limit_is_409_quota_exceeded_and_the_trash_counts(api, alice, bob, sql, limits):
    limits(tasks=3)
    first = api.create_task(alice, title="1")
    api.create_task(alice, title="2")
    api.create_task(alice, title="3")
    reply = api.post("/api/me/tasks", user=alice, json={"title": "4"})
    assert reply.status == 409 and reply.problem["code"] == "quota_exceeded", reply.body
    assert api.delete(f"/api/me/tasks/{first['id']}", user=alice).status == 204
    assert api.post("/api/me/tasks", user=alice, json={"title": "4"}).status == 409  # trashed still counts
    assert api.post("/api/me/tasks", user=bob, json={"title": "bob's"}).status == 201  # per user
    assert _count(sql, "tasks", alice) == 3
    # Purged for good (the cleanup), the room is back: the counter is an upper bound, recounted at the limit.
    db.flight(db.Query("DELETE FROM tasks WHERE id = $1::uuid", (first["id"],)), role=db.CLEANUP_ROLE)
    assert api.post("/api/me/tasks", user=alice, json={"title": "4"}).status == 201
    assert api.post("/api/me/tasks", user=alice, json={"title": "5"}).status == 409


def test_twenty_concurrent_creates_at_the_limit_leave_exactly_the_limit(api, alice, bob, sql, limits):
    limits(tasks=25, categories=7)
    for i in range(15):
        api.create_task(alice, title=f"before {i}")
    replies = concurrently(20, lambda i: api.post("/api/me/tasks", user=alice, json={"title": f"race {i}"}))
    assert sorted(r.status for r in replies) == [201] * 10 + [409] * 10, [r.body for r in replies if r.status not in (201, 409)]
    assert {r.problem["code"] for r in replies if r.status == 409} == {"quota_exceeded"}
    assert _count(sql, "tasks", alice) == 25
    replies = concurrently(20, lambda i: api.post("/api/me/categories", user=bob, json={"name": f"c{i}"}))
    assert sorted(r.status for r in replies) == [201] * 7 + [409] * 13
    assert _count(sql, "categories", bob) == 7


def test_a_recurring_tasks_successor_counts_against_the_limit(api, alice, sql, limits):
    limits(tasks=2)
    chore = api.create_task(alice, title="water", recurrence="FREQ=DAILY", due_at="2030-01-01T09:00:00Z")
    api.create_task(alice, title="other")
    reply = api.patch(f"/api/me/tasks/{chore['id']}/complete", user=alice, json={"completed": True})
    assert reply.status == 409 and reply.problem["code"] == "quota_exceeded"
    assert sql.run("SELECT completed FROM tasks WHERE id = CAST(:t AS uuid)", t=chore["id"]) == [[False]]  # nothing half-done


def test_deleted_categories_make_room_again(api, alice, limits):
    limits(categories=2)
    work = api.create_category(alice, "work")
    api.create_category(alice, "home")
    assert api.post("/api/me/categories", user=alice, json={"name": "trip"}).problem["code"] == "quota_exceeded"
    assert api.delete(f"/api/me/categories/{work['id']}", user=alice).status == 204
    assert api.post("/api/me/categories", user=alice, json={"name": "trip"}).status == 201
