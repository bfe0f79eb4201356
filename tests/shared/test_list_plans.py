"""The list's plans, taken as the functions run (role todo_app, the caller's app.user_id).

Row-level security keeps a query's non-leakproof quals from becoming index conditions
(docs/decisions/0007). These plans are the guard: every sort's deep page reads its own
index with the cursor in the Index Cond, `q` goes through its SECURITY DEFINER function,
whose own query uses the per-user trigram index, and `tag` reads the primary key of
`task_tags`, the side table the triggers on `tasks` keep (migration 0007). A policy or
query change that loses an index fails here (no timing involved). The last tests check
that every write of the API keeps `task_tags` what the tasks say.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pg8000.native
import pytest

from shared import db
from shared.task_listing import TaskFilters, page_query
from tests.flights import explain
from tests.lambda_api import LambdaApi

BIG, OTHER = "plans-big", "plans-other"
SIZE = 30_000
CHILDREN = 180
INDEX = {
    "created_at": "ix_tasks_user_created",
    "updated_at": "ix_tasks_user_updated",
    "priority": "ix_tasks_user_priority",
    "title": "ix_tasks_user_title",
    "due_at": "ix_tasks_user_due_asc",
    "-due_at": "ix_tasks_user_due_desc",
    "position": "ix_tasks_user_position",
}
KEY = {"created_at": "created_at", "updated_at": "updated_at", "priority": "priority", "title": "title_key", "position": "position"}
SORTS = ["created_at", "updated_at", "due_at", "priority", "title", "position"]


@pytest.fixture(scope="module")
def big_table(database_url: str) -> Iterator[pg8000.native.Connection]:
    """30k tasks of one user and 3k of another, with ties, nulls, tags and words, analyzed."""
    params = db.parse_database_url(database_url)
    sql = pg8000.native.Connection(params.user, host=params.host, port=params.port, database=params.database)
    sql.run("INSERT INTO users (id) VALUES (:a), (:b)", a=BIG, b=OTHER)
    for user, size in ((BIG, SIZE), (OTHER, SIZE // 10)):
        sql.run(
            """
            INSERT INTO tasks (id, user_id, title, description, priority, due_at, tags, created_at, updated_at, position)
            SELECT gen_random_uuid(), :u, (ARRAY['Milk', 'bread', 'Oat', 'tea'])[1 + i % 4] || ' ' || (i % 997),
                   CASE WHEN i % 500 = 0 THEN 'rare quokka sighting' ELSE 'nothing ' || md5(i::text) END,
                   i % 3, CASE WHEN i % 10 < 3 THEN NULL ELSE now() + (i % 1000) * interval '1 hour' END,
                   CASE WHEN i % 400 = 0 THEN ARRAY['rare'] WHEN i % 3 = 0 THEN ARRAY['work', 'home'] ELSE '{}' END,
                   now() - (i % 5000) * interval '1 minute', now() - (i % 4000) * interval '1 minute',
                   position_of_rank((i * 7919) % :n)  -- manual order unrelated to the other sorts
            FROM generate_series(1, :n) AS i
            """,
            u=user,
            n=size,
        )
    # One task of the big user with CHILDREN subtasks (their own order), the others top-level.
    sql.run(
        """
        INSERT INTO tasks (id, user_id, title, parent_id, position, created_at, updated_at)
        SELECT gen_random_uuid(), CAST(:u AS varchar), 'step ' || i, (SELECT id FROM tasks WHERE user_id = CAST(:u AS varchar) ORDER BY id LIMIT 1),
               position_of_rank(i), now(), now()
        FROM generate_series(0, :n - 1) AS i
        """,
        u=BIG,
        n=CHILDREN,
    )
    sql.run("VACUUM ANALYZE tasks")
    sql.run("VACUUM ANALYZE task_tags")
    yield sql
    sql.run("DELETE FROM tasks WHERE user_id IN (:a, :b)", a=BIG, b=OTHER)
    sql.run("DELETE FROM users WHERE id IN (:a, :b)", a=BIG, b=OTHER)
    sql.close()


def _middle(sql: pg8000.native.Connection, sort: str, where: str = "true", rows: int = SIZE) -> list[str]:
    """The cursor position of the row in the middle of the sort's order, as the database renders it."""
    name = sort.lstrip("-")
    key = {"due_at": "due_key_desc" if sort.startswith("-") else "due_key_asc"}.get(name, KEY.get(name))
    direction = "DESC" if sort.startswith("-") else "ASC"
    value, task_id = sql.run(
        f"SELECT {key}::text, id::text FROM tasks WHERE user_id = :u AND deleted_at IS NULL AND {where}"
        f" ORDER BY {key} {direction}, id {direction} OFFSET :half LIMIT 1",
        u=BIG,
        half=rows // 2,
    )[0]
    return [value, task_id]


