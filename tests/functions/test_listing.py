"""Listing tasks: every filter and sort of the contract, against a reference computed in
Python on the same rows; keyset paging that sees every task exactly once."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from itertools import product

import pytest


# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler

SORTS = ["created_at", "updated_at", "due_at", "priority", "title"]
PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2}
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def walk(api, user, query, limit=4):
    """Every page of a listing; returns the items in order and the number of pages."""
    items, cursor, pages = [], None, 0
    while True:
        reply = api.get("/api/me/tasks", user=user, query={**query, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert reply.status == 200, reply.body
        page = reply.json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 200


def reference_order(tasks, sort):
    """The contract's order: ties on id in the same direction; no due_at last either way."""
    descending = sort.startswith("-")
    name = sort.lstrip("-")

    def key(task):
        if name == "priority":
            value = PRIORITY_RANK[task["priority"]]
        elif name == "title":
            value = task["title"].lower()
        else:
            value = task[name]
        return value, uuid.UUID(task["id"])

    if name == "due_at":
        dated = sorted((t for t in tasks if t["due_at"]), key=key, reverse=descending)
        undated = sorted((t for t in tasks if not t["due_at"]), key=lambda t: uuid.UUID(t["id"]), reverse=descending)
        return dated + undated
    return sorted(tasks, key=key, reverse=descending)


@pytest.fixture
def tied_tasks(api, alice, bob, sql):
    """22 tasks built to tie on every sort key, some without due_at, plus noise from bob."""
    titles = ["apple", "Apple", "banana", "APPLE", "cherry", "banana"]
    for i in range(22):
        api.create_task(
            alice,
            title=titles[i % len(titles)],
            priority=["low", "medium", "high"][i % 3],
            due_at=None if i % 4 == 0 else (BASE + timedelta(days=i % 3)).isoformat(),
        )
    api.create_task(bob, title="apple")
    # Ties on created_at and updated_at too: three groups of identical timestamps.
    sql.run(
        "UPDATE tasks SET created_at = CAST(:base AS timestamptz) + (abs(hashtext(id::text)) % 3) * interval '1 hour', "
        "updated_at = CAST(:base AS timestamptz) + (abs(hashtext(id::text)) % 2) * interval '1 hour' WHERE user_id = :u",
        base=BASE, u=alice,
    )
    return api.get("/api/me/tasks", user=alice, query={"limit": 200}).json()["items"]


@pytest.mark.parametrize("sort", SORTS + [f"-{s}" for s in SORTS])
def test_every_sort_pages_through_every_task_exactly_once_in_contract_order(api, alice, tied_tasks, sort):
    items, pages = walk(api, alice, {"sort": sort}, limit=4)
    assert len(items) == len(tied_tasks) == 22 and pages == 6
    assert len({t["id"] for t in items}) == 22
    assert [t["id"] for t in items] == [t["id"] for t in reference_order(tied_tasks, sort)]


def test_default_sort_is_newest_first(api, alice, tied_tasks):
    items, _ = walk(api, alice, {})
    assert [t["id"] for t in items] == [t["id"] for t in reference_order(tied_tasks, "-created_at")]


# ---------------------------------------------------------------------------- filters


@pytest.fixture
def varied_tasks(api, alice, bob):
    rng = random.Random(7)
    home = api.create_category(alice, "Home")["id"]
    work = api.create_category(alice, "Work")["id"]
    words = ["milk", "Milk", "oat", "50%", "a_b", "ab", "bread", "MILKSHAKE", "café"]
    for i in range(40):
        api.create_task(
            alice,
            title=" ".join(rng.sample(words, 2)) + f" {i}",
            description=rng.choice([None, "buy oat milk", "100% sure", "a-b c", "Bread and MILK"]),
            priority=rng.choice(["low", "medium", "high"]),
            category_id=rng.choice([None, home, work]),
            tags=rng.sample(["errand", "urgent", "Errand", "home"], rng.randint(0, 2)),
            due_at=rng.choice([None, (BASE + timedelta(hours=rng.randint(0, 96))).isoformat()]),
            completed=rng.random() < 0.3,
        )
    api.create_task(bob, title="milk 50% a_b", tags=["errand"], priority="high")
    return {"home": home, "work": work, "tasks": api.get("/api/me/tasks", user=alice, query={"limit": 200}).json()["items"]}


