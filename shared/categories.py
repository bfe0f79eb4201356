"""Categories: per-user names, unique case-insensitively; deleting one uncategorises its tasks.

Each request is one flight of one statement (shared/db.py); `task_count` is a column of it.
A write takes the caller's user row first (`lock_user`), as every write of tasks does
(docs/decisions/0010): one lock order for every flight.
"""

import uuid
from datetime import datetime, timezone

from shared.auth import Caller
from shared.db import QueryFailed, Sql, flight
from shared.errors import Conflict, NotFound, PreconditionFailed
from shared.idempotency import IdempotencyKey, Outcome, key_params, remember_sql
from shared.models import CategoryCreate, CategoryPage, CategoryPublic, CategoryUpdate
from shared.pagination import decode_cursor
from shared.records import Field, checked_outcome, created_once, fetched, page_of, parse_id, versioned_write, write_values
from shared.users import lock_user

_UNIQUE_NAME = "uq_categories_user_lower_name"
COLUMNS = "id, name, color, created_at, updated_at, version"
# Live tasks only: a trashed task is invisible everywhere but the trash.
TASK_COUNT = "(SELECT count(*) FROM tasks WHERE tasks.user_id = c.user_id AND tasks.category_id = c.id AND tasks.deleted_at IS NULL)"

_CREATE = Sql(
    f"""
    WITH outcome AS (
        INSERT INTO categories (id, user_id, name, color, created_at, updated_at)
        VALUES (:id::uuid, :user_id, :name, :color, :now::timestamptz, :now::timestamptz)
        RETURNING {COLUMNS}, 0 AS task_count
    ){remember_sql(201)}
    SELECT * FROM outcome
    """
)
_GET = Sql(f"SELECT {COLUMNS}, {TASK_COUNT} AS task_count FROM categories c WHERE user_id = :user_id AND id = :id::uuid")
_FIELDS = (Field("name", "varchar"), Field("color", "varchar"))
_UPDATE = Sql(
    versioned_write("categories", _FIELDS) + f" SELECT c.changed, {', '.join('c.' + n for n in COLUMNS.split(', '))},"
    f" {TASK_COUNT} AS task_count FROM outcome c"
)
# Its tasks (trashed ones too) become uncategorised, and their version moves on; the
# foreign key's own ON DELETE SET NULL then finds nothing left to do.
_DELETE = Sql(
    """
    WITH target AS (
        SELECT id, version FROM categories WHERE user_id = :user_id AND id = :id::uuid FOR UPDATE
    ), gone AS (
        DELETE FROM categories c USING target t
        WHERE c.id = t.id AND (:if_match::int IS NULL OR t.version = :if_match::int) RETURNING c.id
    ), uncategorised AS (
        UPDATE tasks SET category_id = NULL, updated_at = :now::timestamptz, version = version + 1
        WHERE user_id = :user_id AND category_id IN (SELECT id FROM gone)
    )
    SELECT t.version, EXISTS (SELECT FROM gone) AS changed FROM target t
    """
)
_PAGE = {
    after: Sql(
        f"""
        SELECT {COLUMNS}, {TASK_COUNT} AS task_count, name_key FROM categories c
        WHERE user_id = :user_id {"AND name_key > :after_name::text" if after else ""}
        ORDER BY name_key LIMIT :limit::int
        """
    )
    for after in (False, True)
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _unique_name(failed: QueryFailed, name: str | None) -> None:
    if failed.constraint == _UNIQUE_NAME:
        raise Conflict(f"You already have a category named {name!r}.") from None
    raise failed


def create_category(
    *, caller: Caller, data: CategoryCreate, idempotency: IdempotencyKey | None = None
) -> Outcome[CategoryPublic]:
    insert = _CREATE(id=uuid.uuid4(), user_id=caller.user_id, now=_now(), **data.model_dump(), **key_params(idempotency))
    return created_once(
        caller=caller, insert=insert, idempotency=idempotency, model=CategoryPublic, refused=lambda failed: _unique_name(failed, data.name)
    )


def get_category(*, caller: Caller, category_id: str) -> CategoryPublic:
    return CategoryPublic.of(fetched(_GET(user_id=caller.user_id, id=parse_id(category_id, "category")), caller=caller, what="category"))


def update_category(*, caller: Caller, category_id: str, data: CategoryUpdate, if_match: int | None = None) -> CategoryPublic:
    values = data.model_dump(exclude_unset=True)
    query = _UPDATE(
        user_id=caller.user_id, id=parse_id(category_id, "category"), if_match=if_match, now=_now(), **write_values(_FIELDS, values)
    )
    try:
        _, result = flight(lock_user(caller), query, user_id=caller.user_id)
    except QueryFailed as failed:
        _unique_name(failed, values.get("name"))
        raise
    return CategoryPublic.of(checked_outcome(result.first(), if_match=if_match, what="category"))


def delete_category(*, caller: Caller, category_id: str, if_match: int | None = None) -> None:
    query = _DELETE(user_id=caller.user_id, id=parse_id(category_id, "category"), if_match=if_match, now=_now())
    _, result = flight(lock_user(caller), query, user_id=caller.user_id)
    row = result.first()
    if row is None:
        raise NotFound("No such category.")
    if not row["changed"]:
        raise PreconditionFailed("The category has changed since that version.", current_version=row["version"])


def list_categories(*, caller: Caller, limit: int = 50, cursor: str | None = None) -> CategoryPage:
    """By name case-insensitively (unique per user, so no tie); keyset-paged."""
    binding = {"list": "categories", "user": caller.user_id, "sort": "name"}
    after = decode_cursor(cursor, binding) if cursor is not None else None
    query = _PAGE[after is not None](user_id=caller.user_id, limit=limit + 1, **({"after_name": after[0]} if after else {}))
    (result,) = flight(query, user_id=caller.user_id)
    # The cursor keeps the database's own lower(name): Python's may differ beyond ASCII.
    page, next_cursor = page_of(result.rows, limit, binding, lambda row: [row["name_key"], row["id"]])
    return CategoryPage(items=[CategoryPublic.of(row) for row in page], next_cursor=next_cursor)
