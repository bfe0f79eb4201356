"""Tasks: every rule of the contract about them, each request one flight (shared/db.py).

Every query filters by owner (and row-level security filters again); an id that is not the
caller's is `NotFound`, exactly as one that does not exist. A trashed task (`deleted_at`
set) is invisible to all but the trash. A category that is not the caller's is refused by
the composite foreign key `fk_tasks_category_owner` (owner, category), in the same statement.

Subtasks (docs/decisions/0010): a parent is refused the same way (`fk_tasks_parent_owner`),
and the tree's other rules by triggers that raise named constraints (`_REFUSED`). Every
flight that writes tasks locks the caller's user row first (`lock_user`), the lock those
triggers take too. Trash, restore and complete carry their subtree in the same statement
(`_CASCADES`); positions are made in SQL (`position_between`, `move_plan`, migration 0009).
"""

import uuid
from datetime import datetime, timezone
from typing import Any

from shared import recurrence as rules
from shared.auth import Caller
from shared.db import QueryFailed, Result, Sql, flight
from shared.errors import InvalidField
from shared.idempotency import IdempotencyKey, Outcome, key_params, remember_sql, run_once
from shared.models import MoveRequest, Priority, TaskCreate, TaskPage, TaskPublic, TaskUpdate, TrashedTaskPublic, TrashPage
from shared.pagination import decode_cursor
from shared.records import (
    Field, checked_outcome, created_once, fetched, page_of, parse_id, refused_by_quota, succeeded, versioned_write, write_values,
)  # fmt: skip
from shared.task_listing import COLUMNS, SortName, TaskFilters, page_query
from shared.users import lock_user

# A key after every live sibling's: new tasks go last (the flight holds the user's lock, so
# the last key read is the last there is).
_LAST_AMONG = "position_between(last_position({owner}, {parent}), NULL)"
_CREATE = Sql(
    f"""
    WITH outcome AS (
        INSERT INTO tasks (id, user_id, title, description, completed, completed_at, priority, due_at, category_id, tags,
                           recurrence, timezone, rule_start, occurrences, occurrences_after,
                           occurrences_complete, remind_at, parent_id, position, created_at, updated_at)
        VALUES (:id::uuid, :user_id, :title, :description, :completed::bool,
                CASE WHEN :completed::bool THEN :now::timestamptz END, :priority::smallint, :due_at::timestamptz,
                :category_id::uuid, :tags::varchar(50)[], :recurrence::varchar, :timezone::varchar,
                CASE WHEN :recurrence::varchar IS NOT NULL THEN :due_at::timestamptz END, :occurrences::timestamptz[],
                :occurrences_after::timestamptz, :occurrences_complete::bool, :remind_at::timestamptz,
                :parent_id::uuid, {_LAST_AMONG.format(owner=":user_id", parent=":parent_id::uuid")},
                :now::timestamptz, :now::timestamptz)
        RETURNING {COLUMNS}
    ){remember_sql(201)}
    SELECT * FROM outcome
    """
)

