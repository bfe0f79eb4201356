"""Tasks: every rule of the contract about them, each request one flight (shared/db.py).

Every query filters by owner (and row-level security filters again); an id that is not the
caller's is `NotFound`, exactly as one that does not exist. A trashed task (`deleted_at`
set) is invisible to all but the trash. A category that is not the caller's is refused by
the composite foreign key `fk_tasks_category_owner` (owner, category), in the same statement.
"""

import uuid
from datetime import datetime, timezone
from typing import Any

from shared.auth import Caller
from shared.db import QueryFailed, Result, Sql, flight
from shared.errors import InvalidField, NotFound
from shared.idempotency import IdempotencyKey, Outcome, key_params, remember_sql, run_once
from shared.models import Priority, TaskCreate, TaskPage, TaskPublic, TaskUpdate, TrashedTaskPublic, TrashPage
from shared.pagination import decode_cursor
from shared.records import Field, checked_outcome, page_of, parse_id, succeeded, versioned_write, write_values
from shared.task_listing import COLUMNS, SortName, TaskFilters, page_query
from shared.users import ensure_user

_CREATE = Sql(
    f"""
    WITH outcome AS (
        INSERT INTO tasks (id, user_id, title, description, completed, completed_at, priority, due_at, category_id, tags,
                           created_at, updated_at)
        VALUES (:id::uuid, :user_id, :title, :description, :completed::bool,
                CASE WHEN :completed::bool THEN :now::timestamptz END, :priority::smallint, :due_at::timestamptz,
                :category_id::uuid, :tags::varchar(50)[], :now::timestamptz, :now::timestamptz)
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
    Field("deleted_at", "timestamptz"),
)
_WRITE = Sql(
    versioned_write(
        "tasks",
        _FIELDS,
        scope="(deleted_at IS NOT NULL) = :in_trash::bool",
        also_set="completed_at = CASE WHEN w.completed = t.completed THEN t.completed_at WHEN w.completed THEN :now::timestamptz END",
    )
    + remember_sql(200, success=succeeded())
    + f" SELECT changed, {COLUMNS} FROM outcome"
)
_GET = Sql(f"SELECT {COLUMNS} FROM tasks WHERE user_id = :user_id AND id = :id::uuid AND deleted_at IS NULL")
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
_CATEGORY_FK = "fk_tasks_category_owner"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _storage(fields: dict[str, Any]) -> dict[str, Any]:
    if fields.get("priority") is not None:
        fields["priority"] = int(Priority[fields["priority"]])
    return fields


def _category_refused(failed: QueryFailed) -> None:
    """A category that is not the caller's (or was deleted meanwhile) is the client's 422."""
    if failed.constraint == _CATEGORY_FK:
        raise InvalidField(("body", "category_id"), "is not one of your categories") from None
    raise failed


def create_task(*, caller: Caller, data: TaskCreate, idempotency: IdempotencyKey | None = None) -> Outcome[TaskPublic]:
    values = _storage(data.model_dump())
    insert = _CREATE(id=uuid.uuid4(), user_id=caller.user_id, now=_now(), **values, **key_params(idempotency))
    try:
        return run_once(
            user_id=caller.user_id,
            idempotency=idempotency,
            queries=[ensure_user(caller), insert],
            read=lambda results: TaskPublic.of(results[1].rows[0]),
            model=TaskPublic,
            stored_as=TaskPublic.of,
        )
    except QueryFailed as failed:
        _category_refused(failed)
        raise


def get_task(*, caller: Caller, task_id: str) -> TaskPublic:
    (result,) = flight(_GET(user_id=caller.user_id, id=parse_id(task_id, "task")), user_id=caller.user_id)
    if result.first() is None:
        raise NotFound("No such task.")
    return TaskPublic.of(result.rows[0])


def _write(
    caller: Caller,
    task_id: str,
    values: dict[str, Any],
    *,
    if_match: int | None = None,
    in_trash: bool = False,
    idempotency: IdempotencyKey | None = None,
) -> Outcome[dict[str, Any]]:
    """The generic versioned write: returns the task's row as it now is."""
    query = _WRITE(
        user_id=caller.user_id,
        id=parse_id(task_id, "task"),
        if_match=if_match,
        now=_now(),
        in_trash=in_trash,
        **write_values(_FIELDS, _storage(values)),
        **key_params(idempotency),
    )
    missing = "No such task in the trash." if in_trash else "No such task."

    def read(results: list[Result]) -> dict[str, Any]:
        return dict(checked_outcome(results[0].first(), if_match=if_match, what="task", missing=missing))

    try:
        return run_once(user_id=caller.user_id, idempotency=idempotency, queries=[query], read=read, model=TaskPublic, stored_as=dict)
    except QueryFailed as failed:
        _category_refused(failed)
        raise


def replace_task(*, caller: Caller, task_id: str, data: TaskCreate, if_match: int | None = None) -> TaskPublic:
    """PUT: every writable field; one not sent goes back to its default."""
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
    outcome = _write(caller, task_id, {"deleted_at": None}, in_trash=True, idempotency=idempotency)
    return Outcome(TaskPublic.of(outcome.value), replayed=outcome.replayed)


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
