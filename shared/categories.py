"""Categories: per-user names, unique case-insensitively; deleting one uncategorises its tasks."""

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import exc, func, tuple_, update
from sqlmodel import Session, col, select

from shared.auth import Caller
from shared.db import constraint_of, transaction
from shared.errors import Conflict, NotFound, PreconditionFailed
from shared.idempotency import IdempotencyKey, Outcome, run_once
from shared.models import Category, CategoryCreate, CategoryPage, CategoryPublic, CategoryUpdate, Task
from shared.pagination import decode_cursor, encode_cursor
from shared.users import ensure_user

_UNIQUE_NAME = "uq_categories_user_lower_name"


def _parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such category.") from None


def _load(session: Session, caller: Caller, category_id: str, *, lock: bool = False) -> Category:
    statement = select(Category).where(Category.user_id == caller.user_id, Category.id == _parse_id(category_id))
    category = session.exec(statement.with_for_update() if lock else statement).first()
    if category is None:
        raise NotFound("No such category.")
    return category


def _task_count_of(caller: Caller, category_id: Any):
    return (
        select(func.count())
        .select_from(Task)
        .where(Task.user_id == caller.user_id, Task.category_id == category_id, col(Task.deleted_at).is_(None))
        .scalar_subquery()
    )


def _public(session: Session, caller: Caller, category: Category) -> CategoryPublic:
    count = session.exec(select(_task_count_of(caller, category.id))).one()
    return CategoryPublic.of(category, count)


def _flush_unique(session: Session, name: str) -> None:
    try:
        session.flush()
    except exc.IntegrityError as error:
        if constraint_of(error) == _UNIQUE_NAME:
            raise Conflict(f"You already have a category named {name!r}.") from None
        raise


def create_category(
    *, caller: Caller, data: CategoryCreate, idempotency: IdempotencyKey | None = None
) -> Outcome[CategoryPublic]:
    now = datetime.now(timezone.utc)
    with transaction(caller.user_id) as session:
        ensure_user(session, caller)

        def create() -> CategoryPublic:
            category = Category(user_id=caller.user_id, **data.model_dump(), created_at=now, updated_at=now)
            session.add(category)
            _flush_unique(session, category.name)
            return CategoryPublic.of(category, 0)

        return run_once(session, caller.user_id, idempotency, 201, CategoryPublic, create)


def get_category(*, caller: Caller, category_id: str) -> CategoryPublic:
    with transaction(caller.user_id) as session:
        return _public(session, caller, _load(session, caller, category_id))


def update_category(*, caller: Caller, category_id: str, data: CategoryUpdate, if_match: int | None = None) -> CategoryPublic:
    with transaction(caller.user_id) as session:
        category = _load(session, caller, category_id, lock=True)
        if if_match is not None and category.version != if_match:
            raise PreconditionFailed("The category has changed since that version.", current_version=category.version)
        changed = {k: v for k, v in data.model_dump(exclude_unset=True).items() if getattr(category, k) != v}
        if changed:
            for name, value in changed.items():
                setattr(category, name, value)
            category.updated_at = datetime.now(timezone.utc)
            category.version += 1
            _flush_unique(session, category.name)
        return _public(session, caller, category)


def delete_category(*, caller: Caller, category_id: str, if_match: int | None = None) -> None:
    """Its tasks (trashed ones too) become uncategorised, and their version moves on."""
    now = datetime.now(timezone.utc)
    with transaction(caller.user_id) as session:
        category = _load(session, caller, category_id, lock=True)
        if if_match is not None and category.version != if_match:
            raise PreconditionFailed("The category has changed since that version.", current_version=category.version)
        session.execute(
            update(Task)
            .where(Task.user_id == caller.user_id, Task.category_id == category.id)
            .values(category_id=None, updated_at=now, version=Task.version + 1)
        )
        session.delete(category)


def list_categories(*, caller: Caller, limit: int = 50, cursor: str | None = None) -> CategoryPage:
    """By name case-insensitively, then id; keyset-paged."""
    binding = {"list": "categories", "user": caller.user_id, "sort": "name"}
    lower_name = func.lower(Category.name)
    statement = select(Category, _task_count_of(caller, Category.id), lower_name).where(Category.user_id == caller.user_id)
    if cursor is not None:
        last_name, last_id = decode_cursor(cursor, binding)
        statement = statement.where(tuple_(lower_name, Category.id) > (last_name, uuid.UUID(last_id)))
    statement = statement.order_by(lower_name, Category.id).limit(limit + 1)
    with transaction(caller.user_id) as session:
        rows = session.exec(statement).all()
    page, more = rows[:limit], len(rows) > limit
    # The cursor keeps the database's own lower(name): Python's may differ beyond ASCII.
    next_cursor = encode_cursor([page[-1][2], page[-1][0].id], binding) if more else None
    return CategoryPage(items=[CategoryPublic.of(category, count) for category, count, _ in page], next_cursor=next_cursor)
