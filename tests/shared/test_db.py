"""Flights (shared/db.py): one write, one Sync, one transaction, the settings held to its end."""

from __future__ import annotations

import time
import uuid

import pytest

from shared import db
from shared.errors import DatabaseUnavailable
from tests.lambda_api import LambdaApi


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts, for each flight, the Sync messages written on the wire (the socket's writes)."""
    counted: list[int] = []
    real = db._exchange

    def counting(sock, queries):
        class Tap:
            def write(self, data: bytes) -> int:
                counted.append(_syncs_in(data))
                return sock.write(data)

            def __getattr__(self, name: str):
                return getattr(sock, name)

        return real(Tap(), queries)

    monkeypatch.setattr(db, "_exchange", counting)
    return counted


def _syncs_in(data: bytes) -> int:
    """Walks the frontend messages in `data` and counts the Syncs ('S', length 4)."""
    count, position = 0, 0
    while position < len(data):
        code, length = data[position : position + 1], int.from_bytes(data[position + 1 : position + 5], "big")
        count += code == b"S"
        position += 1 + length
    return count


def test_a_flight_is_one_write_with_one_sync_for_all_its_statements(database_url, syncs):
    results = db.flight(db.Query("SELECT 1 AS a"), db.Query("SELECT 2 AS b"), db.Query("SELECT 3 AS c"))
    assert [r.rows for r in results] == [[{"a": 1}], [{"b": 2}], [{"c": 3}]]
    assert syncs == [1]


def test_the_transaction_local_settings_hold_to_the_end_of_the_flight_and_no_longer(database_url):
    probe = db.Query(
        "SELECT current_user AS role, current_setting('app.user_id') AS caller, current_setting('statement_timeout') AS timeout"
    )
    first, last = db.flight(probe, db.Query("SELECT pg_sleep(0.01)"), probe, user_id="alice")[::2]
    assert first.rows == last.rows == [{"role": "todo_app", "caller": "alice", "timeout": "5s"}]
    (after,) = db.flight(db.Query("SELECT current_setting('app.user_id', true) AS caller"))  # a new flight: nothing carried
    assert after.rows == [{"caller": ""}]


def test_a_statement_failing_in_the_middle_leaves_nothing_of_the_flight_written(database_url, sql):
    marker = f"mid-{uuid.uuid4().hex[:8]}"
    insert = db.Query("INSERT INTO users (id) VALUES ($1)", (marker,))
    with pytest.raises(db.QueryFailed) as failed:
        db.flight(insert, db.Query("SELECT 1 / 0"), db.Query("INSERT INTO users (id) VALUES ($1 || '-2')", (marker,)), user_id=marker)
    assert (failed.value.index, failed.value.sqlstate) == (1, "22012")
    assert sql.run("SELECT count(*) FROM users WHERE id LIKE :m", m=f"{marker}%") == [[0]]
    db.flight(insert, user_id=marker)  # and the same statement alone commits
    assert sql.run("SELECT count(*) FROM users WHERE id = :m", m=marker) == [[1]]


def test_a_failure_names_its_constraint(database_url, sql):
    marker = f"dup-{uuid.uuid4().hex[:8]}"
    insert = db.Query("INSERT INTO users (id) VALUES ($1)", (marker,))
    with pytest.raises(db.QueryFailed) as failed:
        db.flight(insert, insert, user_id=marker)
    assert (failed.value.index, failed.value.sqlstate, failed.value.constraint) == (1, "23505", "users_pkey")


def test_a_statement_over_the_timeout_is_503_not_a_hang(database_url, monkeypatch):
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT", "0.2")
    db.reset()
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            db.flight(db.Query("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 2
    finally:
        monkeypatch.undo()
        db.reset()


def test_named_parameters_compile_to_numbered_ones_and_leave_casts_alone():
    statement = db.Sql("SELECT :a::uuid, ':b', :c, :a, '1'::int WHERE x = :c")
    assert statement.text == "SELECT $1::uuid, ':b', $2, $1, '1'::int WHERE x = $2"
    assert statement(a=1, c=2).params == (1, 2)
    with pytest.raises(TypeError, match="missing"):
        statement(a=1)


def test_pg8000_still_lends_its_socket_as_the_flight_expects(database_url):
    """The one pg8000 internal the executor uses: `Connection._sock`, a buffered file."""
    from shared.connect import connect_with_retry, parse_database_url

    connection = connect_with_retry(parse_database_url(database_url), budget=5)
    try:
        sock = db._wire(connection)
        assert all(callable(getattr(sock, name)) for name in ("read", "write", "flush"))
    finally:
        connection.close()


ROUTES = [
    ("GET", "/health", None, None),
    ("POST", "/api/me/tasks", {"title": "t"}, None),
    ("POST", "/api/me/tasks", {"title": "t"}, "key"),
    ("GET", "/api/me/tasks", None, None),
    ("GET", "/api/me/tasks/{task}", None, None),
    ("PUT", "/api/me/tasks/{task}", {"title": "u"}, None),
    ("PATCH", "/api/me/tasks/{task}", {"title": "v"}, None),
    ("PATCH", "/api/me/tasks/{task}/complete", None, None),
    ("PATCH", "/api/me/tasks/{task}/complete", None, "key"),
    ("POST", "/api/me/tasks/{task}/move", {"parent_id": None, "after": None}, None),
    ("POST", "/api/me/tasks/{gone}/move", "under task", None),
    ("PATCH", "/api/me/tasks/{parent}/complete", None, None),
    ("DELETE", "/api/me/tasks/{gone}", None, None),
    ("DELETE", "/api/me/tasks/{parent}", None, None),
    ("GET", "/api/me/trash", None, None),
    ("POST", "/api/me/trash/{trashed}/restore", None, "key"),
    ("POST", "/api/me/trash/{trashed_parent}/restore", None, None),
    ("POST", "/api/me/categories", {"name": "n"}, "key"),
    ("GET", "/api/me/categories", None, None),
    ("GET", "/api/me/categories/{category}", None, None),
    ("PATCH", "/api/me/categories/{category}", {"color": "#123456"}, None),
    ("DELETE", "/api/me/categories/{doomed}", None, None),
    ("GET", "/api/me/changes", None, None),
]


@pytest.mark.parametrize(("method", "path", "body", "key"), ROUTES, ids=[f"{m} {p}{' +key' if k else ''}" for m, p, _, k in ROUTES])
def test_every_route_is_one_flight_and_a_replay_one_more(api: LambdaApi, alice, syncs, method, path, body, key):
    ids = {
        "task": api.create_task(alice)["id"],
        "gone": api.create_task(alice)["id"],
        "trashed": api.create_task(alice)["id"],
        "category": api.create_category(alice, "c")["id"],
        "doomed": api.create_category(alice, "d")["id"],
        "parent": api.create_task(alice)["id"],  # with subtasks: the cascades ride in the same flight
        "trashed_parent": api.create_task(alice)["id"],
    }
    for parent in ("parent", "trashed_parent"):
        child = api.create_task(alice, parent_id=ids[parent])
        api.create_task(alice, parent_id=child["id"], recurrence="FREQ=DAILY", due_at="2030-01-01T09:00:00Z")
    api.delete(f"/api/me/tasks/{ids['trashed']}", user=alice)
    api.delete(f"/api/me/tasks/{ids['trashed_parent']}", user=alice)
    if body == "under task":
        body = {"parent_id": ids["task"], "after": None}
    syncs.clear()
    headers = {"idempotency-key": f"k-{uuid.uuid4().hex}"} if key else {}
    user = None if path == "/health" else alice
    query = {"sort": "title", "q": "milk", "tag": "x"} if path == "/api/me/tasks" and method == "GET" else None
    reply = api.request(method, path.format(**ids), user=user, json=body, headers=headers, query=query)
    assert reply.status < 300, reply.body
    assert syncs == [1], f"{len(syncs)} flights"
    if key:  # the replay: the change's flight fails on the key, one more reads the record
        again = api.request(method, path.format(**ids), user=user, json=body, headers=headers)
        assert again.headers.get("idempotent-replayed") == "true" and again.body == reply.body
        assert syncs == [1, 1, 1]


TOOL_CALLS = [
    ("add_task", {"title": "t"}),
    ("add_task", {"title": "t", "idempotency_key": "key"}),
    ("list_tasks", {"sort": "title", "q": "milk", "tag": "x"}),
    ("get_task", {"task_id": "{task}"}),
    ("update_task", {"task_id": "{task}", "title": "v"}),
    ("complete_task", {"task_id": "{task}"}),
    ("delete_task", {"task_id": "{gone}"}),
    ("restore_task", {"task_id": "{trashed}"}),
    ("list_categories", {}),
    ("add_category", {"name": "n", "idempotency_key": "key"}),
]


@pytest.mark.parametrize(("tool", "arguments"), TOOL_CALLS, ids=[f"tool {t}{' +key' if 'idempotency_key' in a else ''}" for t, a in TOOL_CALLS])
def test_every_mcp_tool_call_is_one_flight_and_a_replay_one_more(api: LambdaApi, alice, syncs, tool, arguments):
    ids = {"task": api.create_task(alice)["id"], "gone": api.create_task(alice)["id"], "trashed": api.create_task(alice)["id"]}
    api.delete(f"/api/me/tasks/{ids['trashed']}", user=alice)
    arguments = {name: value.format(**ids) if isinstance(value, str) else value for name, value in arguments.items()}
    if "idempotency_key" in arguments:
        arguments["idempotency_key"] = f"k-{uuid.uuid4().hex}"
    syncs.clear()
    result = api.call_tool(alice, tool, arguments)
    assert not result["isError"], result
    assert syncs == [1], f"{len(syncs)} flights"
    if "idempotency_key" in arguments:  # the replay: the change's flight fails on the key, one more reads the record
        again = api.call_tool(alice, tool, arguments)
        assert again["_meta"]["todo-api/idempotent-replayed"] is True and again["structuredContent"] == result["structuredContent"]
        assert syncs == [1, 1, 1]


def test_a_transaction_spans_flights_and_commits_at_the_end_only(database_url, sql):
    marker = f"tx-{uuid.uuid4().hex[:8]}"
    with db.transaction(user_id=marker) as work:
        work.flight(db.Query("INSERT INTO users (id) VALUES ($1)", (marker,)))
        assert sql.run("SELECT count(*) FROM users WHERE id = :m", m=marker) == [[0]]  # not yet committed
        (caller,) = work.flight(db.Query("SELECT current_setting('app.user_id') AS caller, current_user AS role"))
        assert caller.rows == [{"caller": marker, "role": "todo_app"}]  # the settings hold across flights
    assert sql.run("SELECT count(*) FROM users WHERE id = :m", m=marker) == [[1]]


def test_a_transaction_that_raises_rolls_back_every_flight(database_url, sql):
    marker = f"tx-{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError), db.transaction(user_id=marker) as work:
        work.flight(db.Query("INSERT INTO users (id) VALUES ($1)", (marker,)))
        raise RuntimeError("the outside call failed")
    with pytest.raises(db.QueryFailed) as failed, db.transaction(user_id=marker) as work:
        work.flight(db.Query("INSERT INTO users (id) VALUES ($1)", (marker,)))
        work.flight(db.Query("SELECT 1"), db.Query("SELECT 1 / 0"))
    assert failed.value.index == 1
    assert sql.run("SELECT count(*) FROM users WHERE id = :m", m=marker) == [[0]]