# PUT, PATCH, complete, trash and restore: one statement, told by flags what to set.
_FIELDS = (
    Field("title", "varchar"),
    Field("description", "varchar"),
    # complete without a body toggles: `:completed` is null then.
    Field("completed", "bool", "coalesce(:completed::bool, NOT t.completed)"),
    Field("priority", "smallint"),
    Field("due_at", "timestamptz"),
    Field("category_id", "uuid"),
    Field("tags", "varchar(50)[]"),
    Field("recurrence", "varchar"),
    Field("timezone", "varchar"),
    Field("remind_at", "timestamptz"),
    Field("deleted_at", "timestamptz"),
    # A restore (`in_trash`) puts the task back under its parent when the parent can take it
    # (live, room, depth), else at the top level; restore_task sends parent_id for that.
    Field("parent_id", "uuid", "CASE WHEN :in_trash::bool THEN parent_on_restore(t.user_id, t.id, t.parent_id, t.trashed_with)"
          " ELSE :parent_id::uuid END"),
)
# When the rule or its zone changes, DTSTART moves to the task's due_at and the
# occurrences are the ones Python expanded from there (null when it could not: a PATCH
# that did not send the rule, the zone and due_at; see _write).
_RULE_CHANGED = "(w.recurrence IS DISTINCT FROM t.recurrence OR w.timezone IS DISTINCT FROM t.timezone)"
_ALSO_SET = f"""
    completed_at = CASE WHEN w.completed = t.completed THEN t.completed_at WHEN w.completed THEN :now::timestamptz END,
    rule_start = CASE WHEN {_RULE_CHANGED} THEN CASE WHEN w.recurrence IS NOT NULL THEN w.due_at END ELSE t.rule_start END,
    occurrences = CASE WHEN {_RULE_CHANGED} THEN :occurrences::timestamptz[] ELSE t.occurrences END,
    occurrences_after = CASE WHEN {_RULE_CHANGED} THEN :occurrences_after::timestamptz ELSE t.occurrences_after END,
    occurrences_complete = CASE WHEN {_RULE_CHANGED} THEN :occurrences_complete::bool ELSE t.occurrences_complete END,
    reminded_at = CASE WHEN w.remind_at IS DISTINCT FROM t.remind_at THEN NULL ELSE t.reminded_at END,
    position = CASE WHEN w.parent_id IS DISTINCT FROM t.parent_id
                      OR (t.deleted_at IS NOT NULL AND w.deleted_at IS NULL AND position_taken(t.user_id, w.parent_id, t.position, t.id))
                    THEN {_LAST_AMONG.format(owner="t.user_id", parent="w.parent_id")} ELSE t.position END,
    trashed_with = CASE WHEN w.deleted_at IS NULL THEN NULL WHEN t.deleted_at IS NULL THEN t.id ELSE t.trashed_with END"""
# The subtree follows its root in the same statement: trashing trashes its live subtasks
# (remembered as trashed with it), restoring brings back those trashed with it, completing
# completes its open ones. Each of them gets a new version and updated_at. The subtree is
# read as it was when the statement began (the flight holds the user's lock: nobody changes
# it meanwhile); depth <= 5 bounds the walks.
_CASCADES = """, trashing AS (
        SELECT d.id FROM done d JOIN target t ON t.id = d.id WHERE t.deleted_at IS NULL AND d.deleted_at IS NOT NULL
    ), completing AS (
        SELECT d.id FROM done d JOIN target t ON t.id = d.id WHERE d.completed AND NOT t.completed AND d.deleted_at IS NULL
    ), restoring AS (
        SELECT d.id, t.trashed_with AS batch FROM done d JOIN target t ON t.id = d.id
        WHERE t.deleted_at IS NOT NULL AND d.deleted_at IS NULL
    ), live_below AS (
        WITH RECURSIVE below (id, level) AS (
            SELECT c.id, 1 FROM tasks c
            WHERE c.user_id = :user_id AND c.deleted_at IS NULL AND c.parent_id IN (SELECT id FROM trashing UNION ALL SELECT id FROM completing)
            UNION ALL
            SELECT c.id, b.level + 1 FROM tasks c JOIN below b ON c.parent_id = b.id
            WHERE c.user_id = :user_id AND c.deleted_at IS NULL AND b.level < 5
        ) SELECT id FROM below
    ), trashed_below AS (
        UPDATE tasks c SET deleted_at = :now::timestamptz, trashed_with = :id::uuid, updated_at = :now::timestamptz,
                           version = c.version + 1
        WHERE c.user_id = :user_id AND c.id IN (SELECT id FROM live_below) AND EXISTS (SELECT FROM trashing)
        RETURNING c.id
    ), completed_below AS (
        UPDATE tasks c SET completed = true, completed_at = :now::timestamptz, updated_at = :now::timestamptz, version = c.version + 1
        WHERE c.user_id = :user_id AND c.id IN (SELECT id FROM live_below) AND NOT c.completed AND EXISTS (SELECT FROM completing)
        RETURNING c.*
    ), trash_batch AS (
        WITH RECURSIVE below (id, level) AS (
            SELECT c.id, 1 FROM tasks c JOIN restoring r ON c.parent_id = r.id
            WHERE c.user_id = :user_id AND c.deleted_at IS NOT NULL AND c.trashed_with = r.batch
            UNION ALL
            SELECT c.id, b.level + 1 FROM tasks c JOIN below b ON c.parent_id = b.id
            WHERE c.user_id = :user_id AND c.deleted_at IS NOT NULL AND c.trashed_with = (SELECT batch FROM restoring) AND b.level < 5
        ) SELECT id FROM below
    ), restored_below AS (
        UPDATE tasks c SET deleted_at = NULL, trashed_with = NULL, updated_at = :now::timestamptz, version = c.version + 1
        WHERE c.user_id = :user_id AND c.id IN (SELECT id FROM trash_batch)
        RETURNING c.id
    )"""
