"""EventBridge schedules emulated: `todo-api serve` runs every scheduled function of the
template on its own schedule, in the background, while it serves.

- Expressions as EventBridge writes them (UTC): `rate(1 minute)`, `rate(5 minutes)`,
  `rate(1 hour)`, `rate(2 days)` (singular for 1, plural otherwise, as EventBridge demands),
  and `cron(minutes hours day-of-month month day-of-week year)` with AWS's rules: one of
  day-of-month / day-of-week is `?`, day-of-week counts 1-7 from Sunday (or SUN-SAT), `L`,
  `W`, `#`. AWS cron is turned into the 5-field cron `croniter` (a maintained library)
  evaluates, the year checked apart. What cannot be turned is refused at start, loudly.
- A rate schedule first fires one interval after start, as a new EventBridge rule does.
- Each function has its own thread: a slow cleanup never delays the reminders. A run still
  going when its next time comes makes that time be skipped (EventBridge would start a
  second one; locally, one at a time is enough and easier to read in the log).
- The function's real handler gets an EventBridge "Scheduled Event" and a Lambda-like
  context with its template timeout; a failure is logged and the schedule goes on.

Development tooling only: no Lambda function imports this module.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from shared.local.lambda_context import FakeLambdaContext
from shared.template import Function, functions

log = logging.getLogger("todo_api.serve")

ACCOUNT, REGION = "123456789012", "us-east-1"  # what events/*.json carry


class Schedule(Protocol):
    expression: str

    def next_after(self, moment: datetime) -> datetime: ...


@dataclass(frozen=True)
class Rate:
    interval: timedelta
    expression: str = ""

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval


_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_DAYS = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


@dataclass(frozen=True)
class Cron:
    """An AWS cron expression: croniter's 5 fields, and the years it may fire in (None: any)."""

    expression: str
    five_fields: str
    years: frozenset[int] | None

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        times = croniter(self.five_fields, moment.astimezone(timezone.utc))
        for _ in range(10_000):
            candidate = times.get_next(datetime)
            if self.years is None or candidate.year in self.years:
                return candidate
            if self.years and candidate.year > max(self.years):
                break
        return datetime.max.replace(tzinfo=timezone.utc)  # never again


def parse_schedule(expression: str) -> Schedule:
    """`rate(...)` or `cron(...)` as EventBridge reads them; ValueError for anything else."""
    rate = _RATE.fullmatch(expression.strip())
    if rate:
        value, unit = int(rate[1]), rate[2]
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise ValueError(f"{expression!r}: EventBridge wants rate(1 {unit.rstrip('s')}) or rate(N {unit.rstrip('s')}s), N > 1")
        return Rate(value * _UNITS[unit.rstrip("s")], expression)
    cron = re.fullmatch(r"cron\((.+)\)", expression.strip())
    if cron:
        return _aws_cron(expression, cron[1].split())
    raise ValueError(f"{expression!r} is neither rate(...) nor cron(...)")


def _aws_cron(expression: str, fields: list[str]) -> Cron:
    from croniter import croniter

    if len(fields) != 6:
        raise ValueError(f"{expression!r}: AWS cron has 6 fields (minutes hours day-of-month month day-of-week year)")
    minutes, hours, day_of_month, month, day_of_week, year = (field.upper() for field in fields)
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ValueError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    five = " ".join([minutes, hours, "*" if day_of_month == "?" else day_of_month, month, _day_of_week(expression, day_of_week)])
    if not croniter.is_valid(five):
        raise ValueError(f"{expression!r}: not a cron expression this emulation can run ({five!r})")
    return Cron(expression, five, _years(expression, year))


def _day_of_week(expression: str, field: str) -> str:
    """AWS counts 1 (SUN) to 7 (SAT); croniter 0 (SUN) to 6. `6L` (last Friday) is croniter's `L5`."""
    if field == "?":
        return "*"

    def day(token: str) -> str:
        if token in _DAYS:
            return token
        if not token.isdigit() or not 1 <= int(token) <= 7:
            raise ValueError(f"{expression!r}: day-of-week {token!r} is not 1-7 or SUN-SAT")
        return str(int(token) - 1)

    parts = []
    for part in field.split(","):
        if part.startswith("*"):
            parts.append(part)
        elif "#" in part:
            weekday, nth = part.split("#", 1)
            parts.append(f"{day(weekday)}#{nth}")
        elif part.endswith("L") and len(part) > 1:
            parts.append(f"L{day(part[:-1])}")
        else:
            span, _, step = part.partition("/")
            parts.append("-".join(day(token) for token in span.split("-")) + (f"/{step}" if step else ""))
    return ",".join(parts)


def _years(expression: str, field: str) -> frozenset[int] | None:
    if field in ("*", "?"):
        return None
    years: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        first, _, last = span.partition("-")
        if not first.isdigit() or (last and not last.isdigit()) or (step and not step.isdigit()):
            raise ValueError(f"{expression!r}: year {part!r} is not a year, a range or a list of them")
        end = int(last) if last else (2199 if step else int(first))
        years.update(range(int(first), end + 1, int(step or 1)))
    return frozenset(years)


# -------------------------------------------------------------------------- running them


@dataclass(frozen=True)
class Job:
    name: str
    schedule: Schedule
    run: Callable[[datetime], Any]  # called with the time it was scheduled for


def scheduled_event(function: Function, event_id: str, at: datetime) -> dict[str, Any]:
    """What EventBridge sends a scheduled function (events/Cleanup.json's shape)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/todo-api-local-{event_id}"],
        "detail": {},
    }


def template_jobs(overrides: dict[str, Schedule] | None = None) -> list[Job]:
    """One job per schedule of every scheduled function of the template; `overrides` (by
    function logical id) replace a schedule, for a test that cannot wait a minute."""
    jobs = []
    for function in functions().values():
        for event_id, expression in zip(function.schedules, function.schedule_expressions):
            schedule = (overrides or {}).get(function.logical_id) or parse_schedule(expression)
            jobs.append(Job(f"{function.logical_id} ({schedule.expression or expression})", schedule, _invoker(function, event_id)))
    return jobs


def _invoker(function: Function, event_id: str) -> Callable[[datetime], Any]:
    def run(at: datetime) -> Any:
        handler = function.load_handler()
        return handler(scheduled_event(function, event_id, at), FakeLambdaContext(function.logical_id, timeout_ms=int(function.timeout * 1000)))

    return run


class Scheduler:
    """Runs each job on its schedule, each in a thread of its own, until `stop()`."""

    def __init__(self, jobs: list[Job], *, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.jobs = jobs
        self._clock = clock
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Scheduler:
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"schedule {job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """No new run starts; a run in progress is waited for (up to `timeout` each)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self, job: Job) -> None:
        due = job.schedule.next_after(self._clock())
        while not self._stopping.is_set():
            wait = (due - self._clock()).total_seconds()
            if wait > 0 and self._stopping.wait(min(wait, 3600.0)):
                return
            if self._clock() < due:
                continue  # woke early (a long wait is cut in hours)
            try:
                result = job.run(due)
                log.info("scheduled %s ran: %s", job.name, result)
            except Exception:  # noqa: BLE001 - a failed run is logged; the schedule goes on
                log.exception("scheduled %s failed", job.name)
            now = self._clock()
            due = job.schedule.next_after(due)
            while due <= now:  # a run that outlasted its interval: the missed times are skipped
                due = job.schedule.next_after(due)