@pytest.mark.parametrize("sort", SORTS + [f"-{s}" for s in SORTS])
def test_every_sorts_deep_page_reads_its_index_with_the_cursor_in_the_index_cond(big_table, sort):
    plan = explain(page_query(BIG, TaskFilters(), sort, _middle(big_table, sort), 50), user_id=BIG)
    index = INDEX.get(sort, INDEX[sort.lstrip("-")])
    scan = re.search(rf"Index Scan(?: Backward)? using {index} on tasks", plan)
    assert scan, plan
    cond = next(line for line in plan.splitlines() if "Index Cond" in line)
    assert "ROW(" in cond and "user_id" in cond, plan  # the cursor's row comparison, not a Filter
    assert "Sort" not in plan.replace("Sort Key", ""), plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.parametrize("sort", ["position", "-position"])
@pytest.mark.parametrize("which", ["a task's subtasks", "top-level tasks"])
def test_parent_id_with_sort_position_reads_the_parent_index_with_parent_and_cursor_in_the_index_cond(big_table, sort, which):
    (parent,) = big_table.run("SELECT parent_id::text FROM tasks WHERE user_id = :u AND parent_id IS NOT NULL LIMIT 1", u=BIG)[0]
    if which == "top-level tasks":
        filters, where, rows = TaskFilters(parent_id="none"), "parent_id IS NULL", SIZE
    else:
        filters, where, rows = TaskFilters(parent_id=uuid.UUID(parent)), f"parent_id = '{parent}'", CHILDREN
    plan = explain(page_query(BIG, filters, sort, _middle(big_table, sort, where, rows), 50), user_id=BIG)
    scan = re.search(r"Index Scan(?: Backward)? (?:using|on) (ix_tasks_user_parent_position|ix_tasks_user_position)", plan)
    assert scan, plan
    cond = next(line for line in plan.splitlines() if "Index Cond" in line)
    assert "ROW(" in cond and "user_id" in cond, plan
    assert "Seq Scan" not in plan, plan
    if which == "top-level tasks":  # a task's subtasks are at most 200: a Sort of them may be cheaper, by design
        assert "Sort" not in plan.replace("Sort Key", ""), plan
    if scan.group(1) == "ix_tasks_user_parent_position":
        assert "parent_id" in cond and "Filter" not in plan.replace("One-Time Filter", ""), plan
    else:
        # Top-level tasks are nearly all of this user's: the planner may read the position
        # index and drop the few subtasks it meets (a filter on a plain column, IS NULL).
        assert which == "top-level tasks" and "Filter: (parent_id IS NULL)" in plan, plan
    page = db.flight(page_query(BIG, filters, sort, None, 200), user_id=BIG)[0].rows
    assert len(page) == min(201, rows) and {str(row["parent_id"]) if row["parent_id"] else None for row in page} == {
        None if which == "top-level tasks" else parent
    }


@pytest.mark.parametrize(
    "filters",
    [TaskFilters(tag="rare"), TaskFilters(q="quokka"), TaskFilters(q="rare quokka", tag="rare")],
    ids=["tag", "q", "q+tag"],
)
def test_q_goes_through_its_function_and_tag_through_task_tags_and_never_scan_the_table(big_table, filters):
    analyzed = explain(page_query(BIG, filters, "-created_at", None, 50), user_id=BIG, analyze=True)
    assert "Seq Scan" not in analyzed, analyzed
    if filters.tag:
        assert re.search(r"Index Only Scan(?: Backward)? using task_tags_pkey on task_tags", analyzed), analyzed
        cond = next(line for line in analyzed.splitlines() if "Index Cond" in line and "tag" in line)
        assert "user_id" in cond, analyzed  # owner and tag both bound the range: no Filter of other users' rows
        assert "caller_task_ids_tagged" not in analyzed, analyzed
    if filters.q:
        assert "caller_task_ids_matching" in analyzed, analyzed
    rows = db.flight(page_query(BIG, filters, "-created_at", None, 500), user_id=BIG)[0].rows
    per = {"tag": 400, "q": 500, "q+tag": 2000}["q+tag" if filters.q and filters.tag else "tag" if filters.tag else "q"]
    assert len(rows) == SIZE // per, (filters, len(rows))


def test_inside_the_q_function_the_per_user_gin_index_serves_the_filter(big_table):
    """The function's own statement (its body, run as its owner todo_search) uses its index."""
    function, index = "caller_task_ids_matching", "ix_tasks_user_search"
    body = big_table.run("SELECT prosrc FROM pg_proc WHERE proname = :f", f=function)[0][0]
    for name, value in {"rarest": "'%quokka%'", "patterns": "ARRAY['%quokka%']"}.items():
        body = re.sub(rf"\b{name}\b(?!\s*\()", value, body.replace(f"t.{name}", f"t.\x00{name}")).replace("\x00", "")
    plan = explain(db.Query(body), user_id=BIG, role="todo_search", analyze=True)
    assert f"Bitmap Index Scan on {index}" in plan, plan
    assert "Seq Scan" not in plan, plan
    rows = db.flight(db.Query("SELECT caller_task_ids_matching('%quokka%', ARRAY['%quokka%'])"), user_id=BIG)[0].rows
    assert len(rows) == SIZE // 500


