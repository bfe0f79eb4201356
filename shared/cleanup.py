"""Scheduled cleanup: deletes for good what expired, safe at any size, any time, twice.

What expired: tasks in the trash since before `now() - TRASH_RETENTION_DAYS` (days of 24
hours; 0 means everything trashed before the run started), idempotency records whose
`expires_at` has passed, and change-log entries older than `CHANGES_RETENTION_DAYS` that
were published (the role's policy shows it no other; a user's entries only grow older
along the log and are published in its order, so what goes is always a prefix of a user's
log, and shared/changes.py can tell a cursor behind it). Nothing else is ever touched.

A purged task gets its `delete` in the change log (the trigger of migration 0008, in the
batch's own statement). A replica does not need it (the task went out of its lists with
the `delete` of its trashing), but the log says every disappearance, and a consumer of the
events that keeps the trash learns the task is gone for good.

- The rule is fixed once, at the start of the run, from the database clock: a long run,
  or one on a machine with a wrong clock, deletes exactly what had expired when it began.
- Work goes in batches of at most `BATCH_SIZE` rows, each its own short transaction (and
  connection), so a batch holds its row locks for tens of milliseconds, a failed one rolls
  back alone, and memory does not grow with the backlog: only counts come back.
- Each batch takes its rows `FOR UPDATE SKIP LOCKED`: two runs at once split the work,
  never delete a row twice and never wait on each other (nor on a user's restore).
- Every batch is re-checked against the rule on the row as it is *now* (a task restored
  while the batch was choosing it stays).
- Before each batch it asks how much time is left (the Lambda context's
  `get_remaining_time_in_millis`) and stops cleanly when less than the margin remains;
  `finished: false` says so, and the next run continues where this one stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from aws_lambda_powertools.metrics import MetricUnit
from shared.batches import STOP_MARGIN_MS, BatchRun, no_limit, run_batches
from shared.db import CLEANUP_ROLE, Sql, flight
from shared.errors import DatabaseUnavailable
from shared.observability import logger
from shared.settings import get_settings

BATCH_SIZE = 5000
# A batch whose owners were all busy (their user rows held: a write in flight) is tried
# again after each of these pauses, then its rows are left for the next run.
BUSY_OWNER_PAUSES_S = (0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.25)
# The most the final "anything left?" check may take (see _clean).
CHECK_TIMEOUT_CAP_MS = 120_000

_CUTOFFS = Sql(
    "SELECT now() - :days::int * interval '24 hours' AS trash_cutoff,"
    " now() - :changes_days::int * interval '24 hours' AS changes_cutoff, now() AS now"
)


@dataclass(frozen=True)
class _Kind:
    key: str  # its count in the result
    metric: str  # its metric, after the run's prefix
    delete: Sql  # one batch: (deleted, taken, last value taken) for :cutoff, :floor, :n


def _batch_delete(table: str, column: str, expired: str, *, owners_free: bool = False) -> Sql:
    """One batch of `table`'s rows whose `column` is `expired` (`<` or `<=`) :cutoff.

    Each batch walks the rule's index in order from where the previous one stopped (:floor),
    so it never re-reads the index entries of rows already deleted: batch 500 costs what
    batch 1 did. It deletes by address (`ctid`, a TID scan: no join for the planner to get
    wrong), and the outer condition re-checks every row as it is now. Rows below :floor that
    were skipped because someone held them (another run, a restore in progress) are that
    one's, or counted by _ANYTHING_LEFT as not finished.

    `owners_free` (tasks): a purge appends to its owners' change logs, which takes their
    user rows (migration 0008). `change_log_free_owners` locks them SKIP LOCKED: the rows of
    a user whose row is held (a write of theirs in flight, another run's batch) are not
    deleted, and `skipped` says from where (see _clean). The result: (deleted, taken, last
    value taken, first value skipped).
    """
    free = ", free AS (SELECT change_log_free_owners(ARRAY(SELECT DISTINCT user_id FROM chosen)) AS user_id)" if owners_free else ""
    skipped = (
        f"(SELECT min({column}) FROM chosen WHERE user_id NOT IN (SELECT user_id FROM free))" if owners_free else "NULL::timestamptz"
    )
    return Sql(
        f"""
        WITH chosen AS (
            SELECT ctid, {column}{", user_id" if owners_free else ""} FROM {table}
            WHERE {column} {expired} :cutoff::timestamptz AND {column} >= coalesce(:floor::timestamptz, '-infinity')
            ORDER BY {column}
            LIMIT :n::int FOR UPDATE SKIP LOCKED
        ){free}, gone AS (
            DELETE FROM {table}
            WHERE ctid = ANY(ARRAY(SELECT ctid FROM chosen{" WHERE user_id IN (SELECT user_id FROM free)" if owners_free else ""}))
              AND {column} {expired} :cutoff::timestamptz
            RETURNING {column}
        )
        SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM chosen) AS taken,
               (SELECT max({column}) FROM chosen) AS last, {skipped} AS skipped
        """
    )


# Taken by every batch of the purge before its rows: two runs' purges take turns, batch by
# batch, rather than each finding the other's owners held (and giving up on them after the
# pauses below). A user's write never takes it, so it cannot deadlock with one; held to the
# batch's commit (a few ms).
_PURGE_TURN = Sql("SELECT pg_advisory_xact_lock(hashtext('todo-api cleanup purge')) AS turn")

_TASKS = _Kind(key="tasks_deleted", metric="TasksDeleted", delete=_batch_delete("tasks", "deleted_at", "<", owners_free=True))
_IDEMPOTENCY_KEYS = _Kind(
    key="idempotency_keys_deleted",
    metric="IdempotencyKeysDeleted",
    delete=_batch_delete("idempotency_keys", "expires_at", "<="),
)
_CHANGES = _Kind(key="changes_deleted", metric="ChangesDeleted", delete=_batch_delete("change_log", "at", "<"))
KINDS = (_TASKS, _IDEMPOTENCY_KEYS, _CHANGES)

# The oldest of each, read from the end of its index (never a scan of the live tasks).
# Rows locked by another run still count here: `finished` is never claimed too early.
_ANYTHING_LEFT = Sql(
    """
    SELECT coalesce((SELECT min(deleted_at) FROM tasks) < :trash_cutoff::timestamptz, false)
        OR coalesce((SELECT min(expires_at) FROM idempotency_keys) <= :now::timestamptz, false)
        OR coalesce((SELECT min(at) FROM change_log) < :changes_cutoff::timestamptz, false) AS left
    """
)


@dataclass
class _Run(BatchRun):
    job: ClassVar[str] = "cleanup"
    metric: ClassVar[str] = "Cleanup"
    deleted: dict[str, int] = field(default_factory=lambda: {kind.key: 0 for kind in KINDS})
    trash_cutoff: datetime | None = None

    def result(self) -> dict[str, Any]:
        """What the contract prints (the pruned log entries are in the log line and metrics)."""
        return {"tasks_deleted": self.deleted[_TASKS.key], "idempotency_keys_deleted": self.deleted[_IDEMPOTENCY_KEYS.key], "finished": self.finished}

    def log_fields(self) -> dict[str, Any]:
        return {_CHANGES.key: self.deleted[_CHANGES.key], "trash_cutoff": self.trash_cutoff.isoformat() if self.trash_cutoff else None}

    def counts(self) -> dict[str, tuple[str, float]]:
        return {kind.metric: (MetricUnit.Count, self.deleted[kind.key]) for kind in KINDS}


def run_cleanup(*, remaining_ms: Callable[[], int] | None = None, batch_size: int | None = None) -> dict[str, Any]:
    """One run: `{"tasks_deleted": n, "idempotency_keys_deleted": n, "finished": bool}`.

    `remaining_ms` is the time left to the caller (None: no limit). A database fault ends
    the run: the batches already committed stay deleted, the failed one rolls back, the
    fault is logged and raised, and the next run does the rest.
    """
    run = _Run()
    return run_batches(run, lambda: _clean(run, remaining_ms or no_limit, batch_size or BATCH_SIZE))


def _clean(run: _Run, remaining_ms: Callable[[], int], batch_size: int) -> None:
    if not run.may_start(remaining_ms()):
        return
    settings = get_settings()
    (cutoffs_now,) = flight(_CUTOFFS(days=settings.trash_retention_days, changes_days=settings.changes_retention_days), role=CLEANUP_ROLE)
    trash_cutoff, changes_cutoff, now = (cutoffs_now.rows[0][name] for name in ("trash_cutoff", "changes_cutoff", "now"))
    run.trash_cutoff = trash_cutoff
    cutoffs = {_TASKS.key: trash_cutoff, _IDEMPOTENCY_KEYS.key: now, _CHANGES.key: changes_cutoff}
    for kind in KINDS:
        floor, pauses = None, iter(BUSY_OWNER_PAUSES_S)
        while True:
            if not run.may_start(remaining_ms()):
                return
            began = time.perf_counter()
            queries = [kind.delete(cutoff=cutoffs[kind.key], floor=floor, n=batch_size)]
            if kind is _TASKS:
                queries.insert(0, _PURGE_TURN())
            batch = flight(*queries, role=CLEANUP_ROLE)[-1]
            row = batch.rows[0]
            run.batches += 1
            run.slowest_batch_ms = max(run.slowest_batch_ms, (time.perf_counter() - began) * 1000)
            run.deleted[kind.key] += row["deleted"]
            if row["skipped"] is None:
                floor = row["last"]
                if row["taken"] < batch_size:  # everything not held by someone else was taken
                    break
                continue
            # Some owners were busy: the next batch starts at their first row again (never
            # past a row not deleted), after a pause when nothing else was deleted; a user
            # busy past every pause is left for the next run.
            if row["deleted"] > 0:
                floor, pauses = row["skipped"], iter(BUSY_OWNER_PAUSES_S)
                continue
            pause = next(pauses, None)
            if pause is None:
                floor, pauses = row["last"], iter(BUSY_OWNER_PAUSES_S)
                if row["taken"] < batch_size:
                    break
                continue
            floor = row["skipped"]
            time.sleep(pause)
    if not run.may_start(remaining_ms()):
        return
    # Right after a large purge the index is full of entries of rows just deleted, and the
    # first scan to reach them checks each against the heap (marking them dead for the next):
    # seconds at a million. The check may take the run's remaining time, not one request's
    # statement timeout; if even that is not enough, what was deleted stays committed and
    # "finished" is simply not claimed: the next run asks again.
    budget_ms = min(max(remaining_ms() - STOP_MARGIN_MS, 1000), CHECK_TIMEOUT_CAP_MS)
    try:
        (left,) = flight(_ANYTHING_LEFT(trash_cutoff=trash_cutoff, now=now, changes_cutoff=changes_cutoff), role=CLEANUP_ROLE, statement_timeout_ms=budget_ms)
    except DatabaseUnavailable:
        logger.warning("cleanup could not tell whether anything expired is left; not claiming finished")
        return
    run.finished = not left.rows[0]["left"]

