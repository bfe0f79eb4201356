"""The schedules `todo-api serve` runs: EventBridge's rate(...) and AWS cron(...) as EventBridge reads them (UTC)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from shared.local.scheduler import Job, Rate, Scheduler, parse_schedule, template_jobs
from shared.template import functions

START = datetime(2026, 1, 1, tzinfo=timezone.utc)  # a Thursday


@pytest.mark.parametrize(
    ("expression", "first"),
    [
        ("rate(1 minute)", datetime(2026, 1, 1, 0, 1)),
        ("rate(5 minutes)", datetime(2026, 1, 1, 0, 5)),
        ("rate(1 hour)", datetime(2026, 1, 1, 1, 0)),
        ("rate(2 days)", datetime(2026, 1, 3, 0, 0)),
        ("cron(0 3 * * ? *)", datetime(2026, 1, 1, 3, 0)),
        ("cron(0/15 * * * ? *)", datetime(2026, 1, 1, 0, 15)),
        ("cron(0 9 ? * MON-FRI *)", datetime(2026, 1, 1, 9, 0)),
        ("cron(0 9 ? * 1 *)", datetime(2026, 1, 4, 9, 0)),  # AWS: 1 is Sunday
        ("cron(0 9 ? * 7 *)", datetime(2026, 1, 3, 9, 0)),  # 7 is Saturday
        ("cron(0 8 ? * 2#1 *)", datetime(2026, 1, 5, 8, 0)),  # the first Monday
        ("cron(0 18 ? * 6L *)", datetime(2026, 1, 30, 18, 0)),  # the last Friday
        ("cron(15 10 L * ? *)", datetime(2026, 1, 31, 10, 15)),  # the last day of the month
        ("cron(0 12 1 6 ? 2027)", datetime(2027, 6, 1, 12, 0)),  # a year
    ],
)
def test_eventbridge_expressions(expression, first):
    schedule = parse_schedule(expression)
    assert schedule.next_after(START) == first.replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "expression",
    ["rate(1 minutes)", "rate(2 minute)", "rate(0 minutes)", "rate(1 week)", "cron(0 3 * * * *)", "cron(0 3 ? * ? *)",
     "cron(0 3 * * ?)", "cron(0 3 ? * 8 *)", "cron(0 3 * * ? yearly)", "every day"],
)
def test_what_eventbridge_refuses_is_refused_at_start(expression):
    with pytest.raises(ValueError):
        parse_schedule(expression)


def test_every_schedule_of_the_template_is_run_by_serve():
    jobs = template_jobs()
    expected = [(f.logical_id, e) for f in functions().values() for e in f.schedule_expressions]
    assert {("Cleanup", "rate(1 day)"), ("Reminders", "rate(1 minute)")} <= set(expected)
    assert sorted(job.name for job in jobs) == sorted(f"{lid} ({e})" for lid, e in expected)


def test_a_job_fires_on_its_interval_survives_a_failure_and_stops_with_the_scheduler():
    fired: list[datetime] = []
    lock = threading.Lock()

    def run(at: datetime) -> None:
        with lock:
            fired.append(at)
        if len(fired) == 2:
            raise RuntimeError("a failed run is logged; the schedule goes on")

    scheduler = Scheduler([Job("tick", Rate(timedelta(seconds=0.1)), run)]).start()
    deadline = time.monotonic() + 10
    while len(fired) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    scheduler.stop()
    count = len(fired)
    assert count >= 4
    assert all(b - a >= timedelta(seconds=0.1) for a, b in zip(fired, fired[1:]))
    time.sleep(0.3)
    assert len(fired) == count  # stopped
