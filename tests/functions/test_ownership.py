"""No user sees or changes another's data: the whole matrix, generated from template.yaml.

Every protected route × {owner, another user, no identity, a path naming someone else} ×
{the owner's id, another user's id, an unknown id} (routes without an id: the identities
only). Each cell has its expected status; where access is denied, nobody's rows change.
A route added to the template is covered without editing this file (a POST, PUT or PATCH
must have a valid body in VALID_BODIES: the test says so).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest

from shared.template import http_routes
from shared.tools import TOOLS

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler

# POST /mcp has its own matrix below: each tool is a cell of it, not the endpoint.
PROTECTED = [(route.method, route.path) for route, _ in http_routes() if not route.public and route.path != "/mcp"]
VALID_BODIES = {
    ("POST", "/api/{user_id}/tasks"): {"title": "written by the caller"},
    ("PUT", "/api/{user_id}/tasks/{task_id}"): {"title": "written by the caller"},
    ("PATCH", "/api/{user_id}/tasks/{task_id}"): {"title": "written by the caller"},
    ("PATCH", "/api/{user_id}/tasks/{task_id}/complete"): {"completed": True},
    ("POST", "/api/{user_id}/tasks/{task_id}/move"): {"parent_id": None, "after": None},
    ("POST", "/api/{user_id}/categories"): {"name": "written by the caller"},
    ("PATCH", "/api/{user_id}/categories/{category_id}"): {"name": "written by the caller"},
    ("POST", "/api/{user_id}/trash/{task_id}/restore"): None,  # takes no body
}
SUCCESS = {"GET": 200, "PUT": 200, "PATCH": 200, "DELETE": 204}
IDENTITIES = ("owner", "another user", "no identity", "path names someone else")
IDS = ("owner's id", "another user's id", "unknown id")
CELLS: Counter = Counter()  # reported at the end of the run (tests/conftest.py)


def _success(method: str, path: str) -> int:
    if method == "POST":
        return 200 if path.endswith(("/restore", "/move")) else 201
    return SUCCESS[method]


def _body(method: str, path: str):
    if method in ("POST", "PUT", "PATCH"):
        assert (method, path) in VALID_BODIES, f"add a valid body for {method} {path} to VALID_BODIES"
    return VALID_BODIES.get((method, path))


def _world(api, user: str) -> dict[str, str]:
    """A live task, a trashed task and a category of `user`."""
    category = api.create_category(user, f"{user}'s")
    task = api.create_task(user, title=f"{user}'s", category_id=category["id"])
    trashed = api.create_task(user, title=f"{user}'s trashed")
    assert api.delete(f"/api/me/tasks/{trashed['id']}", user=user).status == 204
    return {"task_id": task["id"], "category_id": category["id"], "trashed_id": trashed["id"]}


def _snapshot(sql, users: list[str]) -> list:
    return [
        sql.run(f"SELECT * FROM {table} WHERE {column} = ANY(:users) ORDER BY 1, 2", users=users)
        for table, column in (
            ("tasks", "user_id"), ("categories", "user_id"), ("users", "id"), ("idempotency_keys", "user_id"), ("change_log", "user_id"),
        )  # fmt: skip
    ]


def _path(template: str, path_user: str, ids: dict[str, str]) -> str:
    task_id = ids["trashed_id"] if "/trash/" in template else ids["task_id"]
    return template.replace("{user_id}", path_user).replace("{task_id}", task_id).replace("{category_id}", ids["category_id"])


def _expected(identity: str, which_id: str | None, success: int) -> int:
    if identity == "no identity":
        return 401
    if identity == "path names someone else":
        return 403
    if which_id is None:
        return success
    # The caller's own object succeeds; anyone else's answers exactly like a missing one.
    mine = (identity == "owner" and which_id == "owner's id") or (identity == "another user" and which_id == "another user's id")
    return success if mine else 404


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_ownership_matrix(api, sql, alice, bob, method, path):
    has_id = "{task_id}" in path or "{category_id}" in path
    for identity in IDENTITIES:
        for which_id in IDS if has_id else (None,):
            # Fresh data per cell: a cell that succeeds changes what the next one would see.
            cell_id = uuid.uuid4().hex[:6]
            owner, other = f"{alice}-{cell_id}", f"{bob}-{cell_id}"
            ids = {"owner's id": _world(api, owner), "another user's id": _world(api, other)}
            ids["unknown id"] = {"task_id": str(uuid.uuid4()), "category_id": str(uuid.uuid4()), "trashed_id": str(uuid.uuid4())}
            caller = {"owner": owner, "another user": other, "no identity": None, "path names someone else": other}[identity]
            path_user = owner if identity in ("no identity", "path names someone else") else "me"
            target = _path(path, path_user, ids[which_id] if which_id else ids["owner's id"])
            before = _snapshot(sql, [owner, other])

            reply = api.request(method, target, user=caller, json=_body(method, path))

            expected = _expected(identity, which_id, _success(method, path))
            cell = f"{method} {path} | {identity} | {which_id or '-'}"
            assert reply.status == expected, f"{cell}: {reply.status} {reply.body[:200]!r}"
            if expected >= 400:
                assert reply.problem["code"] == {401: "unauthorized", 403: "forbidden", 404: "not_found"}[expected], cell
                assert _snapshot(sql, [owner, other]) == before, f"{cell}: a refused request changed data"
            if expected == 401:
                assert reply.headers["www-authenticate"] == "Bearer", cell
            CELLS[f"{method} {path}"] += 1


def test_a_denied_path_reads_nothing_not_even_the_user_row(api, sql, alice, bob):
    """403 comes before any read or write: not even the caller's user row is created."""
    api.create_task(alice)
    for method, path in PROTECTED:
        reply = api.request(method, _path(path, alice, {"task_id": "x", "category_id": "x", "trashed_id": "x"}), user=bob, json=_body(method, path))
        assert reply.status == 403, (method, path)
    assert sql.run("SELECT count(*) FROM users WHERE id = :u", u=bob) == [[0]]


