"""The scheduled cleanup, through its real handler on real Postgres, with a Lambda context
whose remaining time each test decides; and `todo-api cleanup` / `invoke Cleanup`.

The module has a database of its own (created, migrated and dropped here), emptied before
every test: a cleanup deletes across all users, so counting what it deleted needs a
database that holds only what the test put there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pg8000.native
import pytest
from pydantic import ValidationError

from shared import batches, cleanup, db
from shared.local.lambda_context import FakeLambdaContext
from shared.observability import metrics
from shared.template import REPO_ROOT, functions
from tests.conftest import database_url_set, migrated_database
from tests.flights import explain, kill_function_backend_when, with_extra_queries

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler

EVENT = json.loads((REPO_ROOT / "events" / "Cleanup.json").read_text())
RETENTION = "make_interval(hours => 24 * 30)"  # TRASH_RETENTION_DAYS' default, as the cleanup counts it


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cleanup_database_name(postgres_server: dict[str, Any], database_url: str) -> Iterator[str]:
    """A fresh database for this module, migrated directly on the server."""
    with migrated_database(postgres_server, "todo_cleanup") as name:
        yield name


@pytest.fixture(scope="module")
def cleanup_database(cleanup_database_name: str, app_url: Callable[[str], str]) -> Iterator[str]:
    """DATABASE_URL points at this module's database meanwhile (through the pooler in the
    pooler pass, as the run's own database)."""
    with database_url_set(app_url(cleanup_database_name)) as url:
        yield url


@pytest.fixture
def sql(postgres_server: dict[str, Any], cleanup_database_name: str, cleanup_database: str) -> Iterator[pg8000.native.Connection]:
    """A direct connection to this module's database, emptied first."""
    connection = pg8000.native.Connection(**postgres_server, database=cleanup_database_name)
    connection.run("TRUNCATE task_tags, tasks, categories, idempotency_keys, change_log, users")
    yield connection
    connection.close()


