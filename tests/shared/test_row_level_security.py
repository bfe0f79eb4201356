"""The second wall: even a query with no owner filter at all, run through the application's
own transaction for user A, neither sees nor changes user B's rows (row-level security)."""

from __future__ import annotations

import pytest
from shared.db import CLEANUP_ROLE, Query, QueryFailed, flight

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler


@pytest.fixture
def two_users(api, alice, bob):
    for user in (alice, bob):
        category = api.create_category(user, f"{user}'s")
        api.create_task(user, title=f"{user}'s task", category_id=category["id"], tags=["shared-tag"])
        trashed = api.create_task(user, title=f"{user}'s trashed")
        api.delete(f"/api/me/tasks/{trashed['id']}", user=user)
        api.post("/api/me/tasks", user=user, json={"title": "keyed"}, headers={"idempotency-key": f"{user}-key"})
    return alice, bob


def test_the_application_role_is_neither_owner_nor_superuser(database_url):
    (result,) = flight(
        Query(
            "SELECT current_user AS role, rolsuper, rolbypassrls, "
            "EXISTS (SELECT FROM pg_tables WHERE tablename = 'tasks' AND tableowner = current_user) AS owns "
            "FROM pg_roles WHERE rolname = current_user"
        ),
        user_id="anyone",
    )
    assert result.rows == [{"role": "todo_app", "rolsuper": False, "rolbypassrls": False, "owns": False}]


@pytest.mark.parametrize("table", ["tasks", "categories", "users", "idempotency_keys", "task_tags", "change_log"])
def test_a_query_without_an_owner_filter_sees_only_the_callers_rows(two_users, sql, table):
    alice, bob = two_users
    owner = "id" if table == "users" else "user_id"
    seen = {row["owner"] for row in flight(Query(f"SELECT {owner} AS owner FROM {table}"), user_id=alice)[0].rows}
    assert seen == {alice}
    assert sql.run(f"SELECT count(*) FROM {table} WHERE {owner} = :b", b=bob)[0][0] > 0  # bob's rows exist


def test_writes_without_an_owner_filter_touch_only_the_callers_rows(two_users, sql):
    alice, bob = two_users
    bobs_before = sql.run("SELECT * FROM tasks WHERE user_id = :b ORDER BY id", b=bob)
    updated = flight(
        Query("UPDATE tasks SET title = 'overwritten'"),
        Query("DELETE FROM idempotency_keys"),
        Query("UPDATE categories SET name = 'overwritten'"),
        user_id=alice,
    )[0].row_count
    assert updated == sql.run("SELECT count(*) FROM tasks WHERE user_id = :a", a=alice)[0][0]
    assert sql.run("SELECT * FROM tasks WHERE user_id = :b ORDER BY id", b=bob) == bobs_before
    assert sql.run("SELECT count(*) FROM idempotency_keys WHERE user_id = :b", b=bob) == [[1]]
    assert sql.run("SELECT name FROM categories WHERE user_id = :b", b=bob) == [[f"{bob}'s"]]
    flight(Query("DELETE FROM tasks"), user_id=alice)
    assert sql.run("SELECT * FROM tasks WHERE user_id = :b ORDER BY id", b=bob) == bobs_before


def test_a_row_cannot_be_written_in_another_users_name(two_users, sql):
    alice, bob = two_users
    with pytest.raises(QueryFailed, match="row-level security"):
        flight(Query("INSERT INTO tasks (id, user_id, title) VALUES (gen_random_uuid(), $1, 'planted')", (bob,)), user_id=alice)
    with pytest.raises(QueryFailed, match="row-level security"):
        flight(Query("UPDATE tasks SET user_id = $1", (bob,)), user_id=alice)
    assert sql.run("SELECT count(*) FROM tasks WHERE title = 'planted'") == [[0]]


def test_without_a_caller_nothing_is_visible(two_users):
    assert flight(Query("SELECT count(*) AS n FROM tasks"))[0].rows == [{"n": 0}]


def test_the_cleanup_role_sees_only_trash_and_expired_records(two_users, sql):
    alice, bob = two_users
    sql.run("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE user_id = :a", a=alice)
    trash, keys = flight(
        Query("SELECT bool_and(deleted_at IS NOT NULL) AS trashed, count(*) AS n FROM tasks WHERE user_id IN ($1, $2)", (alice, bob)),
        Query("SELECT user_id FROM idempotency_keys WHERE user_id IN ($1, $2)", (alice, bob)),
        role=CLEANUP_ROLE,
    )
    assert trash.rows == [{"trashed": True, "n": 2}]  # of their four live and two trashed tasks
    assert keys.rows == [{"user_id": alice}]  # bob's record has not expired
    with pytest.raises(QueryFailed, match="permission denied"):
        flight(Query("SELECT count(*) FROM categories"), role=CLEANUP_ROLE)


def test_the_change_log_is_written_by_its_triggers_only(two_users, sql):
    """The application role reads its own entries and cannot forge, edit or drop any; the
    publisher may only mark entries published; nobody may call the trigger functions."""
    alice, _ = two_users
    for statement in (
        "INSERT INTO change_log (user_id, seq, kind, object_id, action, at) VALUES ($1, 999, 'task', gen_random_uuid(), 'created', now())",
        "UPDATE change_log SET published_at = now() WHERE user_id = $1",
        "DELETE FROM change_log WHERE user_id = $1",
        "UPDATE users SET last_change = 0 WHERE id = $1 AND false",
    ):
        with pytest.raises(QueryFailed, match="permission denied"):
            flight(Query(statement, (alice,)), user_id=alice)
    with pytest.raises(QueryFailed, match="permission denied"):
        flight(Query("UPDATE change_log SET seq = seq + 1000"), role="todo_publisher")
    with pytest.raises(QueryFailed, match="permission denied"):
        flight(Query("UPDATE users SET last_change = 0"), role="todo_publisher")
    with pytest.raises(QueryFailed, match="trigger functions can only be called as triggers"):
        flight(Query("SELECT change_log_tasks()"), user_id=alice)