def test_lists_hold_only_the_callers_data(api, alice, bob):
    alices = _world(api, alice)
    _world(api, bob)
    for path in ("/api/me/tasks", "/api/me/trash", "/api/me/categories", "/api/me/changes"):
        items = api.get(path, user=bob).json()["items"]
        assert items and not {item["id"] for item in items} & set(alices.values()), path
    # ... and the feed's changes after a full sync: bob's own only, whatever alice does.
    cursor = api.get("/api/me/changes", user=bob, query={"limit": 500}).json()["next_cursor"]
    api.patch(f"/api/me/tasks/{alices['task_id']}", user=alice, json={"title": "alice again"})
    api.create_task(bob, title="bob again")
    items = api.get("/api/me/changes", user=bob, query={"cursor": cursor}).json()["items"]
    assert [item["data"]["title"] for item in items if item["kind"] == "task"] == ["bob again"]


def test_me_and_the_callers_own_id_are_the_same_user(api, alice):
    task = api.create_task(alice)
    assert api.get(f"/api/{alice}/tasks/{task['id']}", user=alice).json() == api.get(f"/api/me/tasks/{task['id']}", user=alice).json()


# -- the MCP tools (POST /mcp): each tool × {owner, another user, no identity} × the ids ---------

TOOL_ARGUMENTS = {
    "add_task": lambda ids: {"title": "written by the caller", "category_id": ids["category_id"]},
    "list_tasks": lambda ids: {"category_id": ids["category_id"]},
    "get_task": lambda ids: {"task_id": ids["task_id"]},
    "update_task": lambda ids: {"task_id": ids["task_id"], "title": "written by the caller"},
    "complete_task": lambda ids: {"task_id": ids["task_id"]},
    "delete_task": lambda ids: {"task_id": ids["task_id"]},
    "restore_task": lambda ids: {"task_id": ids["trashed_id"]},
    "list_categories": lambda ids: {},
    "add_category": lambda ids: {"name": "written by the caller"},
}
# A list of someone else's things is empty, not refused; a create that names someone
# else's category is the 422 a missing one gets.
_FOREIGN = {"add_task": "validation_error", "list_tasks": "empty"}