@pytest.fixture
def retention_days(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    def set_days(days: int) -> None:
        monkeypatch.setenv("TRASH_RETENTION_DAYS", str(days))
        db.get_settings.cache_clear()

    yield set_days
    monkeypatch.delenv("TRASH_RETENTION_DAYS", raising=False)
    db.get_settings.cache_clear()


@pytest.fixture
def batch_size(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    return lambda size: monkeypatch.setattr(cleanup, "BATCH_SIZE", size)


class Context(FakeLambdaContext):
    """A Lambda context whose remaining time is whatever `remaining()` says."""

    def __init__(self, remaining: Callable[[], int] = lambda: 300_000) -> None:
        super().__init__("Cleanup", timeout_ms=300_000)
        self.remaining = remaining
        self.asked = 0

    def get_remaining_time_in_millis(self) -> int:
        self.asked += 1
        return self.remaining()


def invoke(event: Any = EVENT, context: Context | None = None) -> dict[str, Any]:
    return functions()["Cleanup"].load_handler()(event, context or Context())


# ---------------------------------------------------------------------------- data


def add_user(sql: pg8000.native.Connection, user: str) -> None:
    sql.run("INSERT INTO users (id) VALUES (:user) ON CONFLICT DO NOTHING", user=user)


def add_tasks(sql: pg8000.native.Connection, user: str, count: int, deleted_at: str | None) -> set[str]:
    """`count` tasks of `user` with `deleted_at` = the SQL expression given (None: live)."""
    add_user(sql, user)
    rows = sql.run(
        f"""
        INSERT INTO tasks (id, user_id, title, deleted_at)
        SELECT gen_random_uuid(), :user, 'task ' || i, {deleted_at or 'NULL'}
        FROM generate_series(1, :count) i
        RETURNING id
        """,
        user=user,
        count=count,
    )
    return {str(row[0]) for row in rows}


def add_keys(sql: pg8000.native.Connection, user: str, count: int, expires_at: str) -> set[str]:
    rows = sql.run(
        f"""
        INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, response_body, expires_at)
        SELECT :user, 'key-' || gen_random_uuid(), repeat('0', 64), 201, '{{}}', {expires_at}
        FROM generate_series(1, :count)
        RETURNING key
        """,
        user=user,
        count=count,
    )
    return {row[0] for row in rows}


def task_ids(sql: pg8000.native.Connection) -> set[str]:
    return {str(row[0]) for row in sql.run("SELECT id FROM tasks")}


def key_names(sql: pg8000.native.Connection) -> set[str]:
    return {row[0] for row in sql.run("SELECT key FROM idempotency_keys")}


def expired_count(sql: pg8000.native.Connection) -> int:
    return sql.run(f"SELECT count(*) FROM tasks WHERE deleted_at < now() - {RETENTION}")[0][0]


# ---------------------------------------------------------------------------- what goes, what stays


def test_only_what_expired_goes_for_every_user(sql, alice, bob):
    kept_tasks, kept_keys, gone_tasks, gone_keys = set(), set(), set(), set()
    for user in (alice, bob):
        # Trashed a second longer ago than the retention: expired. A few seconds short of
        # it, or just now: not yet. Live tasks never.
        gone_tasks |= add_tasks(sql, user, 3, f"now() - {RETENTION} - interval '1 second'")
        gone_tasks |= add_tasks(sql, user, 1, "now() - interval '10 years'")
        kept_tasks |= add_tasks(sql, user, 2, f"now() - {RETENTION} + interval '10 seconds'")
        kept_tasks |= add_tasks(sql, user, 2, "now()")
        kept_tasks |= add_tasks(sql, user, 2, None)
        # Idempotency records: expired a millisecond ago (or long ago) go; not yet, stay.
        gone_keys |= add_keys(sql, user, 2, "now() - interval '1 millisecond'")
        gone_keys |= add_keys(sql, user, 1, "now() - interval '3 days'")
        kept_keys |= add_keys(sql, user, 2, "now() + interval '10 seconds'")

    result = invoke()

    assert result == {"tasks_deleted": len(gone_tasks), "idempotency_keys_deleted": len(gone_keys), "finished": True}
    assert task_ids(sql) == kept_tasks
    assert key_names(sql) == kept_keys


def test_a_restored_task_is_never_deleted_and_a_task_trashed_now_stays(api, sql, alice):
    restored = api.create_task(alice, title="restored in time")
    expired = api.create_task(alice, title="left in the trash")
    just_trashed = api.create_task(alice, title="trashed just now")
    for task in (restored, expired, just_trashed):
        assert api.delete(f"/api/me/tasks/{task['id']}", user=alice).status == 204
    # Both were trashed long ago; one is restored before the cleanup runs.
    sql.run(
        f"UPDATE tasks SET deleted_at = now() - {RETENTION} - interval '1 day' WHERE id = ANY(CAST(:ids AS uuid[]))",
        ids=[restored["id"], expired["id"]],
    )
    assert api.post(f"/api/me/trash/{restored['id']}/restore", user=alice).status == 200

    assert invoke() == {"tasks_deleted": 1, "idempotency_keys_deleted": 0, "finished": True}
    assert task_ids(sql) == {restored["id"], just_trashed["id"]}
    assert api.get(f"/api/me/tasks/{restored['id']}", user=alice).status == 200
    assert [t["id"] for t in api.get("/api/me/trash", user=alice).json()["items"]] == [just_trashed["id"]]


def test_retention_zero_deletes_everything_trashed_before_the_run(sql, alice, bob, retention_days):
    retention_days(0)
    trashed = add_tasks(sql, alice, 3, "now()") | add_tasks(sql, bob, 2, "now() - interval '1 hour'")
    live = add_tasks(sql, alice, 2, None) | add_tasks(sql, bob, 1, None)
    # As if trashed after the run began: its deleted_at is later than the run's cut-off.
    later = add_tasks(sql, bob, 1, "now() + interval '1 hour'")

    assert invoke() == {"tasks_deleted": len(trashed), "idempotency_keys_deleted": 0, "finished": True}
    assert task_ids(sql) == live | later


def test_the_rule_is_fixed_when_the_run_starts(sql, alice, retention_days, batch_size):
    retention_days(0)
    batch_size(10)
    before = add_tasks(sql, alice, 25, "now() - interval '1 minute'")
    looks = 0
    trashed_meanwhile: set[str] = set()

    def remaining() -> int:
        nonlocal looks
        looks += 1
        if looks == 2:  # the cut-off was read between the first look and this one
            trashed_meanwhile.update(add_tasks(sql, alice, 1, "now()"))
        return 300_000

    assert invoke(context=Context(remaining)) == {"tasks_deleted": 25, "idempotency_keys_deleted": 0, "finished": True}
    assert trashed_meanwhile and task_ids(sql) == trashed_meanwhile
    assert not before & task_ids(sql)


def test_a_row_held_by_a_restore_in_progress_is_skipped_not_waited_for(sql, alice, bob, postgres_server, cleanup_database_name):
    expired = sorted(add_tasks(sql, alice, 5, f"now() - {RETENTION} - interval '1 day'"))
    others = add_tasks(sql, bob, 3, f"now() - {RETENTION} - interval '1 day'")
    restore = pg8000.native.Connection(**postgres_server, database=cleanup_database_name)
    try:
        restore.run("BEGIN")
        restore.run("UPDATE tasks SET deleted_at = NULL WHERE id = CAST(:id AS uuid)", id=expired[0])
        started = time.monotonic()
        result = invoke()
        # It did not wait on the held row (a wait would end in the 5 s statement timeout),
        # nor on alice's user row, which her write in progress holds (a purge appends to her
        # change log): her expired tasks are the next run's; bob's went. It says honestly that
        # something expired may be left.
        assert time.monotonic() - started < 3
        assert result == {"tasks_deleted": len(others), "idempotency_keys_deleted": 0, "finished": False}
        assert task_ids(sql) == set(expired)
        restore.run("COMMIT")
    finally:
        restore.close()
    assert invoke() == {"tasks_deleted": 4, "idempotency_keys_deleted": 0, "finished": True}
    assert task_ids(sql) == {expired[0]}


def test_nothing_to_do_is_finished(sql, alice):
    add_tasks(sql, alice, 2, None)
    assert invoke() == {"tasks_deleted": 0, "idempotency_keys_deleted": 0, "finished": True}
    assert sql.run("SELECT count(*) FROM tasks") == [[2]]


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({}, id="empty"),
        pytest.param(json.loads((REPO_ROOT / "events" / "Health.json").read_text()), id="http-event"),
        pytest.param({**EVENT, "time": "yesterday"}, id="bad-time"),
        pytest.param({k: v for k, v in EVENT.items() if k != "detail-type"}, id="no-detail-type"),
        pytest.param("run please", id="not-an-object"),
    ],
)
@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_an_event_that_is_not_eventbridge_fails_before_any_work(sql, alice, event):
    expired = add_tasks(sql, alice, 2, f"now() - {RETENTION} - interval '1 day'")
    context = Context()
    with pytest.raises(ValidationError):
        invoke(event, context)
    assert task_ids(sql) == expired
    assert context.asked == 0  # refused before the cleanup even looked at the clock


