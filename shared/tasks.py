"""Tasks: every rule of the contract about them, each function one transaction.

Every query filters by owner; an id that is not the caller's is `NotFound`, exactly as one
that does not exist. A trashed task (`deleted_at` set) is invisible to all but the trash.
"""

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import exc, tuple_
from sqlmodel import Session, col, select

from shared.auth import Caller
from shared.db import constraint_of, transaction
from shared.errors import InvalidField, NotFound, PreconditionFailed
from shared.idempotency import IdempotencyKey, Outcome, run_once
from shared.models import Category, Priority, Task, TaskCreate, TaskPage, TaskPublic, TaskUpdate, TrashedTaskPublic, TrashPage
from shared.pagination import decode_cursor, encode_cursor
from shared.task_listing import SortName, TaskFilters, decode_position, page_query
from shared.users import ensure_user


def parse_id(value: str) -> uuid.UUID:
    """A malformed id in a path is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such task.") from None


def _load(session: Session, caller: Caller, task_id: str, *, trashed: bool = False, lock: bool = False) -> Task:
    statement = select(Task).where(Task.user_id == caller.user_id, Task.id == parse_id(task_id))
    statement = statement.where(col(Task.deleted_at).is_not(None) if trashed else col(Task.deleted_at).is_(None))
    if lock:
        statement = statement.with_for_update()
    task = session.exec(statement).first()
    if task is None:
        raise NotFound("No such task in the trash." if trashed else "No such task.")
    return task


def _check_version(task: Task, if_match: int | None) -> None:
    if if_match is not None and task.version != if_match:
        raise PreconditionFailed("The task has changed since that version.", current_version=task.version)


def _check_category(session: Session, caller: Caller, category_id: uuid.UUID | None) -> None:
    if category_id is None:
        return
    found = session.exec(select(Category.id).where(Category.user_id == caller.user_id, Category.id == category_id)).first()
    if found is None:
        raise InvalidField(("body", "category_id"), "is not one of your categories")


def _storage_values(fields: dict[str, Any]) -> dict[str, Any]:
    if "priority" in fields:
        fields["priority"] = int(Priority[fields["priority"]])
    return fields


def _apply(task: Task, fields: dict[str, Any], now: datetime) -> bool:
    """Sets what differs; a write that changes nothing leaves version and updated_at alone."""
    changed = {name: value for name, value in fields.items() if getattr(task, name) != value}
    if not changed:
        return False
    for name, value in changed.items():
        setattr(task, name, value)
    if "completed" in changed:
        task.completed_at = now if task.completed else None
    task.updated_at = now
    task.version += 1
    return True


def _flush(session: Session) -> None:
    """Writes now, so a category deleted meanwhile is a 422 and not a 500 at commit."""
    try:
        session.flush()
    except exc.IntegrityError as error:
        if constraint_of(error) == "fk_tasks_category_owner":
            raise InvalidField(("body", "category_id"), "is not one of your categories") from None
        raise


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_task(*, caller: Caller, data: TaskCreate, idempotency: IdempotencyKey | None = None) -> Outcome[TaskPublic]:
    now = _now()
    with transaction(caller.user_id) as session:
        ensure_user(session, caller)

        def create() -> TaskPublic:
            _check_category(session, caller, data.category_id)
            task = Task(user_id=caller.user_id, **_storage_values(data.model_dump()), created_at=now, updated_at=now)
            task.completed_at = now if task.completed else None
            session.add(task)
            _flush(session)
            return TaskPublic.of(task)

        return run_once(session, caller.user_id, idempotency, 201, TaskPublic, create)


def get_task(*, caller: Caller, task_id: str) -> TaskPublic:
    with transaction(caller.user_id) as session:
        return TaskPublic.of(_load(session, caller, task_id))


def replace_task(*, caller: Caller, task_id: str, data: TaskCreate, if_match: int | None = None) -> TaskPublic:
    """PUT: every writable field; one not sent goes back to its default."""
    return _write(caller, task_id, data.model_dump(), if_match)


def update_task(*, caller: Caller, task_id: str, data: TaskUpdate, if_match: int | None = None) -> TaskPublic:
    """PATCH: only the fields sent."""
    return _write(caller, task_id, data.model_dump(exclude_unset=True), if_match)


def complete_task(
    *, caller: Caller, task_id: str, completed: bool | None, if_match: int | None = None, idempotency: IdempotencyKey | None = None
) -> Outcome[TaskPublic]:
    """`completed=None` toggles (once per Idempotency-Key: a retried toggle is replayed)."""
    now = _now()
    with transaction(caller.user_id) as session:

        def complete() -> TaskPublic:
            task = _load(session, caller, task_id, lock=True)
            _check_version(task, if_match)
            _apply(task, {"completed": (not task.completed) if completed is None else completed}, now)
            return TaskPublic.of(task)

        return run_once(session, caller.user_id, idempotency, 200, TaskPublic, complete)


def _write(caller: Caller, task_id: str, fields: dict[str, Any], if_match: int | None) -> TaskPublic:
    now = _now()
    with transaction(caller.user_id) as session:
        task = _load(session, caller, task_id, lock=True)
        _check_version(task, if_match)
        fields = _storage_values(fields)
        if fields.get("category_id") not in (None, task.category_id):
            _check_category(session, caller, fields["category_id"])
        if _apply(task, fields, now):
            _flush(session)
        return TaskPublic.of(task)


def delete_task(*, caller: Caller, task_id: str, if_match: int | None = None) -> None:
    """Moves the task to the trash; the scheduled cleanup deletes it for good later."""
    now = _now()
    with transaction(caller.user_id) as session:
        task = _load(session, caller, task_id, lock=True)
        _check_version(task, if_match)
        task.deleted_at = now
        task.updated_at = now
        task.version += 1


def restore_task(*, caller: Caller, task_id: str, idempotency: IdempotencyKey | None = None) -> Outcome[TaskPublic]:
    now = _now()
    with transaction(caller.user_id) as session:

        def restore() -> TaskPublic:
            task = _load(session, caller, task_id, trashed=True, lock=True)
            task.deleted_at = None
            task.updated_at = now
            task.version += 1
            return TaskPublic.of(task)

        return run_once(session, caller.user_id, idempotency, 200, TaskPublic, restore)


def list_tasks(
    *, caller: Caller, filters: TaskFilters = TaskFilters(), sort: SortName = "-created_at", limit: int = 50, cursor: str | None = None
) -> TaskPage:
    """Keyset-paged in any of the ten sorts; see shared/task_listing.py."""
    binding = {"list": "tasks", "user": caller.user_id, "sort": sort, "filters": filters.binding()}
    after = decode_position(sort, decode_cursor(cursor, binding)) if cursor is not None else None
    with transaction(caller.user_id) as session:
        rows = session.exec(page_query(caller.user_id, filters, sort, after, limit)).all()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor([page[-1][1], page[-1][0].id], binding) if more else None
    return TaskPage(items=[TaskPublic.of(task) for task, _ in page], next_cursor=next_cursor)


def list_trash(*, caller: Caller, limit: int = 50, cursor: str | None = None) -> TrashPage:
    """Trashed tasks, most recently trashed first, keyset-paged on (deleted_at, id)."""
    binding = {"list": "trash", "user": caller.user_id, "sort": "-deleted_at"}
    statement = select(Task).where(Task.user_id == caller.user_id, col(Task.deleted_at).is_not(None))
    if cursor is not None:
        deleted_at, last_id = decode_cursor(cursor, binding)
        statement = statement.where(tuple_(Task.deleted_at, Task.id) < (datetime.fromisoformat(deleted_at), uuid.UUID(last_id)))
    statement = statement.order_by(col(Task.deleted_at).desc(), col(Task.id).desc()).limit(limit + 1)
    with transaction(caller.user_id) as session:
        rows = session.exec(statement).all()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor([page[-1].deleted_at, page[-1].id], binding) if more else None
    return TrashPage(items=[TrashedTaskPublic.of(task) for task in page], next_cursor=next_cursor)

