"""Task routes through their real Lambda handlers, on real Postgres, with two users."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler


def tasks_path(user: str, task_id: str | None = None, suffix: str = "") -> str:
    return f"/api/{user}/tasks" + (f"/{task_id}" if task_id else "") + suffix


# ---------------------------------------------------------------------------- create


def test_create_returns_201_with_location_etag_and_defaults(api, alice, sql):
    # Given / When
    reply = api.post(tasks_path("me"), user=alice, json={"title": "  Buy milk  ", "tags": ["x", "y", "x"]})

    # Then
    assert reply.status == 201
    task = reply.json()
    assert reply.headers["location"] == f"/api/me/tasks/{task['id']}"
    assert reply.headers["etag"] == '"1"'
    assert task["title"] == "Buy milk"
    assert task["tags"] == ["x", "y"]
    assert (task["completed"], task["completed_at"], task["priority"], task["version"]) == (False, None, "medium", 1)
    assert task["description"] is None and task["due_at"] is None and task["category_id"] is None
    assert task["created_at"].endswith("Z") and task["created_at"] == task["updated_at"]
    assert sql.run("SELECT id, email FROM users WHERE id = :u", u=alice) == [[alice, f"{alice}@example.com"]]


def test_create_stores_due_at_and_answers_it_in_utc(api, alice):
    task = api.create_task(alice, due_at="2026-12-01T10:00:00+02:00", priority="high", completed=True)
    assert task["due_at"] == "2026-12-01T08:00:00Z"
    assert task["priority"] == "high"
    assert task["completed"] is True and task["completed_at"] is not None


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "title"]),
        ({"title": "   "}, ["body", "title"]),
        ({"title": "x" * 201}, ["body", "title"]),
        ({"title": 5}, ["body", "title"]),
        ({"title": "a\x00b"}, ["body", "title"]),
        ({"title": "t", "description": "d" * 4001}, ["body", "description"]),
        ({"title": "t", "description": "nul\x00"}, ["body", "description"]),
        ({"title": "t", "tags": [f"t{i}" for i in range(21)]}, ["body", "tags"]),
        ({"title": "t", "tags": ["x" * 51]}, ["body", "tags", 0]),
        ({"title": "t", "tags": [""]}, ["body", "tags", 0]),
        ({"title": "t", "tags": ["a\x00"]}, ["body", "tags", 0]),
        ({"title": "t", "tags": "work"}, ["body", "tags"]),
        ({"title": "t", "priority": "urgent"}, ["body", "priority"]),
        ({"title": "t", "completed": "true"}, ["body", "completed"]),
        ({"title": "t", "completed": 1}, ["body", "completed"]),
        ({"title": "t", "due_at": "2026-12-01T10:00:00"}, ["body", "due_at"]),
        ({"title": "t", "due_at": "tomorrow"}, ["body", "due_at"]),
        ({"title": "t", "due_at": 1790000000}, ["body", "due_at"]),
        ({"title": "t", "category_id": "not-a-uuid"}, ["body", "category_id"]),
        ({"title": "t", "colour": "red"}, ["body", "colour"]),
        ({"title": "t", "id": str(uuid.uuid4())}, ["body", "id"]),
        ({"title": "t", "user_id": "someone-else"}, ["body", "user_id"]),
        ({"title": "t", "version": 7}, ["body", "version"]),
        ({"title": "t", "created_at": "2020-01-01T00:00:00Z"}, ["body", "created_at"]),
        ({"title": "t", "completed_at": "2020-01-01T00:00:00Z"}, ["body", "completed_at"]),
    ],
)
def test_create_refuses_each_broken_rule_with_422_naming_the_field(api, alice, sql, body, loc):
    reply = api.post(tasks_path("me"), user=alice, json=body)
    assert reply.status == 422, reply.body
    problem = reply.problem
    assert problem["code"] == "validation_error" and problem["status"] == 422
    assert loc in [error["loc"] for error in problem["errors"]]
    assert sql.run("SELECT count(*) FROM tasks WHERE user_id = :u", u=alice) == [[0]]


def test_create_with_another_users_category_is_422_and_writes_nothing(api, alice, bob, sql):
    bobs = api.create_category(bob, "Bob's")
    reply = api.post(tasks_path("me"), user=alice, json={"title": "t", "category_id": bobs["id"]})
    assert reply.status == 422
    assert reply.problem["errors"][0]["loc"] == ["body", "category_id"]
    assert sql.run("SELECT count(*) FROM tasks WHERE user_id = :u", u=alice) == [[0]]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"", "application/json", 400, "bad_request"),
        (b"{not json", "application/json", 400, "bad_request"),
        (b'{"title": NaN}', "application/json", 400, "bad_request"),
        (b"\xff\xfe", "application/json", 400, "bad_request"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "bad_request"),
        (b'["a list"]', "application/json", 422, "validation_error"),
        (b'"a string"', "application/json", 422, "validation_error"),
        (b'{"title": "t"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"title": "t"}', "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"title": "t"}', "", 415, "unsupported_media_type"),
        (json.dumps({"title": "t", "description": "x" * 70_000}).encode(), "application/json", 413, "payload_too_large"),
    ],
)
def test_create_refuses_bodies_that_are_not_a_json_object(api, alice, body, content_type, status, code):
    headers = {"content-type": content_type} if content_type else {}
    reply = api.post(tasks_path("me"), user=alice, body=body, headers=headers)
    assert (reply.status, reply.problem["code"]) == (status, code)


def test_create_accepts_json_with_a_charset(api, alice):
    reply = api.post(
        tasks_path("me"), user=alice, body=b'{"title": "caf\xc3\xa9"}', headers={"content-type": "application/json; charset=utf-8"}
    )
    assert reply.status == 201 and reply.json()["title"] == "café"


# ---------------------------------------------------------------------------- read


def test_get_returns_the_task_with_its_etag(api, alice):
    task = api.create_task(alice, title="Read me")
    reply = api.get(tasks_path(alice, task["id"]), user=alice)
    assert reply.status == 200
    assert reply.json() == task
    assert reply.headers["etag"] == '"1"'


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid", "1", "%00"])
def test_get_unknown_or_malformed_id_is_404(api, alice, task_id):
    reply = api.get(tasks_path("me", task_id), user=alice)
    assert (reply.status, reply.problem["code"]) == (404, "not_found")


# ---------------------------------------------------------------------------- replace and update


def test_put_replaces_every_writable_field_and_resets_the_absent_ones(api, alice):
    category = api.create_category(alice, "Home")
    task = api.create_task(
        alice, description="d", priority="high", due_at="2030-01-01T00:00:00Z", tags=["a"], category_id=category["id"], completed=True
    )
    reply = api.put(tasks_path("me", task["id"]), user=alice, json={"title": "Only a title"})
    assert reply.status == 200
    replaced = reply.json()
    assert replaced["title"] == "Only a title"
    assert (replaced["description"], replaced["due_at"], replaced["category_id"], replaced["tags"]) == (None, None, None, [])
    assert (replaced["priority"], replaced["completed"], replaced["completed_at"]) == ("medium", False, None)
    assert replaced["version"] == 2 and reply.headers["etag"] == '"2"'
    assert replaced["created_at"] == task["created_at"] and replaced["updated_at"] > task["updated_at"]


def test_put_requires_a_title(api, alice):
    task = api.create_task(alice)
    reply = api.put(tasks_path("me", task["id"]), user=alice, json={"description": "no title"})
    assert reply.status == 422 and ["body", "title"] in [e["loc"] for e in reply.problem["errors"]]


def test_patch_changes_only_the_fields_sent(api, alice):
    task = api.create_task(alice, title="Keep", description="old", tags=["t"])
    reply = api.patch(tasks_path("me", task["id"]), user=alice, json={"description": None, "priority": "low"})
    assert reply.status == 200
    patched = reply.json()
    assert (patched["title"], patched["tags"], patched["description"], patched["priority"]) == ("Keep", ["t"], None, "low")
    assert patched["version"] == 2


@pytest.mark.parametrize("body", [{}, {"title": "Same"}, {"title": "  Same "}, {"tags": ["a", "a"]}, {"priority": "medium"}])
def test_a_write_that_changes_nothing_keeps_version_and_updated_at(api, alice, body):
    task = api.create_task(alice, title="Same", tags=["a"])
    reply = api.patch(tasks_path("me", task["id"]), user=alice, json=body)
    assert reply.status == 200
    assert reply.json() == task and reply.headers["etag"] == '"1"'


@pytest.mark.parametrize("body", [{"title": None}, {"completed": None}, {"priority": None}, {"tags": None}, {"version": 3}])
def test_patch_refuses_null_for_required_fields_and_server_fields(api, alice, body):
    task = api.create_task(alice)
    reply = api.patch(tasks_path("me", task["id"]), user=alice, json=body)
    assert reply.status == 422
    assert api.get(tasks_path("me", task["id"]), user=alice).json() == task


def test_patch_completed_sets_and_clears_completed_at(api, alice):
    task = api.create_task(alice)
    done = api.patch(tasks_path("me", task["id"]), user=alice, json={"completed": True}).json()
    assert done["completed"] is True
    assert datetime.fromisoformat(done["completed_at"]) >= datetime.fromisoformat(task["created_at"])
    undone = api.patch(tasks_path("me", task["id"]), user=alice, json={"completed": False}).json()
    assert (undone["completed"], undone["completed_at"], undone["version"]) == (False, None, 3)


def test_if_match_stale_is_412_with_the_current_etag_and_changes_nothing(api, alice):
    task = api.create_task(alice, title="v1")
    api.patch(tasks_path("me", task["id"]), user=alice, json={"title": "v2"})
    for method, body in (("PATCH", {"title": "v3"}), ("PUT", {"title": "v3"}), ("DELETE", None)):
        reply = api.request(method, tasks_path("me", task["id"]), user=alice, json=body, headers={"if-match": '"1"'})
        assert (reply.status, reply.problem["code"], reply.headers["etag"]) == (412, "precondition_failed", '"2"')
    reply = api.patch(tasks_path("me", task["id"], "/complete"), user=alice, headers={"if-match": '"1"'})
    assert reply.status == 412
    assert api.get(tasks_path("me", task["id"]), user=alice).json()["title"] == "v2"


def test_if_match_current_version_lets_the_write_through(api, alice):
    task = api.create_task(alice)
    reply = api.patch(tasks_path("me", task["id"]), user=alice, json={"title": "new"}, headers={"if-match": '"1"'})
    assert reply.status == 200 and reply.headers["etag"] == '"2"'


def test_malformed_if_match_is_422(api, alice):
    task = api.create_task(alice)
    reply = api.patch(tasks_path("me", task["id"]), user=alice, json={"title": "x"}, headers={"if-match": "1"})
    assert reply.status == 422 and reply.problem["errors"][0]["loc"] == ["header", "If-Match"]


# ---------------------------------------------------------------------------- complete


def test_complete_without_body_toggles(api, alice):
    task = api.create_task(alice)
    first = api.patch(tasks_path("me", task["id"], "/complete"), user=alice)
    assert first.status == 200 and first.json()["completed"] is True and first.headers["etag"] == '"2"'
    second = api.patch(tasks_path("me", task["id"], "/complete"), user=alice)
    assert second.json()["completed"] is False and second.json()["completed_at"] is None


def test_complete_with_a_body_sets_and_setting_the_same_value_changes_nothing(api, alice):
    task = api.create_task(alice)
    done = api.patch(tasks_path("me", task["id"], "/complete"), user=alice, json={"completed": True}).json()
    again = api.patch(tasks_path("me", task["id"], "/complete"), user=alice, json={"completed": True}).json()
    assert done == again and again["version"] == 2


@pytest.mark.parametrize(("body", "status"), [({"completed": "yes"}, 422), ({}, 422), ({"completed": True, "x": 1}, 422)])
def test_complete_refuses_a_bad_body(api, alice, body, status):
    task = api.create_task(alice)
    assert api.patch(tasks_path("me", task["id"], "/complete"), user=alice, json=body).status == status


def test_complete_refuses_a_body_that_is_not_json(api, alice):
    task = api.create_task(alice)
    reply = api.patch(tasks_path("me", task["id"], "/complete"), user=alice, body=b"true", headers={"content-type": "text/plain"})
    assert reply.status == 415


# ---------------------------------------------------------------------------- trash


def test_delete_moves_to_trash_and_restore_brings_it_back(api, alice):
    task = api.create_task(alice, title="Trash me")
    reply = api.delete(tasks_path("me", task["id"]), user=alice)
    assert (reply.status, reply.body) == (204, b"")

    assert api.get(tasks_path("me", task["id"]), user=alice).status == 404
    assert api.patch(tasks_path("me", task["id"]), user=alice, json={"title": "x"}).status == 404
    assert api.patch(tasks_path("me", task["id"], "/complete"), user=alice).status == 404
    assert api.delete(tasks_path("me", task["id"]), user=alice).status == 404
    assert task["id"] not in [t["id"] for t in api.get(tasks_path("me"), user=alice).json()["items"]]

    trash = api.get(f"/api/{alice}/trash", user=alice).json()
    assert [t["id"] for t in trash["items"]] == [task["id"]]
    assert trash["items"][0]["deleted_at"].endswith("Z")

    restored = api.post(f"/api/me/trash/{task['id']}/restore", user=alice)
    assert restored.status == 200 and restored.json()["title"] == "Trash me"
    assert restored.json()["version"] == 3 and restored.headers["etag"] == '"3"'
    assert api.get(tasks_path("me", task["id"]), user=alice).status == 200
    assert api.get(f"/api/me/trash", user=alice).json()["items"] == []


def test_restore_of_a_task_not_in_the_trash_is_404(api, alice):
    task = api.create_task(alice)
    assert api.post(f"/api/me/trash/{task['id']}/restore", user=alice).status == 404
    assert api.post(f"/api/me/trash/{uuid.uuid4()}/restore", user=alice).status == 404


def test_trash_lists_newest_trashed_first_and_pages(api, alice):
    ids = [api.create_task(alice, title=f"t{i}")["id"] for i in range(5)]
    for task_id in ids:
        api.delete(tasks_path("me", task_id), user=alice)
    seen, cursor = [], None
    while True:
        page = api.get("/api/me/trash", user=alice, query={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


# ---------------------------------------------------------------------------- list


def test_list_pages_newest_first_and_sees_every_task_exactly_once(api, alice, bob):
    ids = [api.create_task(alice, title=f"task {i}")["id"] for i in range(7)]
    api.create_task(bob, title="not alice's")
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        reply = api.get(tasks_path("me"), user=alice, query=query)
        assert reply.status == 200
        page = reply.json()
        pages += 1
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids)) and pages == 3


def test_list_filters_by_status(api, alice):
    done = api.create_task(alice, title="done", completed=True)
    open_ = api.create_task(alice, title="open")
    ids = lambda status: [t["id"] for t in api.get(tasks_path("me"), user=alice, query={"status": status}).json()["items"]]  # noqa: E731
    assert ids("completed") == [done["id"]]
    assert ids("pending") == [open_["id"]]
    assert ids("all") == [open_["id"], done["id"]]


def test_list_default_limit_is_50(api, alice):
    for i in range(51):
        api.create_task(alice, title=f"t{i}")
    page = api.get(tasks_path("me"), user=alice).json()
    assert len(page["items"]) == 50 and page["next_cursor"] is not None


@pytest.mark.parametrize(
    ("query", "status", "loc"),
    [
        ({"limit": 0}, 422, ["query", "limit"]),
        ({"limit": 201}, 422, ["query", "limit"]),
        ({"limit": "ten"}, 422, ["query", "limit"]),
        ({"status": "done"}, 422, ["query", "status"]),
        ({"sort": "nope", "unknown": "1"}, 422, None),
    ],
)
def test_list_refuses_bad_parameters_naming_them(api, alice, query, status, loc):
    reply = api.get(tasks_path("me"), user=alice, query=query)
    assert reply.status == status
    if loc:
        assert loc in [e["loc"] for e in reply.problem["errors"]]


def test_a_cursor_only_works_for_the_query_and_user_that_made_it(api, alice, bob):
    for i in range(3):
        api.create_task(alice, title=f"t{i}")
        api.create_task(bob, title=f"t{i}")
    cursor = api.get(tasks_path("me"), user=alice, query={"limit": 1}).json()["next_cursor"]
    assert api.get(tasks_path("me"), user=alice, query={"limit": 1, "cursor": cursor}).status == 200
    assert api.get(tasks_path("me"), user=alice, query={"limit": 5, "cursor": cursor}).status == 200  # page size may change
    other_filter = api.get(tasks_path("me"), user=alice, query={"status": "pending", "cursor": cursor})
    assert (other_filter.status, other_filter.problem["code"]) == (400, "bad_request")
    assert api.get(tasks_path("me"), user=bob, query={"cursor": cursor}).status == 400
    assert api.get("/api/me/trash", user=alice, query={"cursor": cursor}).status == 400
    payload, mac = cursor.split(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + mac
    assert api.get(tasks_path("me"), user=alice, query={"cursor": forged}).status == 400
    for garbage in ("", "abc", "a.b.c", "%%%", "é.é"):
        assert api.get(tasks_path("me"), user=alice, query={"cursor": garbage}).status == 400, garbage