# ---------------------------------------------------------------------------- at any size, any time, twice


@contextmanager
def serialized_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Powertools metrics are one per process and not thread-safe; Lambda never runs two
    invocations in one process, this test does: their adds and flushes take turns."""
    lock = threading.RLock()
    provider = metrics.provider
    for name in ("add_metric", "flush_metrics"):
        original = getattr(provider, name)

        def locked(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(provider, name, locked)
    yield


def test_two_runs_at_once_delete_every_expired_row_exactly_once(sql, alice, bob, batch_size, monkeypatch):
    batch_size(50)
    for user in (alice, bob):
        add_tasks(sql, user, 1500, f"now() - {RETENTION} - (random() * interval '100 days')")
        add_tasks(sql, user, 300, f"now() - {RETENTION} + interval '1 hour'")
        add_tasks(sql, user, 300, None)
        add_keys(sql, user, 400, "now() - (random() * interval '10 days')")
        add_keys(sql, user, 50, "now() + interval '1 hour'")
    kept = task_ids(sql) - {str(r[0]) for r in sql.run(f"SELECT id FROM tasks WHERE deleted_at < now() - {RETENTION}")}
    kept_keys = {r[0] for r in sql.run("SELECT key FROM idempotency_keys WHERE expires_at > now()")}

    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = [{}, {}]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = invoke()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    with serialized_metrics(monkeypatch):
        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.monotonic() - started

    assert not any(thread.is_alive() for thread in threads), "a cleanup run hangs (waiting on the other?)"
    assert not errors, errors
    assert elapsed < 30
    assert sum(r["tasks_deleted"] for r in results) == 3000
    assert sum(r["idempotency_keys_deleted"] for r in results) == 800
    assert task_ids(sql) == kept and key_names(sql) == kept_keys
    # Whichever ended last saw nothing left (the other may have ended while rows were
    # still held by its twin, and then honestly said "not finished").
    assert any(r["finished"] for r in results) or invoke()["finished"]


def test_a_run_short_of_time_stops_cleanly_and_the_next_one_finishes(sql, alice, bob, batch_size):
    batch_size(10)
    for user in (alice, bob):
        add_tasks(sql, user, 40, f"now() - {RETENTION} - interval '1 day'")
        add_tasks(sql, user, 5, None)
    add_keys(sql, alice, 15, "now() - interval '1 hour'")
    budget = iter(range(12_000, -100_000, -2_000))  # every look at the clock costs 2 s

    first = invoke(context=Context(lambda: next(budget)))

    assert first["finished"] is False
    assert 0 < first["tasks_deleted"] < 80
    assert expired_count(sql) == 80 - first["tasks_deleted"]
    second = invoke()
    assert second == {"tasks_deleted": 80 - first["tasks_deleted"], "idempotency_keys_deleted": 15, "finished": True}
    assert sql.run("SELECT count(*) FROM tasks") == [[10]]


def test_a_run_with_less_than_the_margin_left_does_nothing(sql, alice):
    add_tasks(sql, alice, 3, f"now() - {RETENTION} - interval '1 day'")
    result = invoke(context=Context(lambda: batches.STOP_MARGIN_MS - 1))
    assert result == {"tasks_deleted": 0, "idempotency_keys_deleted": 0, "finished": False}
    assert expired_count(sql) == 3


def test_the_margin_grows_with_the_slowest_batch():
    run = cleanup._Run(slowest_batch_ms=2_000)
    assert not run.may_start(batches.SLOWEST_BATCH_FACTOR * 2_000 - 1)
    assert run.may_start(batches.SLOWEST_BATCH_FACTOR * 2_000)
    assert not cleanup._Run().may_start(batches.STOP_MARGIN_MS - 1)


KILLERS: list[threading.Thread] = []


def _kill_connection(connect: Callable[[], pg8000.native.Connection], killed: list[Any]) -> list[db.Query]:
    """The batch's flight goes on with a long statement, during which its backend is killed."""
    KILLERS.append(kill_function_backend_when("query LIKE '%pg_sleep%'", connect, killed))
    return [db.Query("SELECT pg_sleep(5)")]


