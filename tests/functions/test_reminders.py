"""The scheduled reminders, through the real handler on real Postgres, EventBridge through
moto's events backend (a real PutEvents API, in process); `todo-api reminders`; and the
scheduler `todo-api serve` runs them with.

The module has a database of its own (created, migrated and dropped here), emptied before
every test: a run reminds across all users, so counting what it sent needs a database that
holds only what the test put there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pg8000.native
import pytest
from moto import mock_aws
from pydantic import ValidationError

from shared import batches, db, events, reminders
from shared.local.lambda_context import FakeLambdaContext
from shared.local.scheduler import Rate, Scheduler, template_jobs
from shared.template import REPO_ROOT, functions
from tests.conftest import database_url_set, migrated_database
from tests.flights import explain
from tests.functions.test_cleanup import serialized_metrics

pytestmark = pytest.mark.pooler

EVENT = json.loads((REPO_ROOT / "events" / "Reminders.json").read_text())
BUS = "todo-api-test-events"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reminders_database_name(postgres_server: dict[str, Any], database_url: str) -> Iterator[str]:
    with migrated_database(postgres_server, "todo_reminders") as name:
        yield name


@pytest.fixture(scope="module")
def reminders_database(reminders_database_name: str, app_url: Callable[[str], str]) -> Iterator[str]:
    with database_url_set(app_url(reminders_database_name)) as url:
        yield url


@pytest.fixture
def sql(postgres_server: dict[str, Any], reminders_database_name: str, reminders_database: str) -> Iterator[pg8000.native.Connection]:
    connection = pg8000.native.Connection(**postgres_server, database=reminders_database_name)
    connection.run("TRUNCATE task_tags, tasks, categories, idempotency_keys, change_log, users")
    yield connection
    connection.close()


class Bus:
    """moto's EventBridge behind the real publisher; every PutEvents entry it was asked to
    put is recorded (`attempts`), and those it accepted (`put`). `fail(ids)` makes the
    entries of those task ids fail, as EventBridge answers a throttled or broken entry.
    (`key`: the detail field that names an entry; tests/functions/test_publish_changes.py
    uses `event_id`.)"""

    def __init__(self, client: Any, key: str = "task_id") -> None:
        self.client = client
        self.key = key
        self.attempts: list[dict[str, Any]] = []
        self.put: list[dict[str, Any]] = []
        self.calls: list[int] = []
        self.failing: set[str] = set()
        self._lock = threading.Lock()

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        details = [json.loads(entry["Detail"]) for entry in Entries]
        with self._lock:
            self.calls.append(len(Entries))
            self.attempts += details
        passing = [entry for entry, detail in zip(Entries, details) if detail[self.key] not in self.failing]
        answer = self.client.put_events(Entries=passing)["Entries"] if passing else []
        results, accepted = [], iter(answer)
        for entry, detail in zip(Entries, details):
            if detail[self.key] in self.failing:
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "injected"})
            else:
                result = next(accepted)
                results.append(result)
                if result.get("EventId"):
                    with self._lock:
                        self.put.append({**detail, "_entry": {k: v for k, v in entry.items() if k != "Detail"}})
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}

    def fail(self, task_ids: set[str]) -> None:
        self.failing = set(task_ids)

    def sent_ids(self) -> list[str]:
        return [detail[self.key] for detail in self.put]


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    for variable, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(variable, value)
    with mock_aws():
        client = boto3.client("events", region_name="us-east-1")
        client.create_event_bus(Name=BUS)
        recorder = Bus(client)
        publisher = events.EventBridgePublisher(BUS, recorder, sleep=lambda seconds: None)
        monkeypatch.setattr(events, "publisher", lambda: publisher)
        yield recorder


class Context(FakeLambdaContext):
    def __init__(self, remaining: Callable[[], int] = lambda: 60_000) -> None:
        super().__init__("Reminders", timeout_ms=60_000)
        self.remaining = remaining
        self.asked = 0

    def get_remaining_time_in_millis(self) -> int:
        self.asked += 1
        return self.remaining()


def invoke(event: Any = EVENT, context: Context | None = None) -> dict[str, Any]:
    return functions()["Reminders"].load_handler()(event, context or Context())


# ---------------------------------------------------------------------------- data


def add_reminders(sql: pg8000.native.Connection, user: str, count: int, remind_at: str, **columns: str) -> set[str]:
    """`count` tasks of `user` with `remind_at` = the SQL expression given."""
    sql.run("INSERT INTO users (id) VALUES (:user) ON CONFLICT DO NOTHING", user=user)
    names = "".join(f", {name}" for name in columns)
    values = "".join(f", {value}" for value in columns.values())
    rows = sql.run(
        f"""
        INSERT INTO tasks (id, user_id, title, remind_at{names})
        SELECT gen_random_uuid(), :user, 'task ' || i, {remind_at}{values}
        FROM generate_series(1, :count) i
        RETURNING id
        """,
        user=user,
        count=count,
    )
    return {str(row[0]) for row in rows}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def reminded(sql: pg8000.native.Connection) -> set[str]:
    return {str(row[0]) for row in sql.run("SELECT id FROM tasks WHERE reminded_at IS NOT NULL")}


# ---------------------------------------------------------------------------- what fires


def test_only_due_reminders_fire_once_each_with_the_owner_and_the_contracts_detail(api, sql, bus, alice, bob):
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    due = {user: api.create_task(user, title=f"call {user}", due_at=iso(past + timedelta(hours=1)), remind_at=iso(past)) for user in (alice, bob)}
    later = api.create_task(alice, title="not yet", remind_at=iso(datetime.now(timezone.utc) + timedelta(hours=1)))
    completed = api.create_task(bob, title="done", remind_at=iso(past))
    assert api.patch(f"/api/me/tasks/{completed['id']}/complete", user=bob).status == 200
    trashed = api.create_task(alice, title="trashed", remind_at=iso(past))
    assert api.delete(f"/api/me/tasks/{trashed['id']}", user=alice).status == 204
    no_reminder = api.create_task(alice, title="no reminder")

    assert invoke() == {"sent": 2, "skipped_late": 0, "finished": True}

    by_task = {detail["task_id"]: detail for detail in bus.put}
    assert set(by_task) == {due[alice]["id"], due[bob]["id"]}
    for user, task in due.items():
        detail = by_task[task["id"]]
        assert detail["user_id"] == user  # the owner, never another user
        assert {k: v for k, v in detail.items() if k != "_entry"} == {
            "event_id": reminders.event_id(task["id"], datetime.fromisoformat(task["remind_at"])),
            "task_id": task["id"],
            "user_id": user,
            "title": f"call {user}",
            "due_at": task["due_at"],
            "remind_at": task["remind_at"],
        }
        assert detail["_entry"]["Source"] == "todo-api" and detail["_entry"]["DetailType"] == "Task Reminder"
        assert detail["_entry"]["EventBusName"] == BUS
    assert reminded(sql) == {due[alice]["id"], due[bob]["id"]}
    # Sent once: the next run has nothing to send.
    assert invoke() == {"sent": 0, "skipped_late": 0, "finished": True}
    assert len(bus.put) == 2
    assert not {later["id"], completed["id"], trashed["id"], no_reminder["id"]} & reminded(sql)


def test_changing_remind_at_re_arms_a_sent_reminder_and_an_unchanged_write_does_not(api, sql, bus, alice):
    first = datetime.now(timezone.utc) - timedelta(minutes=10)
    task = api.create_task(alice, remind_at=iso(first))
    assert invoke()["sent"] == 1

    # A write that leaves remind_at as it was keeps it sent.
    assert api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"title": "renamed", "remind_at": iso(first)}).status == 200
    assert invoke()["sent"] == 0

    # Another remind_at (here still in the past, so due at once): sent again, a new event_id.
    second = first + timedelta(minutes=1)
    assert api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"remind_at": iso(second)}).status == 200
    assert sql.run("SELECT reminded_at FROM tasks WHERE id = CAST(:id AS uuid)", id=task["id"]) == [[None]]
    assert invoke()["sent"] == 1
    assert [d["remind_at"] for d in bus.put] == [iso(first), iso(second)]
    assert bus.put[0]["event_id"] != bus.put[1]["event_id"]
    assert bus.put[1]["title"] == "renamed"

    # Moved into the future: not due until then.
    assert api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"remind_at": iso(datetime.now(timezone.utc) + timedelta(hours=1))}).status == 200
    assert invoke()["sent"] == 0 and len(bus.put) == 2


def test_a_reminder_too_late_is_marked_sent_without_an_event(sql, bus, alice, monkeypatch):
    late = add_reminders(sql, alice, 3, "now() - interval '25 hours'")
    in_time = add_reminders(sql, alice, 2, "now() - interval '23 hours'")

    assert invoke() == {"sent": 2, "skipped_late": 3, "finished": True}
    assert set(bus.sent_ids()) == in_time
    assert reminded(sql) == late | in_time

    monkeypatch.setenv("REMINDER_MAX_LATE_HOURS", "1")
    db.get_settings.cache_clear()
    try:
        hour_late = add_reminders(sql, alice, 1, "now() - interval '2 hours'")
        assert invoke() == {"sent": 0, "skipped_late": 1, "finished": True}
        assert hour_late <= reminded(sql)
    finally:
        monkeypatch.delenv("REMINDER_MAX_LATE_HOURS")
        db.get_settings.cache_clear()


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_an_event_that_is_not_eventbridge_fails_before_any_work(sql, bus, alice):
    add_reminders(sql, alice, 1, "now() - interval '1 minute'")
    context = Context()
    with pytest.raises(ValidationError):
        invoke({"hello": "world"}, context)
    assert context.asked == 0 and bus.put == [] and reminded(sql) == set()


# ---------------------------------------------------------------------------- at least once, never twice at once


def test_entries_that_fail_stay_unmarked_and_the_next_run_resends_them_with_the_same_event_id(sql, bus, alice, bob, caplog):
    ids = sorted(add_reminders(sql, alice, 15, "now() - interval '1 minute'") | add_reminders(sql, bob, 10, "now() - interval '2 minutes'"))
    failing = set(ids[:4])
    bus.fail(failing)

    first = invoke()

    assert first == {"sent": 21, "skipped_late": 0, "finished": False}
    assert reminded(sql) == set(ids) - failing
    # Chunks of at most 10; each failing entry tried exactly ATTEMPTS times, then left.
    assert max(bus.calls) <= events.CHUNK
    tried = [d["task_id"] for d in bus.attempts if d["task_id"] in failing]
    assert sorted(tried) == sorted(failing) * events.ATTEMPTS or sorted(tried) == sorted(list(failing) * events.ATTEMPTS)
    first_ids = {d["task_id"]: d["event_id"] for d in bus.attempts if d["task_id"] in failing}
    report = next(r for r in caplog.records if r.getMessage().startswith("reminders: some events were not put"))
    assert (report.levelname, report.failed, report.error_codes) == ("ERROR", 4, {"InternalFailure": 4})

    bus.fail(set())
    assert invoke() == {"sent": 4, "skipped_late": 0, "finished": True}
    resent = {d["task_id"]: d["event_id"] for d in bus.put[21:]}
    assert resent == first_ids  # the same event_id on the resend
    assert sorted(bus.sent_ids()) == ids  # each put once in all
    assert reminded(sql) == set(ids)


def test_a_bus_that_refuses_everything_stops_the_run_and_marks_nothing(sql, bus, alice, monkeypatch):
    monkeypatch.setattr(reminders, "BATCH_SIZE", 5)
    ids = add_reminders(sql, alice, 30, "now() - interval '1 minute'")
    bus.fail(ids)
    result = invoke()
    assert result == {"sent": 0, "skipped_late": 0, "finished": False}
    assert len({d["task_id"] for d in bus.attempts}) == 5  # one batch tried, then the run stopped
    assert reminded(sql) == set()


def test_two_runs_at_once_send_each_reminder_exactly_once(sql, bus, alice, bob, monkeypatch):
    monkeypatch.setattr(reminders, "BATCH_SIZE", 20)
    ids = set()
    for user in (alice, bob):
        ids |= add_reminders(sql, user, 200, "now() - random() * interval '10 hours'")
        add_reminders(sql, user, 20, "now() + interval '1 hour'")
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
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    assert sum(r["sent"] for r in results) == 400
    assert sorted(bus.sent_ids()) == sorted(ids)  # every one, none twice
    assert reminded(sql) == ids


def test_a_run_short_of_time_stops_cleanly_and_the_next_one_finishes(sql, bus, alice, monkeypatch):
    monkeypatch.setattr(reminders, "BATCH_SIZE", 10)
    ids = add_reminders(sql, alice, 100, "now() - interval '1 minute' - random() * interval '1 hour'")
    budget = iter(range(12_000, -100_000, -2_000))  # every look at the clock costs 2 s

    first = invoke(context=Context(lambda: next(budget)))

    assert first["finished"] is False and 0 < first["sent"] < 100
    assert len(reminded(sql)) == first["sent"]
    second = invoke()
    assert second == {"sent": 100 - first["sent"], "skipped_late": 0, "finished": True}
    assert sorted(bus.sent_ids()) == sorted(ids)


def test_a_run_with_less_than_the_margin_left_does_nothing(sql, bus, alice):
    add_reminders(sql, alice, 3, "now() - interval '1 minute'")
    assert invoke(context=Context(lambda: batches.STOP_MARGIN_MS - 1)) == {"sent": 0, "skipped_late": 0, "finished": False}
    assert bus.attempts == [] and reminded(sql) == set()


def test_a_batch_whose_mark_fails_rolls_back_and_is_resent_with_the_same_ids(sql, bus, alice, monkeypatch):
    ids = add_reminders(sql, alice, 3, "now() - interval '1 minute'")
    real = db.Transaction.flight
    calls = 0

    def failing_mark(self: db.Transaction, *queries: db.Query) -> list[db.Result]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the mark: as if the connection broke after the events were put
            return real(self, db.Query("SELECT 1 / 0"))
        return real(self, *queries)

    monkeypatch.setattr(db.Transaction, "flight", failing_mark)
    with pytest.raises(db.QueryFailed):
        reminders.run_reminders()
    assert reminded(sql) == set() and len(bus.put) == 3
    monkeypatch.setattr(db.Transaction, "flight", real)
    assert reminders.run_reminders()["sent"] == 3
    assert sorted(d["event_id"] for d in bus.put[:3]) == sorted(d["event_id"] for d in bus.put[3:])
    assert reminded(sql) == ids


def test_the_role_sees_only_due_reminders(sql, alice):
    due = add_reminders(sql, alice, 2, "now() - interval '1 minute'")
    add_reminders(sql, alice, 2, "now() + interval '1 hour'")
    add_reminders(sql, alice, 1, "now() - interval '1 minute'", completed="true", completed_at="now()")
    add_reminders(sql, alice, 1, "now() - interval '1 minute'", deleted_at="now()")
    add_reminders(sql, alice, 1, "now() - interval '1 minute'", reminded_at="now() - interval '1 second'")
    add_reminders(sql, alice, 1, "NULL")
    (seen,) = db.flight(db.Query("SELECT id FROM tasks"), role=reminders.ROLE)
    assert {str(row["id"]) for row in seen.rows} == due
    # ... and may only mark one sent now, nothing else.
    with pytest.raises(db.QueryFailed):
        db.flight(db.Query("UPDATE tasks SET title = 'x'"), role=reminders.ROLE)
    with pytest.raises(db.QueryFailed):
        db.flight(db.Query("UPDATE tasks SET reminded_at = now() + interval '1 day'"), role=reminders.ROLE)


def test_a_batch_takes_its_reminders_through_the_partial_index(sql, alice):
    add_reminders(sql, alice, 5000, "NULL")
    add_reminders(sql, alice, 3000, "now() - interval '1 hour'", reminded_at="now()")
    add_reminders(sql, alice, 20, "now() - interval '1 minute'")
    sql.run("ANALYZE tasks")
    query = reminders._TAKE(cutoff=None, floor=None, failed=[str(uuid.uuid4())], max_late_hours=24, n=200)
    plan = explain(query, role=reminders.ROLE)
    assert "ix_tasks_due_reminders" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


# ---------------------------------------------------------------------------- the publisher


def test_the_publisher_sends_chunks_of_ten_and_retries_a_bounded_number_of_times():
    calls: list[list[str]] = []
    flaky = {"b3": 1, "b7": 99}  # fails once / always

    class Client:
        def put_events(self, Entries):  # noqa: N803
            calls.append([json.loads(e["Detail"])["n"] for e in Entries])
            results = []
            for entry in Entries:
                n = json.loads(entry["Detail"])["n"]
                if flaky.get(n, 0) > 0:
                    flaky[n] -= 1
                    results.append({"ErrorCode": "ThrottlingException"})
                else:
                    results.append({"EventId": f"id-{n}"})
            return {"Entries": results}

    publisher = events.EventBridgePublisher("bus", Client(), sleep=lambda s: None)
    outcome = publisher.publish([events.Event("Test", {"n": f"b{i}"}) for i in range(25)])
    assert [code for code in outcome if code] == ["ThrottlingException"] and outcome[7] == "ThrottlingException"
    assert sorted(len(c) for c in calls[:3]) == [5, 10, 10]
    assert calls[3:] == [["b3", "b7"], ["b7"]]  # only the failed ones again, ATTEMPTS in all

    class Down:
        def put_events(self, Entries):  # noqa: N803
            raise ConnectionError("no route")

    assert events.EventBridgePublisher("bus", Down(), sleep=lambda s: None).publish([events.Event("Test", {})]) == ["ConnectionError"]


def test_without_a_bus_events_go_to_the_log_and_the_local_file(tmp_path, caplog):
    path = tmp_path / "sub" / "events.jsonl"
    published = events.LocalPublisher(path).publish([events.Event("Task Reminder", {"n": 1}), events.Event("Task Reminder", {"n": 2})])
    assert published == [None, None]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["detail"] for line in lines] == [{"n": 1}, {"n": 2}]
    assert {line["source"] for line in lines} == {"todo-api"} and {line["detail-type"] for line in lines} == {"Task Reminder"}
    assert sum(1 for r in caplog.records if r.getMessage() == "event") == 2


def test_boto3_is_imported_only_by_a_publisher_with_a_bus():
    code = (
        "import sys; from shared import events, reminders; events.publisher(); "
        "assert 'boto3' not in sys.modules, 'boto3 imported'; print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if k != "EVENT_BUS_NAME"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ---------------------------------------------------------------------------- command line and serve


def test_todo_api_reminders_prints_exactly_the_contracts_object_and_writes_the_local_events(sql, reminders_database, alice, tmp_path):
    sent = add_reminders(sql, alice, 3, "now() - interval '1 minute'")
    add_reminders(sql, alice, 1, "now() - interval '3 days'")
    env = {k: v for k, v in os.environ.items() if k != "EVENT_BUS_NAME"}
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "reminders"],
        cwd=REPO_ROOT,
        env={**env, "DATABASE_URL": reminders_database, "TODO_API_LOCAL_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == {"sent": 3, "skipped_late": 1, "finished": True}
    assert list(json.loads(result.stdout)) == ["sent", "skipped_late", "finished"]
    assert '"message":"reminders"' in result.stderr and '"RemindersSent":[3.0]' in result.stderr
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {line["detail"]["task_id"] for line in lines} == sent
    assert all(line["detail"]["user_id"] == alice and line["detail-type"] == "Task Reminder" for line in lines)


def test_todo_api_invoke_reminders_runs_the_example_event(sql, reminders_database, alice, tmp_path):
    add_reminders(sql, alice, 2, "now() - interval '1 minute'")
    env = {k: v for k, v in os.environ.items() if k != "EVENT_BUS_NAME"}
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "invoke", "Reminders", "--event", "events/Reminders.json"],
        cwd=REPO_ROOT,
        env={**env, "DATABASE_URL": reminders_database, "TODO_API_LOCAL_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"sent": 2, "skipped_late": 0, "finished": True}
    assert functions()["Reminders"].schedules and not functions()["Reminders"].routes


def test_serves_scheduler_runs_the_reminders_on_their_schedule_and_writes_events_jsonl(sql, alice, tmp_path, monkeypatch):
    """What `todo-api serve` starts: every scheduled function of the template; Reminders'
    rate(1 minute) made 0.3 s here (the one thing injected), Cleanup's rate(1 day) as it is."""
    monkeypatch.delenv("EVENT_BUS_NAME", raising=False)
    db.get_settings.cache_clear()
    events.reset()
    path = tmp_path / "events.jsonl"
    events.use_local_events_file(path)
    jobs = template_jobs(overrides={"Reminders": Rate(timedelta(seconds=0.3), "rate(0.3 seconds)")})
    assert sorted(job.name.split()[0] for job in jobs) == ["Cleanup", "PublishChanges", "Reminders"]
    first = add_reminders(sql, alice, 2, "now() - interval '1 minute'")
    scheduler = Scheduler(jobs).start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(path.read_text().splitlines() if path.exists() else []) < 2:
            time.sleep(0.1)
        # A reminder that becomes due while it serves is sent by a later tick.
        later = add_reminders(sql, alice, 1, "now() + interval '1 second'")
        while time.monotonic() < deadline and len(path.read_text().splitlines()) < 3:
            time.sleep(0.1)
    finally:
        scheduler.stop()
        events.use_local_events_file(None)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(line["detail"]["task_id"] for line in lines) == sorted(first | later)
    assert reminded(sql) == first | later
