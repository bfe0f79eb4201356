"""The change log and the sync feed (`GET /changes`), through the real handlers on real Postgres.

The replica test is the contract's own promise: a client that applies only the feed, page
by page, while the same user writes in every way there is (and another user writes too),
holds exactly what GET /tasks and GET /categories show at every sync point.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.functions.test_retries_and_edits import concurrently

pytestmark = pytest.mark.pooler


def feed(api, user: str, cursor: str | None = None, limit: int = 100):
    query: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        query["cursor"] = cursor
    return api.get("/api/me/changes", user=user, query=query)


def everything(api, user: str, path: str) -> dict[str, dict[str, Any]]:
    """All pages of a list, by id."""
    found, cursor = {}, None
    while True:
        page = api.get(path, user=user, query={"limit": 200, **({"cursor": cursor} if cursor else {})}).json()
        found.update({item["id"]: item for item in page["items"]})
        cursor = page["next_cursor"]
        if cursor is None:
            return found


class Replica:
    """A client that knows only what the feed told it."""

    def __init__(self, api, user: str, limit: int) -> None:
        self.api, self.user, self.limit = api, user, limit
        self.held: dict[str, dict[str, dict[str, Any]]] = {"task": {}, "category": {}}
        self.cursor: str | None = None
        self.pages = 0

    def step(self) -> bool:
        """One page; whether more is ready."""
        reply = feed(self.api, self.user, self.cursor, self.limit)
        assert reply.status == 200, reply.body
        page = reply.json()
        assert page["next_cursor"] and len(page["items"]) <= self.limit
        for item in page["items"]:
            held = self.held[item["kind"]]
            if item["op"] == "upsert":
                assert item["data"]["id"] == item["id"]
                held[item["id"]] = item["data"]
            else:
                assert item["data"] is None
                held.pop(item["id"], None)
        self.cursor = page["next_cursor"]
        self.pages += 1
        return page["has_more"]

    def sync(self) -> None:
        while self.step():
            pass

    def assert_equal_to_the_lists(self) -> None:
        assert self.held["task"] == everything(self.api, self.user, "/api/me/tasks")
        assert self.held["category"] == everything(self.api, self.user, "/api/me/categories")


def log_of(sql, user: str) -> list[tuple[int, str, str, str]]:
    return [
        (row[0], row[1], str(row[2]), row[3])
        for row in sql.run("SELECT seq, kind, object_id, action FROM change_log WHERE user_id = :u ORDER BY seq", u=user)
    ]


# ---------------------------------------------------------------------------- what is logged


def test_every_write_path_appends_in_its_own_flight_and_a_write_that_changes_nothing_appends_nothing(api, sql, alice):
    def new_entries(action) -> list[tuple[str, str]]:
        before = len(log_of(sql, alice))
        action()
        return [(kind, f"{what}") for _, kind, _, what in log_of(sql, alice)[before:]]

    home = {}
    assert new_entries(lambda: home.update(api.create_category(alice, "home"))) == [("category", "created")]
    task: dict[str, Any] = {}
    # A task in a category is a change of the category too (its task_count).
    assert new_entries(lambda: task.update(api.create_task(alice, title="t", category_id=home["id"]))) == [
        ("task", "created"), ("category", "updated"),
    ]  # fmt: skip
    path = f"/api/me/tasks/{task['id']}"
    assert new_entries(lambda: api.patch(path, user=alice, json={})) == []
    assert new_entries(lambda: api.patch(path, user=alice, json={"title": "t"})) == []  # the same value: nothing changed
    assert new_entries(lambda: api.patch(path, user=alice, json={"title": "u"})) == [("task", "updated")]
    assert new_entries(lambda: api.put(path, user=alice, json={"title": "v"})) == [("task", "updated"), ("category", "updated")]
    assert new_entries(lambda: api.patch(path, user=alice, json={"category_id": home["id"]})) == [
        ("task", "updated"), ("category", "updated"),
    ]  # fmt: skip
    assert new_entries(lambda: api.patch(f"{path}/complete", user=alice)) == [("task", "completed")]
    assert new_entries(lambda: api.patch(f"{path}/complete", user=alice)) == [("task", "updated")]
    assert new_entries(lambda: api.delete(path, user=alice)) == [("task", "deleted"), ("category", "updated")]
    assert new_entries(lambda: api.post(f"/api/me/trash/{task['id']}/restore", user=alice)) == [
        ("task", "restored"), ("category", "updated"),
    ]  # fmt: skip
    category = f"/api/me/categories/{home['id']}"
    assert new_entries(lambda: api.patch(category, user=alice, json={})) == []
    assert new_entries(lambda: api.patch(category, user=alice, json={"color": "#123456"})) == [("category", "updated")]
    # Deleting a category uncategorises its tasks: a change of each.
    assert sorted(new_entries(lambda: api.delete(category, user=alice))) == [("category", "deleted"), ("task", "updated")]
    # A recurring task completed: the task and its successor.
    due = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    series = api.create_task(alice, title="daily", due_at=due, recurrence="FREQ=DAILY")
    assert sorted(new_entries(lambda: api.patch(f"/api/me/tasks/{series['id']}/complete", user=alice))) == [
        ("task", "completed"), ("task", "created"),
    ]  # fmt: skip
    # Refused writes append nothing (the flight rolled back).
    assert new_entries(lambda: api.patch(path, user=alice, json={"category_id": str(uuid.uuid4())})) == []
    assert new_entries(lambda: api.patch(path, user=alice, json={"title": "w"}, headers={"if-match": '"1"'})) == []
    seqs = [seq for seq, *_ in log_of(sql, alice)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert sql.run("SELECT last_change FROM users WHERE id = :u", u=alice) == [[len(seqs)]]


def test_a_purge_appends_a_delete_for_each_purged_task(api, sql, alice):
    task = api.create_task(alice)
    api.delete(f"/api/me/tasks/{task['id']}", user=alice)
    before = log_of(sql, alice)
    sql.run("SET ROLE todo_cleanup")
    try:
        sql.run("DELETE FROM tasks WHERE id = :id", id=task["id"])
    finally:
        sql.run("RESET ROLE")
    assert log_of(sql, alice)[len(before):] == [(len(before) + 1, "task", task["id"], "deleted")]


# ---------------------------------------------------------------------------- the feed


def test_a_full_sync_pages_every_live_object_then_goes_on_with_the_changes(api, alice, bob):
    categories = [api.create_category(alice, name) for name in ("b", "a", "c")]
    tasks = [api.create_task(alice, title=f"t{i}", category_id=categories[i % 3]["id"]) for i in range(7)]
    api.delete(f"/api/me/tasks/{tasks[0]['id']}", user=alice)  # trashed: not in a full sync
    api.create_task(bob, title="bob's")
    replica = Replica(api, alice, limit=4)
    replica.sync()
    assert replica.pages == 3  # 3 categories + 6 live tasks in pages of 4
    replica.assert_equal_to_the_lists()
    # Nothing new: an empty page that keeps the cursor.
    reply = feed(api, alice, replica.cursor)
    assert reply.json() == {"items": [], "next_cursor": replica.cursor, "has_more": False}
    api.patch(f"/api/me/tasks/{tasks[1]['id']}", user=alice, json={"title": "renamed"})
    page = feed(api, alice, replica.cursor).json()
    assert [(item["kind"], item["op"], item["data"]["title"]) for item in page["items"]] == [("task", "upsert", "renamed")]


def test_an_object_changed_several_times_appears_once_with_its_latest_state(api, alice):
    replica = Replica(api, alice, limit=100)
    replica.sync()
    task = api.create_task(alice, title="one")
    for title in ("two", "three"):
        api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"title": title})
    page = feed(api, alice, replica.cursor).json()
    assert [(item["id"], item["data"]["title"]) for item in page["items"]] == [(task["id"], "three")]
    api.delete(f"/api/me/tasks/{task['id']}", user=alice)
    page = feed(api, alice, page["next_cursor"]).json()
    assert [(item["kind"], item["op"], item["data"]) for item in page["items"]] == [("task", "delete", None)]


def test_the_replica_equals_the_lists_at_every_sync_point_whatever_the_writes(api, sql, alice, bob):
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    note = f"seed {seed}"
    states: dict[str, dict[str, list[str]]] = {user: {"live": [], "trash": [], "categories": []} for user in (alice, bob)}
    due = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0).isoformat()
    kinds = ["create", "create", "category", "patch", "put", "complete", "trash", "restore", "noop",
             "rename_category", "delete_category", "purge", "recurring"]  # fmt: skip

    def write(user: str) -> None:
        state = states[user]
        live, trash, categories = state["live"], state["trash"], state["categories"]
        some_category = lambda: rnd.choice(categories) if categories and rnd.random() < 0.7 else None  # noqa: E731
        kind = rnd.choice(kinds)
        if kind in ("create", "recurring") or not live and kind in ("patch", "put", "complete", "trash", "noop"):
            extra = {"due_at": due, "recurrence": "FREQ=DAILY"} if kind == "recurring" else {}
            live.append(api.create_task(user, title=f"t{rnd.randrange(1000)}", category_id=some_category(), **extra)["id"])
        elif kind == "category":
            categories.append(api.create_category(user, f"c{uuid.uuid4().hex[:6]}")["id"])
        elif kind == "patch":
            body = rnd.choice([{"title": f"p{rnd.randrange(1000)}"}, {"category_id": some_category()}, {"tags": ["x", f"y{rnd.randrange(3)}"]}])
            assert api.patch(f"/api/me/tasks/{rnd.choice(live)}", user=user, json=body).status == 200
        elif kind == "put":
            assert api.put(f"/api/me/tasks/{rnd.choice(live)}", user=user, json={"title": "put", "category_id": some_category()}).status == 200
        elif kind == "complete":
            reply = api.patch(f"/api/me/tasks/{rnd.choice(live)}/complete", user=user)
            assert reply.status == 200
            if reply.headers.get("link"):  # a recurring task's successor is a new live task
                successor = reply.headers["link"].split("/tasks/")[1].split(">")[0]
                if successor not in live:
                    live.append(successor)
        elif kind == "noop":
            assert api.patch(f"/api/me/tasks/{rnd.choice(live)}", user=user, json={}).status == 200
        elif kind == "trash" and live:
            task_id = live.pop(rnd.randrange(len(live)))
            assert api.delete(f"/api/me/tasks/{task_id}", user=user).status == 204
            trash.append(task_id)
        elif kind == "restore" and trash:
            task_id = trash.pop(rnd.randrange(len(trash)))
            assert api.post(f"/api/me/trash/{task_id}/restore", user=user).status == 200
            live.append(task_id)
        elif kind == "rename_category" and categories:
            body = {"name": f"r{uuid.uuid4().hex[:6]}"}
            assert api.patch(f"/api/me/categories/{rnd.choice(categories)}", user=user, json=body).status == 200
        elif kind == "delete_category" and categories:
            assert api.delete(f"/api/me/categories/{categories.pop(rnd.randrange(len(categories)))}", user=user).status == 204
        elif kind == "purge" and trash:
            sql.run("DELETE FROM tasks WHERE id = :id", id=trash.pop(rnd.randrange(len(trash))))  # as the cleanup would

    for _ in range(15):  # a history before anyone syncs
        write(alice)
        write(bob)
    early = Replica(api, alice, limit=3)
    late: Replica | None = None
    for round_ in range(6):
        for _ in range(rnd.randrange(5, 15)):
            write(alice if rnd.random() < 0.8 else bob)
            if rnd.random() < 0.6:
                early.step()
            if late is not None and rnd.random() < 0.6:
                late.step()
        if round_ == 1:
            late = Replica(api, alice, limit=2)  # a full sync that starts in the middle of the writes
            late.step()
        early.sync()
        early.assert_equal_to_the_lists()
        if late is not None:
            late.sync()
            late.assert_equal_to_the_lists()
    bobs = everything(api, bob, "/api/me/tasks")
    assert bobs, note
    assert not set(bobs) & set(early.held["task"]), note  # another user's writes never appear


def test_concurrent_writers_of_one_user_leave_no_gap_and_no_reorder(api, sql, postgres_server, database_name, alice):
    """While 8 writers of one user write at once, a reader of the log always sees a prefix of
    it (never n+1 before n), and a replica following the feed at the same time ends equal
    to the lists: no change was skipped or applied out of order."""
    import pg8000.native

    tasks = [api.create_task(alice, title="seed")["id"] for _ in range(4)]
    stop, failures, prefixes = threading.Event(), [], []
    replica = Replica(api, alice, limit=5)

    def read() -> None:
        reader = pg8000.native.Connection(**postgres_server, database=database_name)
        try:
            while not stop.is_set():
                seqs = [row[0] for row in reader.run("SELECT seq FROM change_log WHERE user_id = :u ORDER BY seq", u=alice)]
                if seqs != list(range(1, len(seqs) + 1)):
                    failures.append(seqs)
                prefixes.append(len(seqs))
                replica.step()
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)
        finally:
            reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    try:

        def writer(i: int) -> None:
            for n in range(6):
                assert api.patch(f"/api/me/tasks/{tasks[i % 4]}", user=alice, json={"description": f"w{i}-{n}"}).status == 200

        concurrently(8, writer)
    finally:
        stop.set()
        thread.join()
    assert not failures, failures[:3]
    assert prefixes == sorted(prefixes) and len(prefixes) > 1
    log = log_of(sql, alice)
    assert [seq for seq, *_ in log] == list(range(1, len(log) + 1)) and len(log) == 4 + 8 * 6
    replica.sync()
    replica.assert_equal_to_the_lists()


def _payload(cursor: str) -> str:
    text = cursor.split(".")[0]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


# ---------------------------------------------------------------------------- cursors


def test_a_tampered_cursor_or_another_users_is_400(api, alice, bob):
    api.create_task(alice)
    api.create_task(bob)
    mine = feed(api, alice).json()["next_cursor"]
    payload, mac = mine.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(["c", 0]).encode()).rstrip(b"=").decode() + "." + mac
    for cursor in (forged, mine[:-2] + ("AA" if not mine.endswith("AA") else "BB"), "not-a-cursor", payload):
        reply = feed(api, alice, cursor)
        assert reply.status == 400 and reply.problem["code"] == "bad_request", cursor
    reply = feed(api, bob, mine)  # alice's cursor in bob's hands
    assert reply.status == 400 and reply.problem["code"] == "bad_request"


def test_a_cursor_behind_the_kept_history_is_410_resync_required(api, sql, alice):
    task = api.create_task(alice)
    replica = Replica(api, alice, limit=100)
    replica.sync()
    old = replica.cursor
    for title in ("a", "b", "c"):
        api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"title": title})
    current = Replica(api, alice, limit=100)
    current.cursor = old
    current.sync()
    # The cleanup pruned the oldest (published) entries: entry old+1 is gone.
    sql.run("UPDATE change_log SET published_at = now() WHERE user_id = :u", u=alice)
    sql.run("DELETE FROM change_log WHERE user_id = :u AND seq <= 2", u=alice)
    reply = feed(api, alice, old)
    assert reply.status == 410 and reply.problem["code"] == "resync_required"
    assert feed(api, alice, current.cursor).status == 200  # a cursor past what was pruned still works
    fresh = Replica(api, alice, limit=100)
    fresh.sync()
    fresh.assert_equal_to_the_lists()


@pytest.mark.parametrize("limit", ["0", "501", "x"])
def test_limit_is_1_to_500(api, alice, limit):
    reply = api.get("/api/me/changes", user=alice, query={"limit": limit})
    assert reply.status == 422 and reply.problem["errors"][0]["loc"] == ["query", "limit"]


def test_a_page_holds_up_to_500_and_defaults_to_100(api, sql, alice):
    api.create_task(alice)
    sql.run(
        "INSERT INTO categories (id, user_id, name) SELECT gen_random_uuid(), :u, 'c' || i FROM generate_series(1, 520) i", u=alice
    )
    assert len(feed(api, alice, limit=500).json()["items"]) == 500
    assert len(api.get("/api/me/changes", user=alice).json()["items"]) == 100


def test_a_user_who_never_wrote_gets_an_empty_feed(api, alice):
    page = feed(api, alice).json()
    assert page["items"] == [] and page["has_more"] is False and page["next_cursor"]
    assert feed(api, alice, page["next_cursor"]).json()["items"] == []