def _fail_statement(connect: Callable[[], pg8000.native.Connection], killed: list[Any]) -> list[db.Query]:
    killed.append(True)
    return [db.Query("SELECT 1 / 0")]


@pytest.mark.parametrize("fault", [_kill_connection, _fail_statement], ids=["connection-killed", "statement-fails"])
def test_a_database_fault_mid_run_loses_nothing_and_the_next_run_finishes(
    sql, alice, bob, batch_size, monkeypatch, capsys, caplog, fault, postgres_server, cleanup_database_name
):
    batch_size(10)
    for user in (alice, bob):
        add_tasks(sql, user, 25, f"now() - {RETENTION} - interval '1 day'")
        add_tasks(sql, user, 4, f"now() - {RETENTION} + interval '1 hour'")
        add_tasks(sql, user, 4, None)
    kept = task_ids(sql) - {str(r[0]) for r in sql.run(f"SELECT id FROM tasks WHERE deleted_at < now() - {RETENTION}")}
    killed: list[Any] = []
    # Flight 1: the cut-off; 2, 3: batches that commit; 4: the batch that fails, in its own flight.
    connect = lambda: pg8000.native.Connection(**postgres_server, database=cleanup_database_name)  # noqa: E731
    failing = with_extra_queries(lambda n: fault(connect, killed) if n == 4 else [])
    monkeypatch.setattr(cleanup, "flight", failing)
    capsys.readouterr()
    with pytest.raises(Exception):
        invoke()
    for killer in KILLERS:
        killer.join(10)
    assert killed == [True], killed

    # The two committed batches stay deleted; the failed one deleted nothing.
    assert expired_count(sql) == 50 - 20
    assert kept <= task_ids(sql)
    # Reported: the log line (with the exception) and the metrics, then raised.
    failure = next(record for record in caplog.records if record.getMessage() == "cleanup failed")
    assert (failure.levelname, failure.tasks_deleted, failure.finished, failure.batches) == ("ERROR", 20, False, 2)
    assert failure.exc_info is not None
    emf = next(json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line)
    assert (emf["CleanupRunFailed"], emf["CleanupTasksDeleted"], emf["CleanupFinished"]) == ([1.0], [20.0], [0.0])

    monkeypatch.setattr(cleanup, "flight", db.flight)
    assert invoke() == {"tasks_deleted": 30, "idempotency_keys_deleted": 0, "finished": True}
    assert task_ids(sql) == kept