# A recurring task that turns completed gets its successor in the same statement: the
# first stored occurrence strictly after both its due_at and now. Stored occurrences that
# cannot answer (none, or not far enough) stop the statement (TD001, `occurrences_needed`):
# the data layer expands the rule and runs it again. `uq_tasks_successor_of` makes the
# successor once per task, ever.
_SUCCESSOR = f""", turned AS (
        SELECT d.* FROM done d JOIN target t ON t.id = d.id
        WHERE d.completed AND NOT t.completed AND d.recurrence IS NOT NULL
        UNION ALL SELECT c.* FROM completed_below c WHERE c.recurrence IS NOT NULL
    ), next AS (
        SELECT tr.id, (SELECT min(x) FROM unnest(tr.occurrences) x WHERE x > greatest(tr.due_at, :now::timestamptz)) AS due
        FROM turned tr WHERE tr.occurrences IS NOT NULL AND greatest(tr.due_at, :now::timestamptz) >= tr.occurrences_after
    ), need AS (
        SELECT occurrences_needed(tr.id) FROM turned tr
        WHERE NOT EXISTS (SELECT FROM next n WHERE n.id = tr.id AND (n.due IS NOT NULL OR tr.occurrences_complete))
    ), successor AS (
        INSERT INTO tasks (id, user_id, title, description, priority, due_at, category_id, tags, recurrence, timezone,
                           series_root, rule_start, occurrences, occurrences_after, occurrences_complete, successor_of,
                           remind_at, parent_id, position, created_at, updated_at)
        SELECT CASE WHEN tr.id = :id::uuid THEN :successor_id::uuid ELSE gen_random_uuid() END,
               tr.user_id, tr.title, tr.description, tr.priority, n.due, tr.category_id, tr.tags,
               tr.recurrence, tr.timezone, tr.series_id, tr.rule_start,
               ARRAY(SELECT x FROM unnest(tr.occurrences) x WHERE x > n.due ORDER BY x), n.due, tr.occurrences_complete,
               tr.id, tr.remind_at + (n.due - tr.due_at), tr.parent_id,
               -- last among the parent's children; several successors under one parent in their order
               (position_keys_between(last_position(tr.user_id, tr.parent_id), NULL,
                                      (count(*) OVER (PARTITION BY tr.parent_id))::int))
                   [(row_number() OVER (PARTITION BY tr.parent_id ORDER BY tr.position, tr.id))::int],
               :now::timestamptz, :now::timestamptz
        FROM turned tr JOIN next n ON n.id = tr.id WHERE n.due IS NOT NULL
        ON CONFLICT (successor_of) DO NOTHING
        RETURNING id, successor_of
    ), answer AS (
        SELECT o.*, coalesce((SELECT s.id FROM successor s WHERE s.successor_of = o.id),
                             (SELECT s.id FROM tasks s WHERE s.successor_of = o.id)) AS successor_id,
               (SELECT count(*) FROM need) AS expanded_first
        FROM outcome o
    )"""
