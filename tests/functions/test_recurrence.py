"""Recurring tasks through the real handlers on real Postgres, two users: the rule's
validation, the successor made in the completing statement (once per task, ever), daylight
saving, months without the day, past occurrences skipped, COUNT/UNTIL exhaustion."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.lambda_api import LambdaApi

pytestmark = pytest.mark.pooler

BERLIN = ZoneInfo("Europe/Berlin")


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def future(days: int, hour: int = 9, zone: ZoneInfo = BERLIN) -> datetime:
    """A wall-clock time `days` from now in `zone`."""
    day = (datetime.now(zone) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=zone)


def complete(api: LambdaApi, user: str, task_id: str, **kw):
    return api.patch(f"/api/me/tasks/{task_id}/complete", user=user, json={"completed": True}, **kw)


def next_of(api: LambdaApi, user: str, reply) -> dict:
    link = reply.headers.get("link", "")
    assert link.endswith('>; rel="next"'), reply.headers
    path = link[1 : link.index(">")]
    assert path.startswith("/api/")
    got = api.get(path.replace(f"/api/{user}/", "/api/me/", 1), user=user)
    assert got.status == 200
    return got.json()


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY", "freq=weekly;byday=mo,we", "FREQ=WEEKLY;INTERVAL=2;WKST=SU", "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3",
        "FREQ=MONTHLY;BYDAY=-1FR", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "FREQ=YEARLY;BYDAY=1MO;BYMONTH=9", "FREQ=DAILY;UNTIL=20300101T000000Z", "FREQ=DAILY;INTERVAL=999",
    ],
)  # fmt: skip
def test_every_part_the_contract_allows_is_accepted_and_stored_upper_case(api, alice, rule):
    task = api.create_task(alice, recurrence=rule, due_at=iso(future(1)), timezone="Europe/Berlin")
    assert task["recurrence"] == rule.upper() and task["timezone"] == "Europe/Berlin" and task["series_id"] == task["id"]


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=HOURLY", "FREQ=SECONDLY", "INTERVAL=2", "FREQ=DAILY;BYHOUR=9", "FREQ=DAILY;COUNT=2;UNTIL=20300101T000000Z",
        "FREQ=DAILY;INTERVAL=0", "FREQ=DAILY;INTERVAL=1000", "FREQ=WEEKLY;BYDAY=1MO", "RRULE:FREQ=DAILY", "FREQ=DAILY;;",
        "FREQ=DAILY;UNTIL=20300101", "FREQ=MONTHLY;BYDAY=XX", "FREQ=DAILY;COUNT=0", "nonsense", "",
    ],
)  # fmt: skip
def test_a_rule_outside_the_contract_is_422_naming_recurrence(api, alice, rule):
    reply = api.post("/api/me/tasks", user=alice, json={"title": "t", "recurrence": rule, "due_at": iso(future(1))})
    assert reply.status == 422, reply.body
    assert [e["loc"] for e in reply.problem["errors"]] == [["body", "recurrence"]]


def test_recurrence_needs_due_at_on_create_put_and_patch(api, alice):
    reply = api.post("/api/me/tasks", user=alice, json={"title": "t", "recurrence": "FREQ=DAILY"})
    assert reply.status == 422 and reply.problem["errors"][0]["loc"] == ["body", "recurrence"]
    task = api.create_task(alice)
    put = api.put(f"/api/me/tasks/{task['id']}", user=alice, json={"title": "t", "recurrence": "FREQ=DAILY"})
    assert put.status == 422 and put.problem["errors"][0]["loc"] == ["body", "recurrence"]
    patch = api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"recurrence": "FREQ=DAILY"})
    assert patch.status == 422 and patch.problem["errors"][0]["loc"] == ["body", "recurrence"]
    recurring = api.create_task(alice, recurrence="FREQ=DAILY", due_at=iso(future(1)))
    unset = api.patch(f"/api/me/tasks/{recurring['id']}", user=alice, json={"due_at": None})
    assert unset.status == 422 and unset.problem["errors"][0]["loc"] == ["body", "recurrence"]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "berlin", "", "+02:00", "../etc/passwd"])
def test_an_unknown_zone_is_422_naming_timezone(api, alice, zone):
    reply = api.post("/api/me/tasks", user=alice, json={"title": "t", "timezone": zone})
    assert reply.status == 422 and reply.problem["errors"][0]["loc"] == ["body", "timezone"], reply.body


def test_remind_at_after_due_at_is_422_on_create_and_patch(api, alice):
    due = future(2)
    reply = api.post("/api/me/tasks", user=alice, json={"title": "t", "due_at": iso(due), "remind_at": iso(due + timedelta(minutes=1))})
    assert reply.status == 422 and reply.problem["errors"][0]["loc"] == ["body", "remind_at"]
    task = api.create_task(alice, due_at=iso(due), remind_at=iso(due - timedelta(hours=1)))
    late = api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"due_at": iso(due - timedelta(hours=2))})
    assert late.status == 422 and late.problem["errors"][0]["loc"] == ["body", "remind_at"]


# ---------------------------------------------------------------------------- successors


def test_completing_makes_the_successor_with_the_tasks_fields_and_a_link(api, alice, bob):
    category = api.create_category(alice, "Home")["id"]
    due = future(1)
    task = api.create_task(
        alice, title="Water plants", description="all of them", priority="high", category_id=category, tags=["home"],
        recurrence="FREQ=DAILY", timezone="Europe/Berlin", due_at=iso(due), remind_at=iso(due - timedelta(minutes=30)),
    )  # fmt: skip
    reply = complete(api, alice, task["id"])
    assert reply.status == 200 and reply.json()["completed"] is True
    nxt = next_of(api, alice, reply)
    assert nxt["due_at"] == iso(due + timedelta(days=1))
    assert nxt["remind_at"] == iso(due + timedelta(days=1) - timedelta(minutes=30))
    assert (nxt["completed"], nxt["series_id"], nxt["version"]) == (False, task["id"], 1)
    for name in ("title", "description", "priority", "category_id", "tags", "recurrence", "timezone"):
        assert nxt[name] == task[name], name
    # and every later GET of the completed task links it
    again = api.get(f"/api/me/tasks/{task['id']}", user=alice)
    assert again.headers["link"] == reply.headers["link"]
    # bob sees none of it
    assert api.get(f"/api/me/tasks/{nxt['id']}", user=bob).status == 404
    assert api.get("/api/me/tasks", user=bob).json()["items"] == []


def test_a_task_without_recurrence_has_no_successor_and_no_link(api, alice):
    task = api.create_task(alice, due_at=iso(future(1)))
    reply = complete(api, alice, task["id"])
    assert reply.status == 200 and "link" not in reply.headers
    assert len(api.get("/api/me/tasks", user=alice).json()["items"]) == 1


def test_weekly_at_nine_berlin_stays_nine_local_across_both_daylight_saving_changes(api, alice):
    """Mondays 09:00 Europe/Berlin from just before the spring change and the autumn one."""
    for start, week_after in ((datetime(2031, 3, 24, 9, tzinfo=BERLIN), datetime(2031, 3, 31, 9, tzinfo=BERLIN)),
                              (datetime(2031, 10, 20, 9, tzinfo=BERLIN), datetime(2031, 10, 27, 9, tzinfo=BERLIN))):  # fmt: skip
        task = api.create_task(alice, recurrence="FREQ=WEEKLY;BYDAY=MO", timezone="Europe/Berlin", due_at=iso(start))
        nxt = next_of(api, alice, complete(api, alice, task["id"]))
        assert nxt["due_at"] == iso(week_after)
        local = datetime.fromisoformat(nxt["due_at"].replace("Z", "+00:00")).astimezone(BERLIN)
        assert (local.hour, local.minute) == (9, 0)
        assert start.utcoffset() != week_after.utcoffset()  # the change really is in between


def test_monthly_on_the_31st_skips_the_months_without_one(api, alice):
    task = api.create_task(alice, recurrence="FREQ=MONTHLY;BYMONTHDAY=31", timezone="UTC", due_at="2031-01-31T09:00:00Z")
    seen = []
    for _ in range(3):
        nxt = next_of(api, alice, complete(api, alice, task["id"]))
        seen.append(nxt["due_at"])
        task = nxt
    assert seen == ["2031-03-31T09:00:00Z", "2031-05-31T09:00:00Z", "2031-07-31T09:00:00Z"]


def test_occurrences_already_past_are_skipped_not_piled_up(api, alice):
    week_ago = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=7, hours=1)
    task = api.create_task(alice, recurrence="FREQ=DAILY", due_at=iso(week_ago))
    nxt = next_of(api, alice, complete(api, alice, task["id"]))
    due = datetime.fromisoformat(nxt["due_at"].replace("Z", "+00:00"))
    assert datetime.now(timezone.utc) < due <= datetime.now(timezone.utc) + timedelta(days=1)
    assert (due - week_ago) % timedelta(days=1) == timedelta(0)  # still on the rule's own times
    assert len(api.get("/api/me/tasks", user=alice).json()["items"]) == 2


@pytest.mark.parametrize("rule", ["FREQ=DAILY;COUNT=2", "FREQ=DAILY;UNTIL=20310103T000000Z"])
def test_a_rule_with_no_occurrence_left_makes_no_successor(api, alice, rule):
    first = api.create_task(alice, recurrence=rule, due_at="2031-01-01T08:00:00Z")
    second = next_of(api, alice, complete(api, alice, first["id"]))
    assert second["due_at"] == "2031-01-02T08:00:00Z"
    last = complete(api, alice, second["id"])
    assert last.status == 200 and "link" not in last.headers
    assert len(api.get("/api/me/tasks", user=alice).json()["items"]) == 2


def test_uncompleting_and_completing_again_never_makes_a_second_successor(api, alice):
    task = api.create_task(alice, recurrence="FREQ=DAILY", due_at=iso(future(1)))
    first = complete(api, alice, task["id"])
    api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice, json={"completed": False})
    again = complete(api, alice, task["id"])
    toggled = api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice)  # un-complete by toggle
    toggled = api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice)  # and complete again
    assert first.headers["link"] == again.headers["link"] == toggled.headers["link"]
    assert len(api.get("/api/me/tasks", user=alice).json()["items"]) == 2


def test_twenty_concurrent_completes_make_one_successor(api, alice, sql):
    task = api.create_task(alice, recurrence="FREQ=DAILY", due_at=iso(future(1)))
    replies, barrier = [], threading.Barrier(20)

    def run() -> None:
        barrier.wait()
        replies.append(complete(LambdaApi(), alice, task["id"]))

    threads = [threading.Thread(target=run) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status for r in replies} == {200}
    assert len({r.headers["link"] for r in replies}) == 1
    assert sql.run("SELECT count(*) FROM tasks WHERE successor_of = CAST(:id AS uuid)", id=task["id"]) == [[1]]


@pytest.mark.parametrize("how", ["put", "patch"])
def test_put_and_patch_that_complete_make_the_successor_too(api, alice, how):
    due = iso(future(1))
    task = api.create_task(alice, recurrence="FREQ=WEEKLY", due_at=due)
    if how == "put":
        reply = api.put(f"/api/me/tasks/{task['id']}", user=alice, json={"title": task["title"], "recurrence": "FREQ=WEEKLY", "due_at": due, "completed": True})
    else:
        reply = api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"completed": True})
    assert reply.status == 200
    assert next_of(api, alice, reply)["due_at"] == iso(future(8))


def test_an_idempotent_complete_replays_without_a_second_successor(api, alice, sql):
    task = api.create_task(alice, recurrence="FREQ=DAILY", due_at=iso(future(1)))
    headers = {"idempotency-key": f"k-{uuid.uuid4().hex}"}
    first = api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice, headers=headers)
    again = api.patch(f"/api/me/tasks/{task['id']}/complete", user=alice, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true" and again.body == first.body
    assert again.headers["link"] == first.headers["link"]
    assert sql.run("SELECT count(*) FROM tasks WHERE series_id = CAST(:id AS uuid)", id=task["id"]) == [[2]]


def test_a_rule_patched_in_part_still_completes_in_the_right_place(api, alice):
    """PATCH of the zone alone leaves the stored occurrences to be expanded on completion."""
    task = api.create_task(alice, recurrence="FREQ=DAILY", due_at="2031-06-01T07:00:00Z", timezone="UTC")
    patched = api.patch(f"/api/me/tasks/{task['id']}", user=alice, json={"timezone": "Europe/Berlin"})
    assert patched.status == 200
    nxt = next_of(api, alice, complete(api, alice, task["id"]))
    assert nxt["due_at"] == "2031-06-02T07:00:00Z" and nxt["timezone"] == "Europe/Berlin"


def test_completing_far_past_the_stored_occurrences_still_finds_the_next_one(api, alice):
    long_ago = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=800)
    task = api.create_task(alice, recurrence="FREQ=DAILY", due_at=iso(long_ago))
    due = datetime.fromisoformat(next_of(api, alice, complete(api, alice, task["id"]))["due_at"].replace("Z", "+00:00"))
    assert datetime.now(timezone.utc) < due <= datetime.now(timezone.utc) + timedelta(days=1)


def test_setting_recurrence_to_null_stops_the_series_and_trashing_makes_no_successor(api, alice):
    stopped = api.create_task(alice, recurrence="FREQ=DAILY", due_at=iso(future(1)))
    api.patch(f"/api/me/tasks/{stopped['id']}", user=alice, json={"recurrence": None})
    assert "link" not in complete(api, alice, stopped["id"]).headers
    trashed = api.create_task(alice, recurrence="FREQ=DAILY", due_at=iso(future(1)))
    assert api.delete(f"/api/me/tasks/{trashed['id']}", user=alice).status == 204
    assert len(api.get("/api/me/tasks", user=alice).json()["items"]) == 1


def test_a_put_that_keeps_the_rule_keeps_the_series_dtstart_and_its_count(api, alice):
    first = api.create_task(alice, recurrence="FREQ=DAILY;COUNT=3", due_at="2031-01-01T08:00:00Z")
    second = next_of(api, alice, complete(api, alice, first["id"]))
    put = api.put(
        f"/api/me/tasks/{second['id']}", user=alice,
        json={"title": "renamed", "recurrence": "FREQ=DAILY;COUNT=3", "due_at": second["due_at"]},
    )  # fmt: skip
    assert put.status == 200 and put.json()["version"] == 2
    third = next_of(api, alice, complete(api, alice, second["id"]))
    assert third["due_at"] == "2031-01-03T08:00:00Z"
    assert "link" not in complete(api, alice, third["id"]).headers  # the third of three: the series ends