def _mcp_expected(tool: str, identity: str, which_id: str) -> str:
    if identity == "no identity":
        return "401"
    mine = (identity == "owner" and which_id == "owner's id") or (identity == "another user" and which_id == "another user's id")
    if mine or tool in ("list_categories", "add_category"):
        return "ok"
    return _FOREIGN.get(tool, "not_found")


@pytest.mark.parametrize("tool", [t.name for t in TOOLS])
def test_mcp_tool_ownership_matrix(api, sql, alice, bob, tool):
    assert set(TOOL_ARGUMENTS) == {t.name for t in TOOLS}, "add the new tool's arguments to TOOL_ARGUMENTS"
    for identity in ("owner", "another user", "no identity"):
        for which_id in IDS:
            cell_id = uuid.uuid4().hex[:6]
            owner, other = f"{alice}-{cell_id}", f"{bob}-{cell_id}"
            ids = {"owner's id": _world(api, owner), "another user's id": _world(api, other)}
            ids["unknown id"] = {"task_id": str(uuid.uuid4()), "category_id": str(uuid.uuid4()), "trashed_id": str(uuid.uuid4())}
            caller = {"owner": owner, "another user": other, "no identity": None}[identity]
            before = _snapshot(sql, [owner, other])

            message = {"name": tool, "arguments": TOOL_ARGUMENTS[tool](ids[which_id])}
            reply = api.mcp(caller, "tools/call", message)

            expected = _mcp_expected(tool, identity, which_id)
            cell = f"tool {tool} | {identity} | {which_id}"
            if expected == "401":
                assert (reply.status, reply.problem["code"]) == (401, "unauthorized"), cell
            else:
                assert reply.status == 200, f"{cell}: {reply.status} {reply.body[:200]!r}"
                result = reply.json()["result"]
                if expected in ("ok", "empty"):
                    assert not result["isError"], f"{cell}: {result}"
                    if expected == "empty":
                        assert result["structuredContent"]["items"] == [], cell
                else:
                    assert result["isError"], f"{cell}: {result}"
                    assert json.loads(result["content"][0]["text"])["code"] == expected, f"{cell}: {result}"
            if expected not in ("ok",) or tool.startswith(("list_", "get_")):
                assert _snapshot(sql, [owner, other]) == before, f"{cell}: a refused or read-only call changed data"
            CELLS[f"tool {tool}"] += 1


def test_another_users_task_as_parent_or_sibling_is_refused_on_every_route_that_takes_one(api, sql, alice, bob):
    """The fields that name a task (parent_id, a move's after) are owner-checked like the path:
    another user's task answers what an unknown one does (422), and nothing changes."""
    mine, theirs = api.create_task(alice, title="mine"), api.create_task(bob, title="bob's")
    bobs_child = api.create_task(bob, title="bob's child", parent_id=theirs["id"])
    before = _snapshot(sql, [alice, bob])
    writes = [
        ("POST", "/api/me/tasks", {"title": "x", "parent_id": theirs["id"]}, "parent_id"),
        ("PUT", f"/api/me/tasks/{mine['id']}", {"title": "x", "parent_id": theirs["id"]}, "parent_id"),
        ("PATCH", f"/api/me/tasks/{mine['id']}", {"parent_id": theirs["id"]}, "parent_id"),
        ("POST", f"/api/me/tasks/{mine['id']}/move", {"parent_id": theirs["id"], "after": None}, "parent_id"),
        ("POST", f"/api/me/tasks/{mine['id']}/move", {"parent_id": theirs["id"], "after": bobs_child["id"]}, "after"),
        ("POST", f"/api/me/tasks/{mine['id']}/move", {"parent_id": None, "after": theirs["id"]}, "after"),
    ]
    for method, path, body, field in writes:
        reply = api.request(method, path, user=alice, json=body)
        assert reply.status == 422 and reply.problem["errors"][0]["loc"] == ["body", field], (method, path, reply.body)
        assert theirs["id"].encode() not in reply.body and bobs_child["id"].encode() not in reply.body
    assert _snapshot(sql, [alice, bob]) == before
    assert api.get("/api/me/tasks", user=alice, query={"parent_id": theirs["id"]}).json()["items"] == []
