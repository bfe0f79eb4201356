"""The second wall: even a query with no owner filter at all, run through the application's
own transaction for user A, neither sees nor changes user B's rows (row-level security)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, text

from shared.db import transaction

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler


@pytest.fixture
def two_users(api, alice, bob):
    for user in (alice, bob):
        category = api.create_category(user, f"{user}'s")
        api.create_task(user, title=f"{user}'s task", category_id=category["id"])
        trashed = api.create_task(user, title=f"{user}'s trashed")
        api.delete(f"/api/me/tasks/{trashed['id']}", user=user)
        api.post("/api/me/tasks", user=user, json={"title": "keyed"}, headers={"idempotency-key": f"{user}-key"})
    return alice, bob


def test_the_application_role_is_neither_owner_nor_superuser(database_url):
    with transaction("anyone") as session:
        role, superuser, bypass, owns = session.execute(
            text(
                "SELECT current_user, rolsuper, rolbypassrls, "
                "EXISTS (SELECT FROM pg_tables WHERE tablename = 'tasks' AND tableowner = current_user) "
                "FROM pg_roles WHERE rolname = current_user"
            )
        ).one()
    assert (role, superuser, bypass, owns) == ("todo_app", False, False, False)


@pytest.mark.parametrize("table", ["tasks", "categories", "users", "idempotency_keys"])
def test_a_query_without_an_owner_filter_sees_only_the_callers_rows(two_users, sql, table):
    alice, bob = two_users
    owner = "id" if table == "users" else "user_id"
    with transaction(alice) as session:
        seen = {row[0] for row in session.execute(text(f"SELECT {owner} FROM {table}"))}
    assert seen == {alice}
    assert sql.run(f"SELECT count(*) FROM {table} WHERE {owner} = :b", b=bob)[0][0] > 0  # bob's rows exist


def test_writes_without_an_owner_filter_touch_only_the_callers_rows(two_users, sql):
    alice, bob = two_users
    bobs_before = sql.run("SELECT * FROM tasks WHERE user_id = :b ORDER BY id", b=bob)
    with transaction(alice) as session:
        updated = session.execute(text("UPDATE tasks SET title = 'overwritten'")).rowcount
        session.execute(text("DELETE FROM idempotency_keys"))
        session.execute(text("UPDATE categories SET name = 'overwritten'"))
    assert updated == sql.run("SELECT count(*) FROM tasks WHERE user_id = :a", a=alice)[0][0]
    assert sql.run("SELECT * FROM tasks WHERE user_id = :b ORDER BY id", b=bob) == bobs_before
    assert sql.run("SELECT count(*) FROM idempotency_keys WHERE user_id = :b", b=bob) == [[1]]
    assert sql.run("SELECT name FROM categories WHERE user_id = :b", b=bob) == [[f"{bob}'s"]]
    with transaction(alice) as session:
        session.execute(text("DELETE FROM tasks"))
    assert sql.run("SELECT * FROM tasks WHERE user_id = :b ORDER BY id", b=bob) == bobs_before


def test_a_row_cannot_be_written_in_another_users_name(two_users, sql):
    alice, bob = two_users
    with pytest.raises(exc.DBAPIError, match="row-level security"), transaction(alice) as session:
        session.execute(text("INSERT INTO tasks (id, user_id, title) VALUES (gen_random_uuid(), :b, 'planted')"), {"b": bob})
    with pytest.raises(exc.DBAPIError, match="row-level security"), transaction(alice) as session:
        session.execute(text("UPDATE tasks SET user_id = :b"), {"b": bob})
    assert sql.run("SELECT count(*) FROM tasks WHERE title = 'planted'") == [[0]]


def test_without_a_caller_nothing_is_visible(two_users):
    with transaction() as session:
        assert session.execute(text("SELECT count(*) FROM tasks")).scalar() == 0


def test_the_cleanup_role_sees_only_trash_and_expired_records(two_users, sql):
    alice, bob = two_users
    sql.run("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE user_id = :a", a=alice)
    users = {"a": alice, "b": bob}
    with transaction(role="todo_cleanup") as session:
        trash = session.execute(
            text("SELECT bool_and(deleted_at IS NOT NULL), count(*) FROM tasks WHERE user_id IN (:a, :b)"), users
        ).one()
        keys = session.execute(text("SELECT user_id FROM idempotency_keys WHERE user_id IN (:a, :b)"), users).all()
    assert trash == (True, 2)  # of their four live and two trashed tasks
    assert keys == [(alice,)]  # bob's record has not expired
    with pytest.raises(exc.DBAPIError, match="permission denied"), transaction(role="todo_cleanup") as session:
        session.execute(text("SELECT count(*) FROM categories"))