_WRITE = Sql(
    versioned_write("tasks", _FIELDS, scope="(deleted_at IS NOT NULL) = :in_trash::bool", also_set=_ALSO_SET)
    + _CASCADES
    + _SUCCESSOR
    + remember_sql(200, outcome="answer", success=succeeded())
    + f" SELECT changed, {COLUMNS}, successor_id FROM answer"
)
_SUCCESSOR_OF = "(SELECT s.id FROM tasks s WHERE s.successor_of = tasks.id) AS successor_id"
_SUCCESSOR_ID = Sql("SELECT id FROM tasks WHERE user_id = :user_id AND successor_of = :id::uuid")
# A move: the task under :parent_id right after :after (move_plan, migration 0009, makes its
# key, and respaces a window of siblings when the key would pass POSITION_BOUND).
POSITION_BOUND, RESPACE_SPAN = 24, 8
_MOVE = Sql(
    f"""
    WITH target AS (
        SELECT * FROM tasks WHERE user_id = :user_id AND id = :id::uuid AND deleted_at IS NULL FOR UPDATE
    ), plan AS (
        SELECT p.task_id, p.key FROM target t, move_plan(t.user_id, t.id, :parent_id::uuid, :after::uuid, :bound::int, :span::int) p
    ), placed AS (
        SELECT p.key FROM plan p WHERE p.task_id = :id::uuid
    ), done AS (
        UPDATE tasks SET parent_id = :parent_id::uuid, position = (SELECT key FROM placed), updated_at = :now::timestamptz,
                         version = t.version + 1
        FROM target t
        WHERE tasks.id = t.id AND EXISTS (SELECT FROM placed) AND (:if_match::int IS NULL OR t.version = :if_match::int)
          AND (tasks.parent_id, tasks.position) IS DISTINCT FROM (:parent_id::uuid, (SELECT key FROM placed))
        RETURNING tasks.*
    ), respaced AS (
        UPDATE tasks s SET position = p.key, updated_at = :now::timestamptz, version = s.version + 1
        FROM plan p
        WHERE s.user_id = :user_id AND s.id = p.task_id AND p.task_id <> :id::uuid AND s.position <> p.key
          AND EXISTS (SELECT FROM done)
        RETURNING s.id
    ), outcome AS (
        SELECT true AS changed, * FROM done
        UNION ALL SELECT false, * FROM target WHERE NOT EXISTS (SELECT FROM done)
    )
    SELECT changed, {COLUMNS}, EXISTS (SELECT FROM placed) AS placed FROM outcome
    """
)
_GET = Sql(f"SELECT {COLUMNS}, {_SUCCESSOR_OF} FROM tasks WHERE user_id = :user_id AND id = :id::uuid AND deleted_at IS NULL")
# What the rules' expansion needs, when the stored occurrences could not answer: the task's
# own and its open subtasks' (a completion completes them too).
_RULES = Sql(
    """
    WITH RECURSIVE tree (id, level) AS (
        SELECT id, 0 FROM tasks WHERE user_id = :user_id AND id = :id::uuid
        UNION ALL
        SELECT c.id, t.level + 1 FROM tasks c JOIN tree t ON c.parent_id = t.id
        WHERE c.user_id = :user_id AND c.deleted_at IS NULL AND NOT c.completed AND t.level < 5
    )
    SELECT t.id, t.recurrence, t.timezone, t.rule_start, t.due_at FROM tasks t JOIN tree USING (id)
    WHERE t.user_id = :user_id AND t.recurrence IS NOT NULL
    """
)
_STORE_OCCURRENCES = Sql(
    """
    UPDATE tasks SET occurrences = :occurrences::timestamptz[], occurrences_after = :occurrences_after::timestamptz,
                     occurrences_complete = :occurrences_complete::bool
    WHERE user_id = :user_id AND id = :id::uuid AND recurrence = :recurrence AND timezone = :timezone
      AND rule_start = :rule_start::timestamptz
    """
)
_TRASH_PAGE = {
    after: Sql(
        f"""
        SELECT {COLUMNS}, deleted_at, deleted_at::text AS sort_value FROM tasks
        WHERE user_id = :user_id AND deleted_at IS NOT NULL
        {"AND (deleted_at, id) < (:after_value::timestamptz, :after_id::uuid)" if after else ""}
        ORDER BY deleted_at DESC, id DESC LIMIT :limit::int
        """
    )
    for after in (False, True)
}
# Constraints that are the client's 422, and the field each names.
_REFUSED = {
    "fk_tasks_category_owner": ("category_id", "is not one of your categories"),
    # the subtask rules: the composite foreign key, a CHECK, and the tree triggers (0009)
    "fk_tasks_parent_owner": ("parent_id", "is not one of your tasks"),
    "tasks_parent_missing": ("parent_id", "is not one of your tasks"),
    "tasks_parent_trashed": ("parent_id", "is in the trash"),
    "ck_tasks_not_own_parent": ("parent_id", "would make a cycle: a task cannot be its own subtask"),
    "tasks_parent_cycle": ("parent_id", "would make a cycle: that task is one of this task's subtasks"),
    "tasks_parent_depth": ("parent_id", "would nest subtasks deeper than 5 levels (counting the top task)"),
    "tasks_parent_children": ("parent_id", "already has 200 subtasks"),
    "ck_tasks_recurrence_needs_due_at": ("recurrence", "needs due_at"),
    "ck_tasks_remind_before_due": ("remind_at", "must not be after due_at"),
}
_NEEDS_EXPANDING = "TD001"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _storage(fields: dict[str, Any]) -> dict[str, Any]:
    if fields.get("priority") is not None:
        fields["priority"] = int(Priority[fields["priority"]])
    return fields