@pytest.mark.parametrize(("query", "per"), [("SELECT caller_task_ids_matching('%quokka%', ARRAY['%quokka%']) AS id", 500)])
def test_the_functions_return_the_callers_ids_only(big_table, query, per):
    """SECURITY DEFINER sees every row of `tasks`: each function must filter by app.user_id itself.
    The ids it gives are checked here as the superuser, where no policy could hide a leak."""
    for user, size in ((BIG, SIZE), (OTHER, SIZE // 10), ("nobody", 0), (None, 0)):
        (result,) = db.flight(db.Query(query), user_id=user)
        ids = [str(row["id"]) for row in result.rows]
        owners = big_table.run("SELECT DISTINCT user_id FROM tasks WHERE id::text = ANY(:ids)", ids=ids) if ids else []
        assert len(ids) == size // per and owners == ([[user]] if size else []), (user, owners)


# ------------------------------------------------------------ task_tags follows every write


def _tagged(api: LambdaApi, user: str, tag: str) -> set[str]:
    """The ids `GET /tasks?tag=` lists for `user` (the list filter reads task_tags)."""
    reply = api.get("/api/me/tasks", user=user, query={"tag": tag, "limit": 100})
    assert reply.status == 200, reply.body
    return {item["id"] for item in reply.json()["items"]}


def _rows(sql: pg8000.native.Connection, *task_ids: str) -> set[tuple[str, str, str]]:
    """task_tags as the superuser sees it, for these tasks: (owner, tag, task)."""
    found = sql.run("SELECT user_id, tag, task_id::text FROM task_tags WHERE task_id::text = ANY(:ids)", ids=list(task_ids))
    return {tuple(row) for row in found}


def test_create_put_patch_trash_restore_and_purge_keep_task_tags_what_the_tasks_say(api, sql, alice, bob):
    a = api.create_task(alice, title="a", tags=["trip", "work"])
    b = api.create_task(bob, title="b", tags=["trip"])
    assert _rows(sql, a["id"], b["id"]) == {(alice, "trip", a["id"]), (alice, "work", a["id"]), (bob, "trip", b["id"])}
    assert _tagged(api, alice, "trip") == {a["id"]} and _tagged(api, bob, "trip") == {b["id"]}

    assert api.put(f"/api/me/tasks/{a['id']}", user=alice, json={"title": "a", "tags": ["home"]}).status == 200
    assert _rows(sql, a["id"]) == {(alice, "home", a["id"])}
    assert _tagged(api, alice, "trip") == set() and _tagged(api, alice, "home") == {a["id"]}
    assert _tagged(api, bob, "trip") == {b["id"]}  # bob's row untouched

    assert api.patch(f"/api/me/tasks/{a['id']}", user=alice, json={"tags": ["home", "trip"]}).status == 200
    assert _rows(sql, a["id"]) == {(alice, "home", a["id"]), (alice, "trip", a["id"])}
    assert api.patch(f"/api/me/tasks/{a['id']}", user=alice, json={"title": "renamed"}).status == 200  # tags unchanged
    assert _tagged(api, alice, "trip") == {a["id"]}

    assert api.delete(f"/api/me/tasks/{a['id']}", user=alice).status == 204  # to the trash: out of task_tags
    assert _rows(sql, a["id"]) == set() and _tagged(api, alice, "trip") == set()
    assert api.post(f"/api/me/trash/{a['id']}/restore", user=alice).status == 200
    assert _rows(sql, a["id"]) == {(alice, "home", a["id"]), (alice, "trip", a["id"])}
    assert _tagged(api, alice, "home") == {a["id"]}

    # Purges: the cleanup (todo_cleanup, no grant on task_tags) deletes a trashed task, and a
    # stray row of it left by hand goes by ON DELETE CASCADE, which Postgres runs as the
    # owner of task_tags; a live task deleted as todo_app takes its rows with it the same way.
    assert api.delete(f"/api/me/tasks/{a['id']}", user=alice).status == 204
    sql.run("INSERT INTO task_tags (user_id, tag, task_id) VALUES (:u, 'stray', CAST(:t AS uuid))", u=alice, t=a["id"])
    (gone,) = db.flight(db.Query("DELETE FROM tasks WHERE id = $1::uuid", (a["id"],)), user_id=None, role=db.CLEANUP_ROLE)
    assert gone.row_count == 1 and _rows(sql, a["id"]) == set()
    (gone,) = db.flight(db.Query("DELETE FROM tasks WHERE id = $1::uuid", (b["id"],)), user_id=bob)
    assert gone.row_count == 1 and _rows(sql, b["id"]) == set() and _tagged(api, bob, "trip") == set()


def test_a_recurring_tasks_successor_carries_its_tags_into_task_tags(api, sql, alice):
    from datetime import datetime, timedelta, timezone

    due = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    task = api.create_task(alice, title="water plants", tags=["home"], recurrence="FREQ=DAILY", due_at=due)
    reply = api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice, json={"completed": True})
    assert reply.status == 200, reply.body
    (successor,) = sql.run("SELECT id::text FROM tasks WHERE successor_of = CAST(:t AS uuid)", t=task["id"])[0]
    assert _rows(sql, successor) == {(alice, "home", successor)}  # the INSERT in the completing statement fired the trigger
    assert _tagged(api, alice, "home") == {task["id"], successor}  # a completed task is still listed
