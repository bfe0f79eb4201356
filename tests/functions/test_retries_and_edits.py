"""Safe retries (Idempotency-Key) and concurrent edits (If-Match), through the real handlers,
concurrently where it matters: threads, each with its own connection."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.idempotency import IN_FLIGHT_WAIT_MS

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler


def concurrently(count: int, call):
    """Runs `call(i)` in `count` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def key() -> str:
    return f"key-{uuid.uuid4()}"


# ---------------------------------------------------------------------------- Idempotency-Key


def test_a_retried_create_is_replayed_not_written_again(api, alice, sql):
    headers = {"idempotency-key": key()}
    first = api.post("/api/me/tasks", user=alice, json={"title": "once"}, headers=headers)
    again = api.post("/api/me/tasks", user=alice, json={"title": "once"}, headers=headers)
    assert (first.status, again.status) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.headers["location"] == first.headers["location"] and again.headers["etag"] == first.headers["etag"]
    assert sql.run("SELECT count(*) FROM tasks WHERE user_id = :u", u=alice) == [[1]]


def test_the_same_create_sent_20_times_at_once_writes_one_row_and_gets_20_identical_answers(api, alice, sql):
    headers = {"idempotency-key": key()}
    body = {"title": "stormy network", "tags": ["retry"]}
    replies = concurrently(20, lambda i: api.post("/api/me/tasks", user=alice, json=body, headers=headers))
    assert {r.status for r in replies} == {201}
    assert len({r.body for r in replies}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in replies) == 19
    assert sql.run("SELECT count(*) FROM tasks WHERE user_id = :u", u=alice) == [[1]]


def test_the_same_key_with_another_body_is_422_and_writes_nothing(api, alice, sql):
    headers = {"idempotency-key": key()}
    api.post("/api/me/tasks", user=alice, json={"title": "first"}, headers=headers)
    reply = api.post("/api/me/tasks", user=alice, json={"title": "second"}, headers=headers)
    assert reply.status == 422
    assert reply.problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert [row[0] for row in sql.run("SELECT title FROM tasks WHERE user_id = :u", u=alice)] == ["first"]


def test_the_same_key_on_another_route_is_422(api, alice):
    headers = {"idempotency-key": key()}
    task = api.post("/api/me/tasks", user=alice, json={"title": "t"}, headers=headers).json()
    assert api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice, headers=headers).status == 422


def test_keys_are_per_user(api, alice, bob, sql):
    headers = {"idempotency-key": "shared-key-name"}
    a = api.post("/api/me/tasks", user=alice, json={"title": "same"}, headers=headers)
    b = api.post("/api/me/tasks", user=bob, json={"title": "same"}, headers=headers)
    assert (a.status, b.status) == (201, 201) and a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers


def test_a_key_still_in_flight_is_409(api, alice, sql):
    """The first request holds its uncommitted claim; the retry waits a bounded time, then 409."""
    in_flight = key()
    api.create_task(alice)  # the user exists
    sql.run("BEGIN")
    sql.run(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, response_body, expires_at) "
        "VALUES (:u, :k, repeat('0', 64), 0, '', now() + interval '1 day')",
        u=alice, k=in_flight,
    )
    try:
        started = time.monotonic()
        reply = api.post("/api/me/tasks", user=alice, json={"title": "t"}, headers={"idempotency-key": in_flight})
        waited = time.monotonic() - started
    finally:
        sql.run("ROLLBACK")
    assert (reply.status, reply.problem["code"]) == (409, "conflict")
    assert IN_FLIGHT_WAIT_MS / 1000 <= waited < IN_FLIGHT_WAIT_MS / 1000 + 2
    assert sql.run("SELECT count(*) FROM tasks WHERE user_id = :u", u=alice) == [[1]]


def test_an_expired_record_lets_the_key_be_used_again(api, alice, sql):
    headers = {"idempotency-key": key()}
    first = api.post("/api/me/tasks", user=alice, json={"title": "old"}, headers=headers).json()
    sql.run("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE user_id = :u", u=alice)
    again = api.post("/api/me/tasks", user=alice, json={"title": "old"}, headers=headers)
    assert again.status == 201 and "idempotent-replayed" not in again.headers and again.json()["id"] != first["id"]