def _refused(failed: QueryFailed) -> None:
    """A constraint that the request broke is the client's 422, naming the field: a category
    that is not the caller's (or was deleted meanwhile), a rule without due_at, a reminder
    after due_at (PATCH sends part of a task: the database holds the rest)."""
    refused_by_quota(failed)  # a recurring task's successor counts too
    if failed.constraint in _REFUSED:
        name, message = _REFUSED[failed.constraint]
        raise InvalidField(("body", name), message) from None
    raise failed


def _expanded(recurrence: str | None, zone: str, due_at: datetime | None, now: datetime) -> dict[str, Any]:
    """The stored occurrences of a rule that starts at `due_at`: every one after the later of
    due_at and now (a successor is never due before either), as far as `MAX_STORED` goes."""
    if recurrence is None or due_at is None:
        return {"occurrences": None, "occurrences_after": None, "occurrences_complete": False}
    found = rules.expand(recurrence, zone, due_at, max(due_at, now))
    return {"occurrences": found.times, "occurrences_after": found.after, "occurrences_complete": found.complete}


def _check_rule(data: TaskCreate) -> None:
    """POST and PUT carry the whole task: say at once what a rule or reminder lacks."""
    if data.recurrence is not None and data.due_at is None:
        raise InvalidField(("body", "recurrence"), "needs due_at")
    if data.remind_at is not None and data.due_at is not None and data.remind_at > data.due_at:
        raise InvalidField(("body", "remind_at"), "must not be after due_at")


def create_task(*, caller: Caller, data: TaskCreate, idempotency: IdempotencyKey | None = None) -> Outcome[TaskPublic]:
    _check_rule(data)
    now, values = _now(), _storage(data.model_dump())
    occurrences = _expanded(data.recurrence, data.timezone, data.due_at, now)
    insert = _CREATE(id=uuid.uuid4(), user_id=caller.user_id, now=now, **values, **occurrences, **key_params(idempotency))
    return created_once(caller=caller, insert=insert, idempotency=idempotency, model=TaskPublic, refused=_refused)


