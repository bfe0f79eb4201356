"""Scheduled publishing of the change log: every change on the API's bus, in order per user,
at least once (a transactional outbox: the log is written in the change's own transaction,
migration 0008, so nothing that rolled back is ever published and nothing committed is lost).

One run works in batches, each ONE explicit transaction (`db.transaction`, role
`todo_publisher`):

1. flight 1 locks the **head** of up to `BATCH_USERS` users, `FOR UPDATE SKIP LOCKED`: a
   user's first unpublished entry (published entries are always a prefix of a user's log),
   the users found by a loose scan of the unpublished entries' index, in user order.
   A user whose head another run holds is skipped whole, so two runs never put one entry
   twice, and a run never puts entry n+1 of a user while another run is on entry n. With
   the heads, the same statement locks up to `PER_USER` entries of each from there and reads
   the objects they name as they are now (shared/changes.py, as the feed does);
2. the events go to the publisher (shared/events.py) in rounds: round r holds each user's
   r-th ten entries, so a user's later changes are put only once the earlier ones were put.
   An entry that still fails after the publisher's retries stops its user for this run:
   it and everything after it stay unpublished;
3. flight 2 marks published each user's entries up to its first failure; COMMIT.

A resend (a failed entry, or a run that died before its COMMIT) carries the same
`event_id`: uuid5 of the user and the entry's number. Entries put after a failed one in
its round are put again after it next time (same ids): consumers drop duplicates by id.

Events: `source` todo-api, `detail-type` from the entry's kind and action (`Task
Completed`, `Category Deleted`, ...), `detail` `{"event_id", "user_id", "kind", "op", "id",
"data", "at"}`. `data` is the object as GET shows it when the event is put (the feed's rule:
its latest state), null for a delete or when the object is gone since.

Like the cleanup and the reminders, it starts a batch only with time left (shared/batches.py)
and stops at the run's cut-off (the first batch's now()): what is written later is the next
run's. `finished` says whether anything unpublished from before the cut-off was left.
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
from shared.changes import object_data, public
from shared.db import Sql, flight, transaction

ROLE = "todo_publisher"
BATCH_USERS = 50
PER_USER = 100  # entries of one user in one batch; the rest is the next batch's
ROUND = event_bus.CHUNK  # a user's entries put together; the next ten only after these
# event_id = uuid5(this, "<user id>/<seq>"): the same change, the same id, on every resend.
EVENT_NAMESPACE = uuid.UUID("0b6f6c1e-3f0a-5d7e-8c9b-2a4d6e8f0a1c")
DETAIL_TYPES = {
    ("task", "created"): "Task Created",
    ("task", "updated"): "Task Updated",
    ("task", "completed"): "Task Completed",
    ("task", "deleted"): "Task Deleted",
    ("task", "restored"): "Task Restored",
    ("category", "created"): "Category Created",
    ("category", "updated"): "Category Updated",
    ("category", "deleted"): "Category Deleted",
}

_NOW = Sql("SELECT now() AS now")
# The users with something to publish, one index probe each (a loose scan of the partial
# index: a backlog of a million entries costs what its users do, not its entries), in user
# order; each one's head (its first unpublished entry) locked SKIP LOCKED; then up to
# :per_user entries of each from its head, with the objects they name.
_TAKE = Sql(
    f"""
    WITH RECURSIVE owners AS (
        (SELECT user_id FROM change_log WHERE published_at IS NULL ORDER BY user_id LIMIT 1)
        UNION ALL
        SELECT (SELECT c.user_id FROM change_log c WHERE c.published_at IS NULL AND c.user_id > o.user_id
                ORDER BY c.user_id LIMIT 1)
        FROM owners o WHERE o.user_id IS NOT NULL
    ), heads AS (
        SELECT h.user_id, h.seq
        FROM owners o
        JOIN LATERAL (SELECT min(seq) AS seq FROM change_log WHERE user_id = o.user_id AND published_at IS NULL) first ON true
        JOIN change_log h ON h.user_id = o.user_id AND h.seq = first.seq
        WHERE h.published_at IS NULL AND h.at <= coalesce(:cutoff::timestamptz, now()) AND h.user_id <> ALL(:stopped::text[])
        LIMIT :users::int
        FOR UPDATE OF h SKIP LOCKED
    ), taken AS (
        SELECT e.user_id, e.seq, e.kind, e.object_id, e.action, e.at
        FROM change_log e JOIN heads h ON h.user_id = e.user_id
        WHERE e.published_at IS NULL AND e.seq >= h.seq AND e.seq < h.seq + :per_user::bigint
        FOR UPDATE OF e
    )
    SELECT t.*, {object_data("t")} AS data FROM taken t ORDER BY t.user_id, t.seq
    """
)
_MARK = Sql(
    """
    UPDATE change_log e SET published_at = now()
    FROM unnest(:users::text[], :heads::bigint[], :through::bigint[]) AS m(user_id, head, through)
    WHERE e.user_id = m.user_id AND e.seq BETWEEN m.head AND m.through AND e.published_at IS NULL
    """
)
_ANYTHING_LEFT = Sql("SELECT EXISTS (SELECT FROM change_log WHERE published_at IS NULL AND at <= :cutoff::timestamptz) AS left")


def event_id(user_id: str, seq: int) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{user_id}/{seq}"))


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")  # as the API writes them


def change_event(row: dict[str, Any]) -> event_bus.Event:
    op = "delete" if row["action"] == "deleted" else "upsert"
    shown = public(row["kind"], row["data"]) if op == "upsert" else None
    return event_bus.Event(
        detail_type=DETAIL_TYPES[(row["kind"], row["action"])],
        detail={
            "event_id": event_id(row["user_id"], row["seq"]),
            "user_id": row["user_id"],
            "kind": row["kind"],
            "op": op,
            "id": str(row["object_id"]),
            "data": shown.model_dump(mode="json") if shown is not None else None,
            "at": _utc(row["at"]),
        },
        time=row["at"],
    )


@dataclass
class _Run(BatchRun):
    published: int = 0
    stopped_users: list[str] = field(default_factory=list)
    error_codes: dict[str, int] = field(default_factory=dict)
    cutoff: datetime | None = None

    job: ClassVar[str] = "publish changes"
    metric: ClassVar[str] = "Changes"

    def result(self) -> dict[str, Any]:
        return {"published": self.published, "finished": self.finished}

    def log_fields(self) -> dict[str, Any]:
        return {
            "stopped_users": len(self.stopped_users),
            "error_codes": self.error_codes,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
        }

    def counts(self) -> dict[str, tuple[str, float]]:
        return {"Published": (MetricUnit.Count, self.published), "StoppedUsers": (MetricUnit.Count, len(self.stopped_users))}

    def left_undone(self) -> str | None:
        return "some events were not put; they are put again by the next run" if self.stopped_users else None


def run_publish(
    *,
    remaining_ms: Callable[[], int] | None = None,
    batch_users: int | None = None,
    publisher: event_bus.Publisher | None = None,
) -> dict[str, Any]:
    """One run: `{"published": n, "finished": bool}`.

    A change that could not be put is counted (`failed` in the log line and metrics) and
    left, with its user's later ones, for the next run; a database fault rolls back the
    batch in flight (whatever it had put is put again next run, same ids) and is raised.
    """
    run = _Run()
    return run_batches(run, lambda: _publish(run, remaining_ms or no_limit, batch_users or BATCH_USERS, publisher or event_bus.publisher()))


def _publish(run: _Run, remaining_ms: Callable[[], int], batch_users: int, publisher: event_bus.Publisher) -> None:
    while True:
        if not run.may_start(remaining_ms()):
            return
        began = time.perf_counter()
        with transaction(role=ROLE) as work:
            now, taken = work.flight(
                _NOW(), _TAKE(cutoff=run.cutoff, stopped=run.stopped_users, users=batch_users, per_user=PER_USER)
            )
            if run.cutoff is None:
                run.cutoff = now.rows[0]["now"]
            if not taken.rows:
                break
            marks = _put_in_order(run, taken.rows, publisher)
            if marks:
                users, heads, through = (list(column) for column in zip(*marks))
                work.flight(_MARK(users=users, heads=heads, through=through))
        run.batches += 1
        run.slowest_batch_ms = max(run.slowest_batch_ms, (time.perf_counter() - began) * 1000)
        if not marks:
            return  # nothing of a batch got through: the bus is unwell, stop here
    if not run.may_start(remaining_ms()):
        return
    (left,) = flight(_ANYTHING_LEFT(cutoff=run.cutoff), role=ROLE)
    run.finished = not left.rows[0]["left"]


def _put_in_order(run: _Run, rows: list[dict[str, Any]], publisher: event_bus.Publisher) -> list[tuple[str, int, int]]:
    """Puts each user's entries (in seq order) in rounds of ROUND; per user that got any
    through: (user, first seq, last seq put before its first failure)."""
    by_user: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    through: dict[str, int] = {}
    active = list(by_user)
    start = 0
    while active:
        segments = [(user, by_user[user][start : start + ROUND]) for user in active]
        segments = [(user, segment) for user, segment in segments if segment]
        if not segments:
            break
        outcome = iter(publisher.publish([change_event(row) for _, segment in segments for row in segment]))
        active = []
        for user, segment in segments:
            codes = [next(outcome) for _ in segment]
            failed_at = next((i for i, code in enumerate(codes) if code is not None), None)
            done = segment if failed_at is None else segment[:failed_at]
            if done:
                through[user] = done[-1]["seq"]
                run.published += len(done)
            if failed_at is None:
                active.append(user)
            else:
                run.stopped_users.append(user)
                code = codes[failed_at] or "unknown"
                run.error_codes[code] = run.error_codes.get(code, 0) + 1
        start += ROUND
    return [(user, by_user[user][0]["seq"], last) for user, last in through.items()]

