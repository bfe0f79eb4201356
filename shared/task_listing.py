"""How `GET /tasks` turns filters, a sort and a cursor into one index-ordered statement.

Each sort key is a plain column that an index holds in exactly this order (owner first,
ties on id in the same direction), and paging compares the row value `(sort key, id)` with
the cursor's: no OFFSET, so page 10,000 costs what page 1 does. Tasks without `due_at` sort
last in both directions: the keys are the generated columns `due_key_asc` =
coalesce(due_at, +infinity) and `due_key_desc` = coalesce(due_at, -infinity).

The rule under row-level security (docs/decisions/0007): a WHERE may hold only plain
columns compared with leakproof operators (`=`, `<`, `>`, row comparisons of such columns),
including `id IN (SELECT task_id FROM task_tags WHERE ...)` for `tag` (the side table of
plain (owner, tag, task) rows that triggers on `tasks` keep, migration 0007), or
`id IN (SELECT caller_task_ids_matching(...))` for ILIKE, which needs a non-leakproof
operator. Anything else runs after the policy's qual: a filter, not an index condition. tests/shared/test_list_plans.py holds every sort and filter to it.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field

from shared.db import Query, Sql
from shared.models import InputDateTime, PageQuery, Priority, SearchWords, Tag, TaskPublic

SortName = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "due_at", "-due_at",
    "priority", "-priority", "title", "-title", "position", "-position",
]  # fmt: skip
Status = Literal["all", "pending", "completed"]

# What a task shows is what its statements select.
COLUMNS = ", ".join(TaskPublic.model_fields)
# sort name -> (ascending key column, descending key column, its type)
_KEYS = {
    "created_at": ("created_at", "created_at", "timestamptz"),
    "updated_at": ("updated_at", "updated_at", "timestamptz"),
    "due_at": ("due_key_asc", "due_key_desc", "timestamptz"),
    "priority": ("priority", "priority", "smallint"),
    "title": ("title_key", "title_key", "text"),
    # COLLATE "C" is the column's: the cursor's text parameter takes it (byte-wise, as the keys mean).
    "position": ("position", "position", "text"),
}
# filter -> its condition (parameters named after the filter)
_CONDITIONS = {
    "status": "completed = :completed::bool",
    "priority": "priority = :priority::smallint",
    "category_id": "category_id = :category_id::uuid",
    "parent_id": "parent_id = :parent_id::uuid",
    "top_level": "parent_id IS NULL",
    "due_before": "due_at < :due_before::timestamptz",
    "due_after": "due_at >= :due_after::timestamptz",
    "tag": "id IN (SELECT task_id FROM task_tags WHERE user_id = :user_id AND tag = :tag::text)",
    "q": "id IN (SELECT caller_task_ids_matching(:rarest::text, :patterns::text[]))",
}


@dataclass(frozen=True)
class TaskFilters:
    status: Status = "all"
    priority: Literal["low", "medium", "high"] | None = None
    category_id: uuid.UUID | None = None
    parent_id: uuid.UUID | Literal["none"] | None = None  # "none": top-level tasks only
    tag: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    q: str | None = None

    def binding(self) -> dict[str, str | None]:
        """What a cursor is bound to: the filters as given, each as text."""
        return {name: None if value is None else str(value) for name, value in asdict(self).items()}

    def params(self) -> dict[str, Any]:
        """The filters in use, as the statement's parameters."""
        found: dict[str, Any] = {}
        if self.status != "all":
            found["status"] = {"completed": self.status == "completed"}
        if self.priority is not None:
            found["priority"] = {"priority": int(Priority[self.priority])}
        if self.parent_id == "none":
            found["top_level"] = {}
        for name in ("category_id", "parent_id", "due_before", "due_after", "tag"):
            if getattr(self, name) not in (None, "none"):
                found[name] = {name: getattr(self, name)}
        patterns = [f"%{_escape_like(word)}%" for word in (self.q or "").split()]
        if patterns:
            found["q"] = {"rarest": max(patterns, key=len), "patterns": patterns}
        return found


class TaskListQuery(PageQuery):
    """`GET /tasks`' query parameters and the `list_tasks` tool's arguments: one set of rules."""

    status: Status = "all"
    priority: Literal["low", "medium", "high"] | None = None
    category_id: uuid.UUID | None = None
    parent_id: uuid.UUID | Literal["none"] | None = Field(
        default=None, description="That task's subtasks, or `none`: top-level tasks only"
    )
    tag: Tag | None = Field(default=None, description="Tasks carrying this tag")
    due_before: InputDateTime | None = Field(default=None, description="due_at before this (exclusive), RFC 3339")
    due_after: InputDateTime | None = Field(default=None, description="due_at at or after this, RFC 3339")
    q: SearchWords | None = Field(default=None, description="Every word in title or description, any case")
    sort: SortName = Field(
        default="-created_at",
        description="`-` for descending; ties on id; no due_at sorts last; `position`: the manual order among siblings",
    )

    def filters(self) -> TaskFilters:
        return TaskFilters(**{f.name: getattr(self, f.name) for f in fields(TaskFilters)})


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@lru_cache(maxsize=512)
def page_sql(sort: SortName, filters: tuple[str, ...], after: bool) -> Sql:
    """The statement of one shape of list request (compiled once per process and shape).

    Rows are the task's columns and `sort_value`, the sort key as the database renders it:
    the next cursor holds that text, so paging never depends on Python agreeing with
    Postgres (lower(), infinity, timestamp precision).
    """
    descending = sort.startswith("-")
    ascending_key, descending_key, key_type = _KEYS[sort.lstrip("-")]
    key = descending_key if descending else ascending_key
    conditions = ["user_id = :user_id", "deleted_at IS NULL", *(_CONDITIONS[name] for name in filters)]
    if after:
        conditions.append(f"({key}, id) {'<' if descending else '>'} (:after_value::{key_type}, :after_id::uuid)")
    direction = "DESC" if descending else "ASC"
    return Sql(
        f"SELECT {COLUMNS}, {key}::text AS sort_value FROM tasks WHERE {' AND '.join(conditions)}"
        f" ORDER BY {key} {direction}, id {direction} LIMIT :limit::int"
    )


def page_query(user_id: str, filters: TaskFilters, sort: SortName, after: list[Any] | None, limit: int) -> Query:
    """Live tasks of one owner, filtered, in `sort` order, after the cursor position."""
    used = filters.params()
    params: dict[str, Any] = {"user_id": user_id, "limit": limit + 1}
    for values in used.values():
        params.update(values)
    if after is not None:
        params.update(after_value=after[0], after_id=after[1])
    return page_sql(sort, tuple(used), after is not None)(**params)
