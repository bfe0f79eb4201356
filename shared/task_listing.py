"""How `GET /tasks` turns filters, a sort and a cursor into one index-ordered query.

Each sort key is an expression that an index of migration 0002 has in exactly this order
(owner first, ties on id in the same direction), and paging compares the row value
`(sort expression, id)` with the cursor's: no OFFSET, so page 10,000 costs what page 1 does.
Tasks without `due_at` sort last in both directions: the key is coalesce(due_at, +infinity)
ascending and coalesce(due_at, -infinity) descending.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, literal, literal_column, tuple_
from sqlmodel import col, select
from sqlmodel.sql.expression import Select, SelectOfScalar

from shared.models import Priority, Task

SortName = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "due_at", "-due_at",
    "priority", "-priority", "title", "-title",
]  # fmt: skip
Status = Literal["all", "pending", "completed"]

_SEARCH_TEXT = literal_column("tasks.search_text")  # generated: title || ' ' || description


@dataclass(frozen=True)
class TaskFilters:
    status: Status = "all"
    priority: Literal["low", "medium", "high"] | None = None
    category_id: uuid.UUID | None = None
    tag: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    q: str | None = None

    def binding(self) -> dict[str, str | None]:
        """What a cursor is bound to: the filters as given, each as text."""
        return {name: None if value is None else str(value) for name, value in asdict(self).items()}


def sort_key(sort: SortName) -> tuple[ColumnElement[Any], bool]:
    """The ordering expression of a sort, and whether it is descending."""
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name == "due_at":
        bound = "'-infinity'" if descending else "'infinity'"
        return func.coalesce(Task.due_at, literal_column(f"{bound}::timestamptz")), descending
    if name == "title":
        return func.lower(Task.title), descending
    return getattr(Task, name), descending


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(statement: SelectOfScalar, filters: TaskFilters) -> SelectOfScalar:
    if filters.status != "all":
        statement = statement.where(Task.completed == (filters.status == "completed"))
    if filters.priority is not None:
        statement = statement.where(Task.priority == int(Priority[filters.priority]))
    if filters.category_id is not None:
        statement = statement.where(Task.category_id == filters.category_id)
    if filters.tag is not None:
        statement = statement.where(col(Task.tags).contains([filters.tag]))
    if filters.due_before is not None:
        statement = statement.where(col(Task.due_at) < filters.due_before)
    if filters.due_after is not None:
        statement = statement.where(col(Task.due_at) >= filters.due_after)
    for word in (filters.q or "").split():
        # ILIKE itself (SQLAlchemy's ilike() renders lower() LIKE lower(), which the
        # trigram index cannot serve); `%` and `_` in the words match themselves.
        statement = statement.where(_SEARCH_TEXT.op("ILIKE")(f"%{_escape_like(word)}%"))
    return statement


def page_query(user_id: str, filters: TaskFilters, sort: SortName, after: list[Any] | None, limit: int) -> Select:
    """Live tasks of one owner, filtered, in `sort` order, after the cursor position.

    Rows are (task, sort value as the database computed it): the next cursor holds that
    value, so paging never depends on Python agreeing with Postgres (lower(), infinity).
    """
    key, descending = sort_key(sort)
    statement = _filtered(select(Task, key.label("sort_value")).where(Task.user_id == user_id, col(Task.deleted_at).is_(None)), filters)
    if after is not None:
        position = tuple_(key, Task.id)
        # Typed as the sort expression (a cursor may hold 'infinity', a valid timestamptz).
        last = tuple_(literal(after[0], key.type), literal(uuid.UUID(after[1]), Task.id.type))
        statement = statement.where(position < last if descending else position > last)
    order = (key.desc(), col(Task.id).desc()) if descending else (key.asc(), col(Task.id).asc())
    return statement.order_by(*order).limit(limit + 1)


def decode_position(sort: SortName, position: list[Any]) -> list[Any]:
    """A cursor's position typed for comparison with the sort expression."""
    name = sort.lstrip("-")
    value = position[0]
    if name in ("created_at", "updated_at") or (name == "due_at" and value not in ("infinity", "-infinity")):
        value = datetime.fromisoformat(value)
    return [value, position[1]]