def test_records_live_for_the_configured_ttl(api, alice, sql):
    api.post("/api/me/tasks", user=alice, json={"title": "t"}, headers={"idempotency-key": key()})
    [[hours]] = sql.run("SELECT extract(epoch FROM expires_at - created_at) / 3600 FROM idempotency_keys WHERE user_id = :u", u=alice)
    assert round(float(hours), 3) == 24


def test_a_failed_request_leaves_no_record_and_its_retry_runs_again(api, alice, bob, sql):
    headers = {"idempotency-key": key()}
    theirs = api.create_category(bob, "Bob's")
    refused = api.post("/api/me/tasks", user=alice, json={"title": "t", "category_id": theirs["id"]}, headers=headers)
    assert refused.status == 422
    assert sql.run("SELECT count(*) FROM idempotency_keys WHERE user_id = :u", u=alice) == [[0]]
    mine = api.create_category(alice, "Mine")
    fixed = api.post("/api/me/tasks", user=alice, json={"title": "t", "category_id": mine["id"]}, headers=headers)
    assert fixed.status == 201


def test_a_retried_toggle_is_not_toggled_twice(api, alice):
    task = api.create_task(alice)
    headers = {"idempotency-key": key()}
    first = api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice, headers=headers)
    again = api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice, headers=headers)
    assert first.json()["completed"] is True and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert api.get(f"/api/me/tasks/{task['id']}", user=alice).json()["completed"] is True


def test_a_retried_restore_is_replayed_not_404(api, alice):
    task = api.create_task(alice)
    api.delete(f"/api/me/tasks/{task['id']}", user=alice)
    headers = {"idempotency-key": key()}
    first = api.post(f"/api/me/trash/{task['id']}/restore", user=alice, headers=headers)
    again = api.post(f"/api/me/trash/{task['id']}/restore", user=alice, headers=headers)
    assert (first.status, again.status) == (200, 200) and again.json() == first.json()


def test_a_retried_category_create_is_replayed_not_409(api, alice):
    headers = {"idempotency-key": key()}
    first = api.post("/api/me/categories", user=alice, json={"name": "Once"}, headers=headers)
    again = api.post("/api/me/categories", user=alice, json={"name": "Once"}, headers=headers)
    assert (first.status, again.status) == (201, 201) and again.json() == first.json()


@pytest.mark.parametrize("bad", ["", " spaced key", "x" * 256, "clé", "tab\tkey"])
def test_a_malformed_key_is_400(api, alice, bad):
    reply = api.post("/api/me/tasks", user=alice, json={"title": "t"}, headers={"idempotency-key": bad})
    assert (reply.status, reply.problem["code"]) == (400, "bad_request")


def test_other_routes_ignore_the_header(api, alice, sql):
    task = api.create_task(alice, title="v1")
    headers = {"idempotency-key": key()}
    api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"title": "v2"}, headers=headers)
    second = api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"title": "v3"}, headers=headers)
    assert second.status == 200 and second.json()["title"] == "v3"
    assert sql.run("SELECT count(*) FROM idempotency_keys WHERE user_id = :u", u=alice) == [[0]]


# ---------------------------------------------------------------------------- If-Match


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_two_writers_with_the_same_if_match_exactly_one_wins(api, alice, sql, method):
    task = api.create_task(alice, title="original")
    path = f"/api/me/tasks/{task['id']}"
    replies = concurrently(
        2, lambda i: api.request(method, path, user=alice, json={"title": f"writer {i}"}, headers={"if-match": '"1"'})
    )
    assert sorted(r.status for r in replies) == [200, 412]
    winner = next(r for r in replies if r.status == 200).json()
    loser = next(r for r in replies if r.status == 412)
    assert loser.headers["etag"] == '"2"'
    assert sql.run("SELECT title, version FROM tasks WHERE id = :i", i=task["id"]) == [[winner["title"], 2]]


def test_complete_and_delete_race_on_the_same_version(api, alice, sql):
    task = api.create_task(alice)
    path = f"/api/me/tasks/{task['id']}"
    calls = [
        lambda: api.patch(path + "/complete", user=alice, headers={"if-match": '"1"'}),
        lambda: api.delete(path, user=alice, headers={"if-match": '"1"'}),
    ]
    replies = concurrently(2, lambda i: calls[i]())
    # Complete first: the delete's version is stale (412). Delete first: the task is in the
    # trash, invisible to complete (404). Never both.
    assert sorted(r.status for r in replies) in ([200, 412], [204, 404])
    [[version]] = sql.run("SELECT version FROM tasks WHERE id = :i", i=task["id"])
    assert version == 2