def get_task(*, caller: Caller, task_id: str) -> TaskPublic:
    return TaskPublic.of(fetched(_GET(user_id=caller.user_id, id=parse_id(task_id, "task")), caller=caller, what="task"))


def _write(
    caller: Caller,
    task_id: str,
    values: dict[str, Any],
    *,
    if_match: int | None = None,
    in_trash: bool = False,
    idempotency: IdempotencyKey | None = None,
) -> Outcome[dict[str, Any]]:
    """The generic versioned write: returns the task's row as it now is (with its successor)."""
    task, now = parse_id(task_id, "task"), _now()
    known = all(name in values for name in ("recurrence", "timezone", "due_at"))  # PUT; a PATCH may not say
    occurrences = _expanded(values["recurrence"], values["timezone"], values["due_at"], now) if known else _expanded(None, "UTC", None, now)
    query = _WRITE(
        user_id=caller.user_id,
        id=task,
        if_match=if_match,
        now=now,
        in_trash=in_trash,
        successor_id=uuid.uuid4(),
        **occurrences,
        **write_values(_FIELDS, _storage(values)),
        **key_params(idempotency),
    )
    missing = "No such task in the trash." if in_trash else "No such task."

    def read(results: list[Result]) -> dict[str, Any]:
        row = dict(checked_outcome(results[1].first(), if_match=if_match, what="task", missing=missing))
        # A statement of its own, so a successor another writer committed while this one
        # waited on the row is seen too (a statement sees what committed before it began).
        found = results[2].first()
        row["successor_id"] = found["id"] if found else row.get("successor_id")
        return row

    lookup = _SUCCESSOR_ID(user_id=caller.user_id, id=task)
    for _ in range(3):
        try:
            return run_once(
                user_id=caller.user_id,
                idempotency=idempotency,
                queries=[lock_user(caller), query, lookup],
                read=read,
                model=TaskPublic,
                stored_as=dict,
            )
        except QueryFailed as failed:
            if failed.sqlstate != _NEEDS_EXPANDING:
                _refused(failed)
                raise
        # The one case that takes more flights than one: completing a recurring task whose
        # stored occurrences could not answer (its rule was PATCHed in part, or it is being
        # completed past them). Expand the rule from what is stored, keep it, try again.
        _store_occurrences(caller, task, now)
    raise RuntimeError("the occurrences of a recurring task could not be stored")


def _store_occurrences(caller: Caller, task: uuid.UUID, now: datetime) -> None:
    (found_rules,) = flight(_RULES(user_id=caller.user_id, id=task), user_id=caller.user_id)
    stores = []
    for row in found_rules.rows:  # gone or no longer recurring meanwhile: the next try will not need it
        start = row["rule_start"] or row["due_at"]
        found = rules.expand(row["recurrence"], row["timezone"], start, max(row["due_at"], now))
        expanded = {"occurrences": found.times, "occurrences_after": found.after, "occurrences_complete": found.complete}
        stores.append(
            _STORE_OCCURRENCES(
                user_id=caller.user_id, id=row["id"], recurrence=row["recurrence"], timezone=row["timezone"],
                rule_start=row["rule_start"], **expanded,
            )
        )
    if stores:
        flight(*stores, user_id=caller.user_id)


def replace_task(*, caller: Caller, task_id: str, data: TaskCreate, if_match: int | None = None) -> TaskPublic:
    """PUT: every writable field; one not sent goes back to its default."""
    _check_rule(data)
    return TaskPublic.of(_write(caller, task_id, data.model_dump(), if_match=if_match).value)


def update_task(*, caller: Caller, task_id: str, data: TaskUpdate, if_match: int | None = None) -> TaskPublic:
    """PATCH: only the fields sent."""
    return TaskPublic.of(_write(caller, task_id, data.model_dump(exclude_unset=True), if_match=if_match).value)


