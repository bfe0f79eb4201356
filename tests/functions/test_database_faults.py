"""What the functions answer when the database fails under them: real Postgres, real handlers.

tests/functions/test_health.py covers a database where nothing listens (503, Retry-After,
within the connect budget, nothing internal in the body). Here:
- a private server stopped and started again under warm functions: a call while it is
  down is 503 with Retry-After within the connect budget; once it is back the next calls
  work with the same engine (no cold start needed), and nothing of a write refused while
  it was down exists;
- a connection killed (`pg_terminate_backend`) in the middle of a write's transaction,
  between two statements and during one: 503 problem+json, nothing of it committed (no
  task, no user row, no idempotency record), and a retry with the same key runs afresh;
- a statement ended by `statement_timeout` (it waits for a row lock held elsewhere): 503
  with Retry-After, nothing written, and the same function works once the lock is gone.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pg8000.native
import pytest

from shared import db
from shared.local.embedded_postgres import EmbeddedPostgres, free_port
from tests.flights import kill_function_backend_when
from tests.lambda_api import LambdaApi, Reply

CONNECT_BUDGET = 1.0  # seconds: DB_CONNECT_TIMEOUT while a server is down


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test changes the environment and the cached engine; both go back after it."""
    yield
    monkeypatch.undo()
    db.reset()


def key() -> str:
    return f"key-{uuid.uuid4().hex}"


def assert_unavailable(reply: Reply) -> None:
    assert reply.status == 503, (reply.status, reply.body)
    problem = reply.problem
    assert problem["status"] == 503 and problem["code"] == "database_unavailable", problem
    assert int(reply.headers["retry-after"]) > 0
    assert "pg8000" not in reply.body.decode() and "terminat" not in reply.body.decode()


def leftovers(run: Any, user: str) -> dict[str, int]:
    """What the database holds of a user: tasks, user row, idempotency records."""
    return {
        table: run(f"SELECT count(*) FROM {table} WHERE {column} = :user", user=user)[0][0]
        for table, column in (("tasks", "user_id"), ("users", "id"), ("idempotency_keys", "user_id"))
    }


# ---------------------------------------------------------------- the server goes away and back
# Not in the pooler pass: these restart a private server of their own and reach it directly.


@pytest.fixture(scope="module")
def private_server() -> Iterator[EmbeddedPostgres]:
    """A migrated Postgres of this module's own, on a fixed port: restarted, it is found at
    the same address, as a managed database is after a restart."""
    from shared.local.migrate import migrate

    with EmbeddedPostgres.temporary(port=free_port()) as server:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DATABASE_URL", server.url)
            db.reset()
            migrate()
        db.reset()
        yield server
    db.reset()


@pytest.fixture
def on_private_server(private_server: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedPostgres]:
    monkeypatch.setenv("DATABASE_URL", private_server.url)
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", str(CONNECT_BUDGET))
    db.reset()
    yield private_server
    if not private_server.running:
        private_server.start()


def on(server: EmbeddedPostgres) -> Any:
    """`run(sql, **params)` on a fresh direct connection to the server (it restarts)."""

    def run(statement: str, **params: Any) -> list[list[Any]]:
        connection = pg8000.native.Connection(
            "postgres", host=server.host, port=server.port, database=server.database, timeout=10
        )
        try:
            return connection.run(statement, **params)
        finally:
            connection.close()

    return run


def call_while_down(call: Any) -> Reply:
    started = time.monotonic()
    reply = call()
    elapsed = time.monotonic() - started
    assert_unavailable(reply)
    assert elapsed < CONNECT_BUDGET + 0.5, f"{elapsed:.2f}s: the connect budget is {CONNECT_BUDGET}s"
    return reply


def test_a_server_restart_between_calls_is_invisible_to_warm_functions(on_private_server):
    server, api, user = on_private_server, LambdaApi(), f"carol-{uuid.uuid4().hex[:8]}"
    task = api.create_task(user, title="survives a restart")
    port = server.port

    server.stop()
    call_while_down(lambda: api.get(f"/api/me/tasks/{task['id']}", user=user))
    call_while_down(lambda: api.get("/health", user=None))

    server.start()
    assert server.port == port  # the same address: nothing in the functions' configuration changed
    reply = api.get(f"/api/me/tasks/{task['id']}", user=user)
    assert (reply.status, reply.json()) == (200, task)
    reply = api.patch(f"/api/me/tasks/{task['id']}", user=user, json={"title": "and is edited after it"})
    assert (reply.status, reply.json()["version"]) == (200, 2)  # each call simply connected again


