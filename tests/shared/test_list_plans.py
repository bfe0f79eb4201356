"""The list's plans, taken as the functions run (role todo_app, the caller's app.user_id).

Row-level security keeps a query's non-leakproof quals from becoming index conditions
(docs/decisions/0007). These plans are the guard: every sort's deep page reads its own
index with the cursor in the Index Cond, and `q` and `tag` go through their SECURITY
DEFINER functions, whose own queries use the per-user GIN indexes. A policy or query
change that loses an index fails here (no timing involved).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pg8000.native
import pytest

from shared import db
from shared.task_listing import TaskFilters, page_query
from tests.flights import explain

BIG, OTHER = "plans-big", "plans-other"
SIZE = 30_000
INDEX = {
    "created_at": "ix_tasks_user_created",
    "updated_at": "ix_tasks_user_updated",
    "priority": "ix_tasks_user_priority",
    "title": "ix_tasks_user_title",
    "due_at": "ix_tasks_user_due_asc",
    "-due_at": "ix_tasks_user_due_desc",
}
KEY = {"created_at": "created_at", "updated_at": "updated_at", "priority": "priority", "title": "title_key"}
SORTS = ["created_at", "updated_at", "due_at", "priority", "title"]


@pytest.fixture(scope="module")
def big_table(database_url: str) -> Iterator[pg8000.native.Connection]:
    """30k tasks of one user and 3k of another, with ties, nulls, tags and words, analyzed."""
    params = db.parse_database_url(database_url)
    sql = pg8000.native.Connection(params.user, host=params.host, port=params.port, database=params.database)
    sql.run("INSERT INTO users (id) VALUES (:a), (:b)", a=BIG, b=OTHER)
    for user, size in ((BIG, SIZE), (OTHER, SIZE // 10)):
        sql.run(
            """
            INSERT INTO tasks (id, user_id, title, description, priority, due_at, tags, created_at, updated_at)
            SELECT gen_random_uuid(), :u, (ARRAY['Milk', 'bread', 'Oat', 'tea'])[1 + i % 4] || ' ' || (i % 997),
                   CASE WHEN i % 500 = 0 THEN 'rare quokka sighting' ELSE 'nothing ' || md5(i::text) END,
                   i % 3, CASE WHEN i % 10 < 3 THEN NULL ELSE now() + (i % 1000) * interval '1 hour' END,
                   CASE WHEN i % 400 = 0 THEN ARRAY['rare'] WHEN i % 3 = 0 THEN ARRAY['work', 'home'] ELSE '{}' END,
                   now() - (i % 5000) * interval '1 minute', now() - (i % 4000) * interval '1 minute'
            FROM generate_series(1, :n) AS i
            """,
            u=user,
            n=size,
        )
    sql.run("VACUUM ANALYZE tasks")
    yield sql
    sql.run("DELETE FROM tasks WHERE user_id IN (:a, :b)", a=BIG, b=OTHER)
    sql.run("DELETE FROM users WHERE id IN (:a, :b)", a=BIG, b=OTHER)
    sql.close()


def _middle(sql: pg8000.native.Connection, sort: str) -> list[str]:
    """The cursor position of the row in the middle of the sort's order, as the database renders it."""
    name = sort.lstrip("-")
    key = {"due_at": "due_key_desc" if sort.startswith("-") else "due_key_asc"}.get(name, KEY.get(name))
    direction = "DESC" if sort.startswith("-") else "ASC"
    value, task_id = sql.run(
        f"SELECT {key}::text, id::text FROM tasks WHERE user_id = :u AND deleted_at IS NULL"
        f" ORDER BY {key} {direction}, id {direction} OFFSET :half LIMIT 1",
        u=BIG,
        half=SIZE // 2,
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


@pytest.mark.parametrize(
    "filters",
    [TaskFilters(tag="rare"), TaskFilters(q="quokka"), TaskFilters(q="rare quokka", tag="rare")],
    ids=["tag", "q", "q+tag"],
)
def test_tag_and_q_go_through_their_functions_and_never_scan_the_table(big_table, filters):
    plan = explain(page_query(BIG, filters, "-created_at", None, 50), user_id=BIG)
    assert "Seq Scan" not in plan, plan
    if filters.tag:
        assert "caller_task_ids_tagged" in plan, plan
    if filters.q:
        assert "caller_task_ids_matching" in plan, plan


@pytest.mark.parametrize(
    ("function", "query", "index"),
    [
        ("caller_task_ids_tagged", "SELECT caller_task_ids_tagged('rare')", "ix_tasks_user_tags"),
        ("caller_task_ids_matching", "SELECT caller_task_ids_matching('%quokka%', ARRAY['%quokka%'])", "ix_tasks_user_search"),
    ],
)
def test_inside_each_function_the_per_user_gin_index_serves_the_filter(big_table, function, query, index):
    """The function's own statement (its body, run as its owner todo_search) uses its index."""
    body = big_table.run("SELECT prosrc FROM pg_proc WHERE proname = :f", f=function)[0][0]
    args = {"caller_task_ids_tagged": {"tag": "'rare'"}, "caller_task_ids_matching": {"rarest": "'%quokka%'", "patterns": "ARRAY['%quokka%']"}}
    for name, value in args[function].items():
        body = re.sub(rf"\b{name}\b(?!\s*\()", value, body.replace(f"t.{name}", f"t.\x00{name}")).replace("\x00", "")
    plan = explain(db.Query(body), user_id=BIG, role="todo_search", analyze=True)
    assert f"Bitmap Index Scan on {index}" in plan, plan
    assert "Seq Scan" not in plan, plan
    rows = db.flight(db.Query(query), user_id=BIG)[0].rows
    assert len(rows) == {"caller_task_ids_tagged": SIZE // 400, "caller_task_ids_matching": SIZE // 500}[function]


@pytest.mark.parametrize(
    ("query", "per"), [("SELECT caller_task_ids_tagged('rare') AS id", 400), ("SELECT caller_task_ids_matching('%quokka%', ARRAY['%quokka%']) AS id", 500)]
)
def test_the_functions_return_the_callers_ids_only(big_table, query, per):
    """SECURITY DEFINER sees every row of `tasks`: each function must filter by app.user_id itself.
    The ids it gives are checked here as the superuser, where no policy could hide a leak."""
    for user, size in ((BIG, SIZE), (OTHER, SIZE // 10), ("nobody", 0), (None, 0)):
        (result,) = db.flight(db.Query(query), user_id=user)
        ids = [str(row["id"]) for row in result.rows]
        owners = big_table.run("SELECT DISTINCT user_id FROM tasks WHERE id::text = ANY(:ids)", ids=ids) if ids else []
        assert len(ids) == size // per and owners == ([[user]] if size else []), (user, owners)