def complete_task(
    *, caller: Caller, task_id: str, completed: bool | None, if_match: int | None = None, idempotency: IdempotencyKey | None = None
) -> Outcome[TaskPublic]:
    """`completed=None` toggles (once per Idempotency-Key: a retried toggle is replayed)."""
    outcome = _write(caller, task_id, {"completed": completed}, if_match=if_match, idempotency=idempotency)
    return Outcome(TaskPublic.of(outcome.value), replayed=outcome.replayed)


def delete_task(*, caller: Caller, task_id: str, if_match: int | None = None) -> None:
    """Moves the task to the trash; the scheduled cleanup deletes it for good later."""
    _write(caller, task_id, {"deleted_at": _now()}, if_match=if_match)


def restore_task(*, caller: Caller, task_id: str, idempotency: IdempotencyKey | None = None) -> Outcome[TaskPublic]:
    """Back from the trash with what was trashed with it; under its parent when the parent can
    take it, else at the top level (the parent's value comes from `parent_on_restore`)."""
    outcome = _write(caller, task_id, {"deleted_at": None, "parent_id": None}, in_trash=True, idempotency=idempotency)
    return Outcome(TaskPublic.of(outcome.value), replayed=outcome.replayed)


def move_task(*, caller: Caller, task_id: str, data: MoveRequest, if_match: int | None = None) -> TaskPublic:
    """Under `data.parent_id`, right after `data.after` (first when null): one flight."""
    task = parse_id(task_id, "task")
    query = _MOVE(
        user_id=caller.user_id,
        id=task,
        parent_id=data.parent_id,
        after=data.after,
        if_match=if_match,
        now=_now(),
        bound=POSITION_BOUND,
        span=RESPACE_SPAN,
    )
    try:
        _, result, found = flight(lock_user(caller), query, _SUCCESSOR_ID(user_id=caller.user_id, id=task), user_id=caller.user_id)
    except QueryFailed as failed:
        _refused(failed)
        raise
    row = dict(checked_outcome(result.first(), if_match=if_match, what="task"))
    if not row["placed"]:
        raise InvalidField(("body", "after"), "is not a live subtask of that parent (null: first)")
    row["successor_id"] = found.first()["id"] if found.first() else None
    return TaskPublic.of(row)


def list_tasks(
    *, caller: Caller, filters: TaskFilters = TaskFilters(), sort: SortName = "-created_at", limit: int = 50, cursor: str | None = None
) -> TaskPage:
    """Keyset-paged in any of the ten sorts; see shared/task_listing.py."""
    binding = {"list": "tasks", "user": caller.user_id, "sort": sort, "filters": filters.binding()}
    after = decode_cursor(cursor, binding) if cursor is not None else None
    (result,) = flight(page_query(caller.user_id, filters, sort, after, limit), user_id=caller.user_id)
    page, next_cursor = page_of(result.rows, limit, binding, lambda row: [row["sort_value"], row["id"]])
    return TaskPage(items=[TaskPublic.of(row) for row in page], next_cursor=next_cursor)


def list_trash(*, caller: Caller, limit: int = 50, cursor: str | None = None) -> TrashPage:
    """Trashed tasks, most recently trashed first, keyset-paged on (deleted_at, id)."""
    binding = {"list": "trash", "user": caller.user_id, "sort": "-deleted_at"}
    after = decode_cursor(cursor, binding) if cursor is not None else None
    query = _TRASH_PAGE[after is not None](
        user_id=caller.user_id, limit=limit + 1, **({"after_value": after[0], "after_id": after[1]} if after else {})
    )
    (result,) = flight(query, user_id=caller.user_id)
    page, next_cursor = page_of(result.rows, limit, binding, lambda row: [row["sort_value"], row["id"]])
    return TrashPage(items=[TrashedTaskPublic.of(row) for row in page], next_cursor=next_cursor)