def test_a_write_refused_while_the_server_is_down_leaves_nothing_once_it_is_back(on_private_server):
    server, api, user = on_private_server, LambdaApi(), f"dave-{uuid.uuid4().hex[:8]}"
    headers = {"idempotency-key": key()}
    request = {"user": user, "json": {"title": "written while down?"}, "headers": headers}

    server.stop()
    call_while_down(lambda: api.post("/api/me/tasks", **request))
    server.start()

    assert leftovers(on(server), user) == {"tasks": 0, "users": 0, "idempotency_keys": 0}
    retry = api.post("/api/me/tasks", **request)
    assert retry.status == 201 and "idempotent-replayed" not in retry.headers, retry.body
    assert leftovers(on(server), user) == {"tasks": 1, "users": 1, "idempotency_keys": 1}


# -------------------------------------------------------- a connection killed mid-transaction


@pytest.mark.pooler  # behind pgbouncer too: it relays the killed server connection's error
def test_a_connection_killed_between_statements_of_a_write_commits_nothing(api, sql, alice, database_url):
    """POST with an Idempotency-Key: the flight's first statements ran (the key is claimed),
    then its user upsert waits on the user's row, locked here, and its backend is terminated."""
    api.create_task(alice, title="the user exists")
    request = {"user": alice, "json": {"title": "half-written?"}, "headers": {"idempotency-key": key()}}
    sql.run("BEGIN")
    sql.run("SELECT 1 FROM users WHERE id = :id FOR UPDATE", id=alice)
    killed: list[Any] = []
    killer = _kill_when_waiting_on_a_lock(database_url, killed)
    try:
        reply = api.post("/api/me/tasks", **request)
    finally:
        killer.join(10)
        sql.run("ROLLBACK")

    assert killed == [True], killed
    assert_unavailable(reply)
    assert leftovers(sql.run, alice) == {"tasks": 1, "users": 1, "idempotency_keys": 0}

    retry = api.post("/api/me/tasks", **request)
    assert retry.status == 201 and "idempotent-replayed" not in retry.headers, retry.body
    assert leftovers(sql.run, alice) == {"tasks": 2, "users": 1, "idempotency_keys": 1}


def _kill_when_waiting_on_a_lock(database_url: str, killed: list[Any]) -> threading.Thread:
    """Terminates the function's backend once it waits on a lock (so the FATAL arrives while
    its statement runs: the way a database restart hits a request)."""
    params = db.parse_database_url(database_url)

    def connect() -> pg8000.native.Connection:
        return pg8000.native.Connection(params.user, host=params.host, port=params.port, database=params.database, timeout=10)

    return kill_function_backend_when("wait_event_type = 'Lock'", connect, killed)


def test_a_connection_killed_during_a_statement_commits_nothing(api, sql, alice, database_url):
    """PATCH .../complete with an Idempotency-Key: the key is claimed, then the task's
    SELECT ... FOR UPDATE waits on a lock held here, and its backend is terminated."""
    task = api.create_task(alice)
    request = {"user": alice, "headers": {"idempotency-key": key()}}
    sql.run("BEGIN")
    sql.run("SELECT 1 FROM tasks WHERE id = CAST(:id AS uuid) FOR UPDATE", id=task["id"])
    killed: list[Any] = []
    killer = _kill_when_waiting_on_a_lock(database_url, killed)
    try:
        reply = api.patch(f"/api/me/tasks/{task['id']}/complete", **request)
    finally:
        killer.join(10)
        sql.run("ROLLBACK")

    assert killed == [True], killed
    assert_unavailable(reply)
    assert sql.run("SELECT completed, version FROM tasks WHERE id = CAST(:id AS uuid)", id=task["id"]) == [[False, 1]]
    assert leftovers(sql.run, alice)["idempotency_keys"] == 0

    retry = api.patch(f"/api/me/tasks/{task['id']}/complete", **request)
    assert retry.status == 200 and "idempotent-replayed" not in retry.headers, retry.body
    assert (retry.json()["completed"], retry.json()["version"]) == (True, 2)


# ------------------------------------------------------------------------ statement timeout


@pytest.mark.pooler
def test_a_statement_ended_by_the_statement_timeout_is_a_clean_503(api, sql, alice, monkeypatch):
    task = api.create_task(alice, title="before")
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT", "0.3")
    db.reset()

    sql.run("BEGIN")
    sql.run("SELECT 1 FROM tasks WHERE id = CAST(:id AS uuid) FOR UPDATE", id=task["id"])
    try:
        started = time.monotonic()
        reply = api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"title": "after"})
        elapsed = time.monotonic() - started
    finally:
        sql.run("ROLLBACK")

    assert_unavailable(reply)
    assert 0.3 <= elapsed < 3, f"{elapsed:.2f}s for a 0.3 s statement timeout"
    assert sql.run("SELECT title, version FROM tasks WHERE id = CAST(:id AS uuid)", id=task["id"]) == [["before", 1]]

    reply = api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"title": "after"})
    assert (reply.status, reply.json()["title"], reply.json()["version"]) == (200, "after", 2)
