"""No user sees or changes another's data: every protected route of template.yaml, two users.

Routes come from the template, so a new route is covered here without editing the test
(a POST, PUT or PATCH must have its body added to VALID_BODIES: the test says so).
"""

from __future__ import annotations

import uuid

import pytest

from shared.template import http_routes

PROTECTED = [(route.method, route.path) for route, _ in http_routes() if not route.public]
VALID_BODIES = {
    ("POST", "/api/{user_id}/tasks"): {"title": "intruder"},
    ("PUT", "/api/{user_id}/tasks/{task_id}"): {"title": "intruder"},
    ("PATCH", "/api/{user_id}/tasks/{task_id}"): {"title": "intruder"},
    ("PATCH", "/api/{user_id}/tasks/{task_id}/complete"): {"completed": True},
    ("POST", "/api/{user_id}/categories"): {"name": "intruder"},
    ("PATCH", "/api/{user_id}/categories/{category_id}"): {"name": "intruder"},
    ("POST", "/api/{user_id}/trash/{task_id}/restore"): None,  # takes no body
}
ROUTE_IDS = [f"{m} {p}" for m, p in PROTECTED]


def _snapshot(sql, user: str) -> list:
    return [
        sql.run("SELECT * FROM tasks WHERE user_id = :u ORDER BY id", u=user),
        sql.run("SELECT * FROM categories WHERE user_id = :u ORDER BY id", u=user),
        sql.run("SELECT * FROM users WHERE id = :u", u=user),
    ]


@pytest.fixture
def alices_world(api, alice):
    """Alice owns a live task, a trashed task and a category."""
    category = api.create_category(alice, "Alice's")
    task = api.create_task(alice, title="alice's", category_id=category["id"])
    trashed = api.create_task(alice, title="alice's trashed")
    assert api.delete(f"/api/me/tasks/{trashed['id']}", user=alice).status == 204
    return {"task_id": task["id"], "category_id": category["id"], "trashed_id": trashed["id"]}


def _concrete(path: str, user: str, ids: dict[str, str]) -> str:
    task_id = ids["trashed_id"] if "/trash/" in path else ids["task_id"]
    return path.replace("{user_id}", user).replace("{task_id}", task_id).replace("{category_id}", ids["category_id"])


def _body(method: str, path: str):
    if method in ("POST", "PUT", "PATCH"):
        assert (method, path) in VALID_BODIES, f"add a valid body for {method} {path} to VALID_BODIES"
    return VALID_BODIES.get((method, path))


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=ROUTE_IDS)
def test_no_identity_is_401_and_changes_nothing(api, sql, alice, alices_world, method, path):
    before = _snapshot(sql, alice)
    reply = api.request(method, _concrete(path, alice, alices_world), user=None, json=_body(method, path))
    assert (reply.status, reply.problem["code"]) == (401, "unauthorized")
    assert reply.headers["www-authenticate"] == "Bearer"
    assert _snapshot(sql, alice) == before


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=ROUTE_IDS)
def test_a_path_naming_another_user_is_403_before_anything_is_read(api, sql, alice, bob, alices_world, method, path):
    before = _snapshot(sql, alice)
    for ids in (alices_world, {"task_id": str(uuid.uuid4()), "category_id": str(uuid.uuid4()), "trashed_id": str(uuid.uuid4())}):
        reply = api.request(method, _concrete(path, alice, ids), user=bob, json=_body(method, path))
        assert (reply.status, reply.problem["code"]) == (403, "forbidden")
    assert _snapshot(sql, alice) == before
    assert sql.run("SELECT count(*) FROM users WHERE id = :u", u=bob) == [[0]]


ID_ROUTES = [(m, p) for m, p in PROTECTED if "{task_id}" in p or "{category_id}" in p]


@pytest.mark.parametrize(("method", "path"), ID_ROUTES, ids=[f"{m} {p}" for m, p in ID_ROUTES])
def test_another_users_object_is_404_exactly_like_a_missing_one(api, sql, alice, bob, alices_world, method, path):
    before = _snapshot(sql, alice)
    theirs = api.request(method, _concrete(path, "me", alices_world), user=bob, json=_body(method, path))
    missing_ids = {"task_id": str(uuid.uuid4()), "category_id": str(uuid.uuid4()), "trashed_id": str(uuid.uuid4())}
    missing = api.request(method, _concrete(path, "me", missing_ids), user=bob, json=_body(method, path))
    assert theirs.status == missing.status == 404
    assert {k: v for k, v in theirs.problem.items() if k not in ("instance", "request_id")} == {
        k: v for k, v in missing.problem.items() if k not in ("instance", "request_id")
    }
    assert _snapshot(sql, alice) == before


def test_lists_hold_only_the_callers_data(api, alice, bob, alices_world):
    api.create_task(bob, title="bob's")
    api.delete(f"/api/me/tasks/{api.create_task(bob, title='bob trashed')['id']}", user=bob)
    api.create_category(bob, "Bob's")
    for path in ("/api/me/tasks", "/api/me/trash", "/api/me/categories"):
        items = api.get(path, user=bob).json()["items"]
        assert items and all(item["id"] not in alices_world.values() for item in items), path
        alices = api.get(path, user=alice).json()["items"]
        assert {item["id"] for item in alices} <= set(alices_world.values()), path


def test_me_and_the_callers_own_id_are_the_same_user(api, alice):
    task = api.create_task(alice)
    assert api.get(f"/api/{alice}/tasks/{task['id']}", user=alice).json() == api.get(f"/api/me/tasks/{task['id']}", user=alice).json()