def matches(task, f):
    text = (task["title"] + " " + (task["description"] or "")).lower()
    due = datetime.fromisoformat(task["due_at"]) if task["due_at"] else None
    return all(
        [
            f.get("status") in (None, "all") or task["completed"] == (f["status"] == "completed"),
            "priority" not in f or task["priority"] == f["priority"],
            "category_id" not in f or task["category_id"] == f["category_id"],
            "tag" not in f or f["tag"] in task["tags"],
            "due_before" not in f or (due is not None and due < datetime.fromisoformat(f["due_before"])),
            "due_after" not in f or (due is not None and due >= datetime.fromisoformat(f["due_after"])),
            all(word.lower() in text for word in f.get("q", "").split()),
        ]
    )


FILTERS = [
    {"status": "completed"},
    {"status": "pending"},
    {"priority": "high"},
    {"tag": "errand"},
    {"tag": "Errand"},
    {"due_before": (BASE + timedelta(hours=48)).isoformat()},
    {"due_after": (BASE + timedelta(hours=48)).isoformat()},
    {"due_after": "2026-01-02T00:00:00+01:00", "due_before": "2026-01-03T00:00:00-01:00"},
    {"q": "milk"},
    {"q": "MILK oat"},
    {"q": "50%"},
    {"q": "%"},
    {"q": "a_b"},
    {"q": "_"},
    {"q": "café"},
    {"q": "nothing-like-this"},
    {"status": "pending", "priority": "low", "q": "milk"},
]


@pytest.mark.parametrize("query", FILTERS, ids=[str(f) for f in FILTERS])
def test_filters_match_a_python_reference(api, alice, varied_tasks, query):
    items, _ = walk(api, alice, query, limit=7)
    expected = [t for t in reference_order(varied_tasks["tasks"], "-created_at") if matches(t, query)]
    assert [t["id"] for t in items] == [t["id"] for t in expected]


def test_category_filter_combines_with_every_sort(api, alice, varied_tasks):
    for category, sort in product(("home", "work"), ("title", "-due_at")):
        query = {"category_id": varied_tasks[category], "sort": sort}
        items, _ = walk(api, alice, query, limit=5)
        expected = reference_order([t for t in varied_tasks["tasks"] if t["category_id"] == varied_tasks[category]], sort)
        assert [t["id"] for t in items] == [t["id"] for t in expected]


# ---------------------------------------------------------------------------- refusals


def test_a_cursor_is_bound_to_its_filters_and_sort(api, alice, tied_tasks):
    cursor = api.get("/api/me/tasks", user=alice, query={"limit": 2, "sort": "title", "priority": "low"}).json()["next_cursor"]
    assert api.get("/api/me/tasks", user=alice, query={"sort": "title", "priority": "low", "cursor": cursor}).status == 200
    for other in ({"sort": "-title", "priority": "low"}, {"sort": "title"}, {"sort": "title", "priority": "high"},
                  {"sort": "title", "priority": "low", "q": "apple"}):  # fmt: skip
        reply = api.get("/api/me/tasks", user=alice, query={**other, "cursor": cursor})
        assert (reply.status, reply.problem["code"]) == (400, "bad_request"), other


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ({"sort": "name"}, ["query", "sort"]),
        ({"sort": "+title"}, ["query", "sort"]),
        ({"priority": "urgent"}, ["query", "priority"]),
        ({"category_id": "42"}, ["query", "category_id"]),
        ({"tag": ""}, ["query", "tag"]),
        ({"tag": "x" * 51}, ["query", "tag"]),
        ({"tag": "a\x00"}, ["query", "tag"]),
        ({"due_before": "2026-01-01"}, ["query", "due_before"]),
        ({"due_after": "2026-01-01T00:00:00"}, ["query", "due_after"]),
        ({"due_after": "1767225600"}, ["query", "due_after"]),
        ({"q": "x" * 201}, ["query", "q"]),
        ({"q": "milk\x00"}, ["query", "q"]),
    ],
)
def test_malformed_parameters_are_422_naming_the_parameter(api, alice, query, loc):
    reply = api.get("/api/me/tasks", user=alice, query=query)
    assert reply.status == 422, reply.body
    assert loc in [e["loc"] for e in reply.problem["errors"]]
