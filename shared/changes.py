"""The sync feed: `GET /changes`, read from the caller's change log (migration 0008).

Two phases, both keyset-paged, each page one flight of one statement:

- **full sync** (no cursor): every category (by name) then every live task (newest first,
  the default listing's index), as `upsert`s. The first page reads `users.last_change`
  in the same snapshot as its rows: the log position the full sync began at. The cursor
  carries it, and after the last page the feed goes on from there. Whatever changed while
  the pages were read has a log entry after that position, so it comes again later.
- **changes** (a cursor at log position n): the entries after n, oldest first. Each names
  an object; the object is read as it is now, in the same statement: live is `upsert`
  with its data as GET shows it, gone (trashed, purged, deleted) is `delete`. An object
  named several times in a page appears once, where it was named last. A page sees a
  prefix of the user's log (numbers are taken under the user row's lock, so a change is
  visible only after every earlier one), so nothing is skipped: the next cursor is the
  last number read.

A cursor behind the kept history (entry n+1 pruned by the cleanup, which prunes a prefix of
the log) is `ResyncRequired` (410); a tampered one or one of another user is 400 (the
signed cursors of shared/pagination.py, bound to the caller).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import categories
from shared.auth import Caller
from shared.db import Sql, flight
from shared.errors import BadRequest, ResyncRequired
from shared.models import CategoryPublic, ChangeItem, ChangePage, TaskPublic
from shared.pagination import decode_cursor, encode_cursor
from shared.task_listing import COLUMNS as TASK_COLUMNS

_SNAPSHOT, _CHANGES = "s", "c"  # a cursor's phase
_CATEGORIES, _TASKS = 0, 1  # the parts of a full sync, in order

_LAST_CHANGE = "coalesce((SELECT last_change FROM users WHERE id = :user_id), 0)"


def object_data(entry: str) -> str:
    """SQL: the object an entry (alias `entry`, columns user_id, kind, object_id) names, as
    GET shows it (jsonb), or null when it is gone. The feed and the publisher both read it."""
    task = f"SELECT {TASK_COLUMNS} FROM tasks WHERE tasks.user_id = {entry}.user_id AND tasks.id = {entry}.object_id AND tasks.deleted_at IS NULL"
    category = (
        f"SELECT {categories.COLUMNS}, {categories.TASK_COUNT} AS task_count FROM categories c"
        f" WHERE c.user_id = {entry}.user_id AND c.id = {entry}.object_id"
    )
    return (
        f"CASE {entry}.kind WHEN 'task' THEN (SELECT to_jsonb(x) FROM ({task}) x)"
        f" ELSE (SELECT to_jsonb(x) FROM ({category}) x) END"
    )


def public(kind: str, data: dict[str, Any] | None) -> TaskPublic | CategoryPublic | None:
    """The object of `object_data` as the API shows it."""
    if data is None:
        return None
    return TaskPublic.of(data) if kind == "task" else CategoryPublic.of(data)


# One page of the full sync: categories after :after_name (only while in that part), then
# live tasks after (:after_created, :after_id) in the default listing's order.
_SNAPSHOT_PAGE = Sql(
    f"""
    WITH cats AS (
        SELECT c.id, c.name_key AS sort_value, c.updated_at AS at, row_number() OVER (ORDER BY c.name_key) AS rank,
               (SELECT to_jsonb(x) FROM (SELECT {", ".join("c." + n for n in categories.COLUMNS.split(", "))},
                                                {categories.TASK_COUNT} AS task_count) x) AS data
        FROM categories c
        WHERE c.user_id = :user_id AND :part::int = 0 AND c.name_key > coalesce(:after_name::text, '')
        ORDER BY c.name_key LIMIT :n::int
    ), live AS (
        SELECT t.id, t.created_at::text AS sort_value, t.updated_at AS at,
               row_number() OVER (ORDER BY t.created_at DESC, t.id DESC) AS rank,
               (SELECT to_jsonb(x) FROM (SELECT {", ".join("t." + n for n in TASK_COLUMNS.split(", "))}) x) AS data
        FROM tasks t
        WHERE t.user_id = :user_id AND t.deleted_at IS NULL
          AND (t.created_at, t.id) < (coalesce(:after_created::timestamptz, 'infinity'),
                                      coalesce(:after_id::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
        ORDER BY t.created_at DESC, t.id DESC LIMIT :n::int
    ), page AS (
        SELECT 0 AS part, * FROM cats
        UNION ALL
        SELECT 1, * FROM live
    )
    SELECT {_LAST_CHANGE} AS last_change, p.* FROM (SELECT 1) one LEFT JOIN LATERAL (
        SELECT * FROM page ORDER BY part, rank LIMIT :n::int
    ) p ON true
    ORDER BY p.part, p.rank
    """
)
# The entries after :after, with the objects they name as they are now; `kept` is false
# when entry :after + 1 was pruned although it existed (the cursor is behind the history).
_CHANGES_PAGE = Sql(
    f"""
    WITH head AS (
        SELECT {_LAST_CHANGE} AS last_change
    ), kept AS (
        SELECT h.last_change, :after::bigint >= h.last_change
               OR EXISTS (SELECT FROM change_log WHERE user_id = :user_id AND seq = :after::bigint + 1) AS kept
        FROM head h
    ), page AS (
        SELECT * FROM change_log WHERE user_id = :user_id AND seq > :after::bigint ORDER BY seq LIMIT :n::int
    )
    SELECT k.last_change, k.kept, e.seq, e.kind, e.object_id AS id, e.at, {object_data("e")} AS data
    FROM kept k LEFT JOIN page e ON k.kept
    ORDER BY e.seq
    """
)


def list_changes(*, caller: Caller, limit: int, cursor: str | None = None) -> ChangePage:
    binding = {"list": "changes", "user": caller.user_id}
    position = _position(decode_cursor(cursor, binding)) if cursor is not None else [_SNAPSHOT, None, _CATEGORIES, None, None]
    if position[0] == _SNAPSHOT:
        return _snapshot_page(caller, binding, position, limit)
    return _changes_page(caller, binding, position[1], limit)


def _position(raw: list[Any]) -> list[Any]:
    """A signed cursor's position, checked for shape (the signature says we made it)."""
    if raw and raw[0] == _CHANGES and len(raw) == 2 and isinstance(raw[1], int):
        return raw
    if raw and raw[0] == _SNAPSHOT and len(raw) == 5 and isinstance(raw[1], int) and raw[2] in (_CATEGORIES, _TASKS):
        return raw
    raise BadRequest("The cursor is malformed.")


def _snapshot_page(caller: Caller, binding: dict[str, Any], position: list[Any], limit: int) -> ChangePage:
    _, began, part, after_value, after_id = position
    query = _SNAPSHOT_PAGE(
        user_id=caller.user_id,
        part=part,
        after_name=after_value if part == _CATEGORIES else None,
        after_created=after_value if part == _TASKS else None,
        after_id=after_id if part == _TASKS else None,
        n=limit + 1,
    )
    (result,) = flight(query, user_id=caller.user_id)
    rows = [row for row in result.rows if row["id"] is not None]
    began = result.rows[0]["last_change"] if began is None else began
    page, more = rows[:limit], len(rows) > limit
    items = [
        ChangeItem(kind="task" if row["part"] == _TASKS else "category", op="upsert", id=row["id"],
                   data=public("task" if row["part"] == _TASKS else "category", row["data"]), at=row["at"])
        for row in page
    ]  # fmt: skip
    if more:
        last = page[-1]
        next_position = [_SNAPSHOT, began, last["part"], last["sort_value"], str(last["id"])]
        return ChangePage(items=items, next_cursor=encode_cursor(next_position, binding), has_more=True)
    # The full sync is done: the changes made since it began follow.
    ready = result.rows[0]["last_change"] > began
    return ChangePage(items=items, next_cursor=encode_cursor([_CHANGES, began], binding), has_more=ready)


def _changes_page(caller: Caller, binding: dict[str, Any], after: int, limit: int) -> ChangePage:
    (result,) = flight(_CHANGES_PAGE(user_id=caller.user_id, after=after, n=limit + 1), user_id=caller.user_id)
    if not result.rows[0]["kept"]:
        raise ResyncRequired("This cursor is older than the kept history; start again with a full sync (no cursor).")
    rows = [row for row in result.rows if row["seq"] is not None]
    page, more = rows[:limit], len(rows) > limit
    latest: dict[tuple[str, Any], dict[str, Any]] = {}
    for row in page:  # an object named twice appears once, where it was named last
        latest.pop((row["kind"], row["id"]), None)
        latest[(row["kind"], row["id"])] = row
    items = [_item(row) for row in latest.values()]
    last_seen = page[-1]["seq"] if page else after
    return ChangePage(items=items, next_cursor=encode_cursor([_CHANGES, last_seen], binding), has_more=more)


def _item(row: dict[str, Any]) -> ChangeItem:
    data = public(row["kind"], row["data"])
    at: datetime = row["at"]
    return ChangeItem(kind=row["kind"], op="upsert" if data is not None else "delete", id=row["id"], data=data, at=at)
