"""Scheduled reminders: each due reminder put on the API's bus once, then marked sent.

A reminder is due when the task's `remind_at` has passed, the task is open and not in the
trash, and `reminded_at` is null (a partial index, `ix_tasks_due_reminders`, holds exactly
those, in `remind_at` order). One run works in batches, each ONE explicit transaction
(`db.transaction`, role `todo_reminders`, which sees nothing but due reminders):

1. flight 1 takes up to `BATCH_SIZE` due reminders `ORDER BY remind_at ... FOR UPDATE SKIP
   LOCKED` through that index: two runs at once take disjoint batches and never wait on
   each other, and a user's write to one of these tasks waits for the batch (a short one);
2. those more than `REMINDER_MAX_LATE_HOURS` overdue are `skipped_late` (no event: a long
   outage must not flood users with stale reminders); the others go to the publisher
   (shared/events.py: EventBridge PutEvents in chunks of 10, failed entries retried);
3. flight 2 marks sent (`reminded_at = now()`) exactly the reminders that were put and the
   late ones; COMMIT. A reminder whose event still failed stays unmarked, and the next run
   sends it again with the same `event_id` (uuid5 of the task id and its remind_at), so
   delivery is at least once and consumers can drop duplicates.

If the process dies between the put and the COMMIT, the batch's marks roll back and the
next run resends those events: same `event_id`. Changing `remind_at` re-arms a reminder
(the task's write statement clears `reminded_at`), completing or trashing cancels it.

The run's cut-off is the first batch's `now()`: what becomes due during a run is the next
run's. Like the cleanup, it starts a batch only with max(3 s, 3 x the slowest batch) of
Lambda time left; `finished` says whether anything due at the cut-off was left.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from aws_lambda_powertools.metrics import MetricUnit
from shared import events as event_bus
from shared.batches import BatchRun, no_limit, run_batches
from shared.db import Sql, flight, transaction
from shared.settings import get_settings

ROLE = "todo_reminders"
DETAIL_TYPE = "Task Reminder"
BATCH_SIZE = 200  # the batch's row locks are held while its events are put (~2-3 parallel PutEvents rounds)
MAX_FAILED_PER_RUN = 1000  # past this many unsent reminders the run stops: the bus is unwell
# event_id = uuid5(this, "<task id>/<remind_at>"): the same reminder, the same id, on every resend.
EVENT_NAMESPACE = uuid.UUID("6f1c2b8e-4a5d-5e7f-9a0b-1c2d3e4f5a6b")

_NOW = Sql("SELECT now() AS now")
# Through the partial index, in remind_at order, from where the last batch stopped (:floor,
# so a batch never re-reads the index entries of reminders already marked); reminders of
# this run that failed (:failed) are left for the next run.
_TAKE = Sql(
    """
    SELECT id, user_id, title, due_at, remind_at,
           now() - remind_at > make_interval(hours => :max_late_hours::int) AS late,
           (extract(epoch FROM now() - remind_at) * 1000)::bigint AS lag_ms
    FROM tasks
    WHERE remind_at <= coalesce(:cutoff::timestamptz, now())
      AND remind_at >= coalesce(:floor::timestamptz, '-infinity')
      AND reminded_at IS NULL AND NOT completed AND deleted_at IS NULL
      AND id <> ALL(:failed::uuid[])
    ORDER BY remind_at
    LIMIT :n::int
    FOR UPDATE SKIP LOCKED
    """
)
_MARK = Sql(
    """
    UPDATE tasks SET reminded_at = now()
    WHERE id = ANY(:ids::uuid[]) AND reminded_at IS NULL
    """
)
# Anything due at the cut-off still unmarked (locked by another run included: `finished`
# is never claimed too early), read from the start of the index.
_ANYTHING_LEFT = Sql(
    """
    SELECT EXISTS (
        SELECT FROM tasks
        WHERE remind_at <= :cutoff::timestamptz AND reminded_at IS NULL AND NOT completed AND deleted_at IS NULL
    ) AS left
    """
)


def event_id(task_id: Any, remind_at: datetime) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{task_id}/{_utc(remind_at)}"))


def _utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")  # as the API writes them


def reminder_event(row: dict[str, Any]) -> event_bus.Event:
    return event_bus.Event(
        detail_type=DETAIL_TYPE,
        detail={
            "event_id": event_id(row["id"], row["remind_at"]),
            "task_id": str(row["id"]),
            "user_id": row["user_id"],
            "title": row["title"],
            "due_at": _utc(row["due_at"]),
            "remind_at": _utc(row["remind_at"]),
        },
    )


@dataclass
class _Run(BatchRun):
    sent: int = 0
    skipped_late: int = 0
    failed_ids: list[str] = field(default_factory=list)
    error_codes: dict[str, int] = field(default_factory=dict)
    lag_max_ms: int = 0
    lag_total_ms: int = 0
    cutoff: datetime | None = None

    job: ClassVar[str] = "reminders"
    metric: ClassVar[str] = "Reminders"

    def result(self) -> dict[str, Any]:
        return {"sent": self.sent, "skipped_late": self.skipped_late, "finished": self.finished}

    def log_fields(self) -> dict[str, Any]:
        return {
            "failed": len(self.failed_ids),
            "error_codes": self.error_codes,
            "lag_max_ms": self.lag_max_ms,
            "lag_avg_ms": round(self.lag_total_ms / self.sent) if self.sent else 0,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
        }

    def counts(self) -> dict[str, tuple[str, float]]:
        return {
            "Sent": (MetricUnit.Count, self.sent),
            "SkippedLate": (MetricUnit.Count, self.skipped_late),
            "Failed": (MetricUnit.Count, len(self.failed_ids)),
            "LagMax": (MetricUnit.Milliseconds, self.lag_max_ms),
        }

    def left_undone(self) -> str | None:
        return "some events were not put; they are resent by the next run" if self.failed_ids else None


def run_reminders(
    *,
    remaining_ms: Callable[[], int] | None = None,
    batch_size: int | None = None,
    publisher: event_bus.Publisher | None = None,
) -> dict[str, Any]:
    """One run: `{"sent": n, "skipped_late": n, "finished": bool}`.

    `remaining_ms` is the time left to the caller (None: no limit); `publisher` defaults to
    the process's (shared/events.py). Events that could not be put are counted (`failed`
    in the log line and metrics) and left for the next run; a database fault rolls back the
    batch in flight (its events, if already put, are resent next run with the same ids) and
    is logged and raised.
    """
    run = _Run()
    return run_batches(run, lambda: _remind(run, remaining_ms or no_limit, batch_size or BATCH_SIZE, publisher or event_bus.publisher()))


def _remind(run: _Run, remaining_ms: Callable[[], int], batch_size: int, publisher: event_bus.Publisher) -> None:
    max_late_hours = get_settings().reminder_max_late_hours
    floor: datetime | None = None
    while True:
        if not run.may_start(remaining_ms()):
            return
        began = time.perf_counter()
        with transaction(role=ROLE) as work:
            now, taken = work.flight(
                _NOW(),
                _TAKE(cutoff=run.cutoff, floor=floor, failed=run.failed_ids, max_late_hours=max_late_hours, n=batch_size),
            )
            if run.cutoff is None:
                run.cutoff = now.rows[0]["now"]
            rows = taken.rows
            late = [row for row in rows if row["late"]]
            due = [row for row in rows if not row["late"]]
            outcome = publisher.publish([reminder_event(row) for row in due]) if due else []
            put = [row for row, code in zip(due, outcome) if code is None]
            failed = [(row, code) for row, code in zip(due, outcome) if code is not None]
            marked = [str(row["id"]) for row in (*put, *late)]
            if marked:
                (done,) = work.flight(_MARK(ids=marked))
                if done.row_count != len(marked):  # we hold their locks: never, unless the schema lies
                    raise RuntimeError(f"marked {done.row_count} reminders of {len(marked)}")
        run.batches += 1
        run.slowest_batch_ms = max(run.slowest_batch_ms, (time.perf_counter() - began) * 1000)
        run.sent += len(put)
        run.skipped_late += len(late)
        for row in put:
            run.lag_max_ms = max(run.lag_max_ms, row["lag_ms"])
            run.lag_total_ms += row["lag_ms"]
        for row, code in failed:
            run.failed_ids.append(str(row["id"]))
            run.error_codes[code] = run.error_codes.get(code, 0) + 1
        if rows:
            floor = rows[-1]["remind_at"]
        if len(rows) < batch_size:
            break  # everything due at the cut-off and not held by another run was taken
        if failed and not put and not late:
            return  # nothing of a full batch got through: the bus is down, stop here
        if len(run.failed_ids) > MAX_FAILED_PER_RUN:
            return
    if not run.may_start(remaining_ms()):
        return
    (left,) = flight(_ANYTHING_LEFT(cutoff=run.cutoff), role=ROLE)
    run.finished = not left.rows[0]["left"]
