"""Category routes through their real Lambda handlers, on real Postgres, with two users."""

from __future__ import annotations

import pytest

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler


def test_create_returns_201_with_location_and_no_tasks(api, alice):
    reply = api.post("/api/me/categories", user=alice, json={"name": "  Work ", "color": "#A1b2C3"})
    assert reply.status == 201
    category = reply.json()
    assert reply.headers["location"] == f"/api/me/categories/{category['id']}"
    assert reply.headers["etag"] == '"1"'
    assert (category["name"], category["color"], category["task_count"], category["version"]) == ("Work", "#A1b2C3", 0, 1)


def test_names_are_unique_per_user_case_insensitively(api, alice, bob):
    api.create_category(alice, "Work")
    duplicate = api.post("/api/me/categories", user=alice, json={"name": "wORK"})
    assert (duplicate.status, duplicate.problem["code"]) == (409, "conflict")
    assert api.post("/api/me/categories", user=bob, json={"name": "work"}).status == 201


def test_renaming_onto_an_existing_name_is_409_and_changes_nothing(api, alice):
    api.create_category(alice, "Home")
    other = api.create_category(alice, "Errands")
    reply = api.patch(f"/api/me/categories/{other['id']}", user=alice, json={"name": "HOME"})
    assert reply.status == 409
    assert api.get(f"/api/me/categories/{other['id']}", user=alice).json() == other


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "name"]),
        ({"name": " "}, ["body", "name"]),
        ({"name": "n" * 101}, ["body", "name"]),
        ({"name": "a\x00"}, ["body", "name"]),
        ({"name": "ok", "color": "red"}, ["body", "color"]),
        ({"name": "ok", "color": "#12345"}, ["body", "color"]),
        ({"name": "ok", "color": "#1234567"}, ["body", "color"]),
        ({"name": "ok", "task_count": 3}, ["body", "task_count"]),
        ({"name": "ok", "id": "x"}, ["body", "id"]),
    ],
)
def test_create_refuses_broken_rules_with_422(api, alice, body, loc):
    reply = api.post("/api/me/categories", user=alice, json=body)
    assert reply.status == 422
    assert loc in [e["loc"] for e in reply.problem["errors"]]


def test_patch_changes_only_what_is_sent_and_no_change_keeps_the_version(api, alice):
    category = api.create_category(alice, "Home", color="#000000")
    assert api.patch(f"/api/me/categories/{category['id']}", user=alice, json={}).json() == category
    assert api.patch(f"/api/me/categories/{category['id']}", user=alice, json={"name": "Home"}).json() == category
    recoloured = api.patch(f"/api/me/categories/{category['id']}", user=alice, json={"color": None})
    assert recoloured.status == 200 and recoloured.headers["etag"] == '"2"'
    assert (recoloured.json()["name"], recoloured.json()["color"], recoloured.json()["version"]) == ("Home", None, 2)


def test_task_count_counts_live_tasks_only(api, alice):
    category = api.create_category(alice, "Home")
    keep = api.create_task(alice, category_id=category["id"])
    trashed = api.create_task(alice, category_id=category["id"])
    api.create_task(alice)
    api.delete(f"/api/me/tasks/{trashed['id']}", user=alice)
    assert api.get(f"/api/me/categories/{category['id']}", user=alice).json()["task_count"] == 1
    listed = api.get("/api/me/categories", user=alice).json()["items"]
    assert [(c["id"], c["task_count"]) for c in listed] == [(category["id"], 1)]
    assert keep["category_id"] == category["id"]


def test_delete_uncategorises_its_tasks_and_moves_their_version(api, alice, sql):
    category = api.create_category(alice, "Doomed")
    task = api.create_task(alice, category_id=category["id"])
    trashed = api.create_task(alice, category_id=category["id"])
    api.delete(f"/api/me/tasks/{trashed['id']}", user=alice)

    reply = api.delete(f"/api/me/categories/{category['id']}", user=alice)
    assert (reply.status, reply.body) == (204, b"")
    assert api.get(f"/api/me/categories/{category['id']}", user=alice).status == 404
    after = api.get(f"/api/me/tasks/{task['id']}", user=alice).json()
    assert (after["category_id"], after["version"]) == (None, 2)
    assert sql.run("SELECT category_id FROM tasks WHERE id = :i", i=trashed["id"]) == [[None]]


def test_list_orders_by_name_case_insensitively_and_pages(api, alice, bob):
    names = ["banana", "Apple", "cherry", "apricot", "Blueberry"]
    for name in names:
        api.create_category(alice, name)
    api.create_category(bob, "aardvark")
    seen, cursor = [], None
    while True:
        page = api.get("/api/me/categories", user=alice, query={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["name"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(names, key=str.lower)


def test_list_refuses_filters_it_does_not_take(api, alice):
    reply = api.get("/api/me/categories", user=alice, query={"status": "all"})
    assert reply.status == 422 and reply.problem["errors"][0]["loc"] == ["query", "status"]


def test_a_task_may_move_between_own_categories_only(api, alice, bob):
    mine = api.create_category(alice, "Mine")
    theirs = api.create_category(bob, "Theirs")
    task = api.create_task(alice)
    assert api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"category_id": mine["id"]}).json()["category_id"] == mine["id"]
    refused = api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"category_id": theirs["id"]})
    assert refused.status == 422 and refused.problem["errors"][0]["loc"] == ["body", "category_id"]
    assert api.get(f"/api/me/tasks/{task['id']}", user=alice).json()["category_id"] == mine["id"]