def test_the_batch_finds_expired_trash_through_its_index_not_the_live_tasks(sql, alice):
    add_tasks(sql, alice, 5000, None)
    add_tasks(sql, alice, 20, f"now() - {RETENTION} - interval '1 day'")
    sql.run("ANALYZE tasks")
    plan = explain(cleanup._TASKS.delete(cutoff=datetime.now(timezone.utc), floor=None, n=5000), role=db.CLEANUP_ROLE)
    assert "Index Scan using ix_tasks_deleted_at" in plan, plan
    assert "Seq Scan" not in plan, plan


# ---------------------------------------------------------------------------- command line


def _cli(*args: str, database_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_todo_api_cleanup_prints_exactly_the_contracts_object(sql, cleanup_database, alice):
    add_tasks(sql, alice, 3, f"now() - {RETENTION} - interval '1 day'")
    add_tasks(sql, alice, 2, None)
    add_keys(sql, alice, 2, "now() - interval '1 minute'")

    result = _cli("cleanup", database_url=cleanup_database)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == {"tasks_deleted": 3, "idempotency_keys_deleted": 2, "finished": True}
    assert list(json.loads(result.stdout)) == ["tasks_deleted", "idempotency_keys_deleted", "finished"]
    # The log line and the metrics went to stderr.
    assert '"message":"cleanup"' in result.stderr and '"CleanupTasksDeleted":[3.0]' in result.stderr
    assert sql.run("SELECT count(*) FROM tasks") == [[2]]


def test_todo_api_invoke_cleanup_runs_the_example_scheduled_event(sql, cleanup_database, alice):
    add_tasks(sql, alice, 2, f"now() - {RETENTION} - interval '1 day'")

    result = _cli("invoke", "Cleanup", "--event", "events/Cleanup.json", database_url=cleanup_database)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"tasks_deleted": 2, "idempotency_keys_deleted": 0, "finished": True}
    assert EVENT["detail-type"] == "Scheduled Event" and EVENT["source"] == "aws.events"
    assert functions()["Cleanup"].schedules and not functions()["Cleanup"].routes


def test_the_finished_check_may_take_the_runs_time_not_one_requests_timeout(sql, alice, monkeypatch):
    """Right after a large purge the check can take seconds (index entries of rows just
    deleted): it gets the run's remaining time, beyond DB_STATEMENT_TIMEOUT; a check that
    outlasts even that claims nothing, loses nothing, and does not fail the run."""
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT", "0.3")
    db.reset()
    slow_check = lambda seconds: with_extra_queries(lambda n: [db.Query(f"SELECT pg_sleep({seconds})")] if n == 5 else [])  # noqa: E731
    try:
        # Flight 1: the cut-off; 2: the tasks' batch; 3: the records' batch; 4: the change log's; 5: the check, made slow.
        add_tasks(sql, alice, 3, f"now() - {RETENTION} - interval '1 day'")
        kept = add_tasks(sql, alice, 2, None)
        monkeypatch.setattr(cleanup, "flight", slow_check(1))  # over 0.3 s, within the run's time
        assert invoke(context=Context(lambda: 10_000)) == {"tasks_deleted": 3, "idempotency_keys_deleted": 0, "finished": True}

        add_tasks(sql, alice, 3, f"now() - {RETENTION} - interval '1 day'")
        monkeypatch.setattr(cleanup, "flight", slow_check(4))  # over the 5 s left minus the 3 s margin
        assert invoke(context=Context(lambda: 5_000)) == {"tasks_deleted": 3, "idempotency_keys_deleted": 0, "finished": False}
    finally:
        monkeypatch.undo()
        db.reset()
    assert task_ids(sql) == kept
