"""The one path of every owned record: find by owner + id, check the version, apply, bump.

Tasks and categories (and whatever comes next) share it: the SQL of a versioned write, the
reading of its outcome (404, 412, changed or not), the id in a path, and keyset pages.
A write is one statement (docs/decisions/0007), so the checks live in its SQL:

    target   the row, owner + id + scope, locked (FOR UPDATE) so concurrent writers queue
    wanted   the row as the request would leave it (a field not sent keeps its value)
    done     UPDATE ... only if the version matches (If-Match) and something differs
    outcome  `done`'s row (changed) or else `target`'s (unchanged): none means not found

A write that changes nothing leaves `version` and `updated_at` as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.auth import Caller
from shared.db import Query, QueryFailed, flight
from shared.errors import NotFound, PreconditionFailed, QuotaExceeded
from shared.idempotency import IdempotencyKey, Outcome, run_once
from shared.pagination import encode_cursor
from shared.users import ensure_user, lock_user


@dataclass(frozen=True)
class Field:
    column: str
    cast: str
    value: str | None = None  # SQL of the new value (default: the parameter of the same name)


def versioned_write(table: str, fields: Sequence[Field], *, scope: str = "true", also_set: str = "") -> str:
    """`WITH target, wanted, done, outcome`: a statement's start, to be finished by the caller.

    Parameters: `:user_id`, `:id`, `:if_match`, `:now`, and for each field `:set_<column>`
    (whether the request sets it) and `:<column>`. `also_set` may use `w.` (wanted) and
    `t.` (target), e.g. a timestamp that follows a flag.
    """
    wanted = ", ".join(
        f"CASE WHEN :set_{f.column}::bool THEN {f.value or f':{f.column}::{f.cast}'} ELSE t.{f.column} END AS {f.column}"
        for f in fields
    )
    assignments = ", ".join(f"{f.column} = w.{f.column}" for f in fields)
    new = ", ".join(f"w.{f.column}" for f in fields)
    old = ", ".join(f"t.{f.column}" for f in fields)
    return f"""
        WITH target AS (
            SELECT * FROM {table} WHERE user_id = :user_id AND id = :id::uuid AND {scope} FOR UPDATE
        ), wanted AS (
            SELECT t.id, {wanted} FROM target t
        ), done AS (
            UPDATE {table} SET {assignments}, {also_set + ", " if also_set else ""}
                updated_at = :now::timestamptz, version = t.version + 1
            FROM wanted w, target t
            WHERE {table}.id = t.id AND (:if_match::int IS NULL OR t.version = :if_match::int)
              AND ({new}) IS DISTINCT FROM ({old})
            RETURNING {table}.*
        ), outcome AS (
            SELECT true AS changed, * FROM done
            UNION ALL SELECT false, * FROM target WHERE NOT EXISTS (SELECT FROM done)
        )"""


def write_values(fields: Sequence[Field], values: Mapping[str, Any]) -> dict[str, Any]:
    """The `:set_<column>` / `:<column>` parameters of `versioned_write` for what was sent."""
    params: dict[str, Any] = {}
    for f in fields:
        params[f"set_{f.column}"] = f.column in values
        params[f.column] = values.get(f.column)
    return params


def parse_id(value: str, what: str) -> uuid.UUID:
    """A malformed id in a path is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"No such {what}.") from None


def checked_outcome(row: Mapping[str, Any] | None, *, if_match: int | None, what: str, missing: str | None = None) -> Mapping[str, Any]:
    """404 when there was no such row, 412 when If-Match was stale, else the row."""
    if row is None:
        raise NotFound(missing or f"No such {what}.")
    if not row["changed"] and if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(f"The {what} has changed since that version.", current_version=row["version"])
    return row


def succeeded(if_match_param: str = ":if_match::int") -> str:
    """SQL: this outcome row is a success (to be remembered for an Idempotency-Key)."""
    return f"(o.changed OR {if_match_param} IS NULL OR o.version = {if_match_param})"


def page_of(
    rows: list[dict[str, Any]], limit: int, binding: dict[str, Any], position: Callable[[dict[str, Any]], list[Any]]
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of `limit` rows (the query asked for one more) and the cursor after it, if any."""
    page, more = rows[:limit], len(rows) > limit
    return page, encode_cursor(position(page[-1]), binding) if more else None


# The insert triggers' refusals (migration 0009): the limit each names.
_QUOTAS = {"quota_tasks": ("tasks", "MAX_TASKS_PER_USER"), "quota_categories": ("categories", "MAX_CATEGORIES_PER_USER")}


def refused_by_quota(failed: QueryFailed) -> None:
    """A per-user limit the insert would pass is 409 `quota_exceeded` (the one place)."""
    if failed.constraint in _QUOTAS:
        what, setting = _QUOTAS[failed.constraint]
        raise QuotaExceeded(f"You hold as many {what} as one user may ({setting}); delete some (the trash counts) first.") from None


def created_once(
    *, caller: Caller, insert: Query, idempotency: IdempotencyKey | None, model: Any, refused: Callable[[QueryFailed], None]
) -> Outcome[Any]:
    """A create: the caller's user row and the insert (whose statement remembers the key) in
    one flight, once per Idempotency-Key; `refused` turns a broken constraint into the 4xx."""
    try:
        return run_once(
            user_id=caller.user_id,
            idempotency=idempotency,
            # The user's write lock first (a no-op for a new user, whose row the upsert makes).
            queries=[lock_user(caller), ensure_user(caller), insert],
            read=lambda results: model.of(results[2].rows[0]),
            model=model,
            stored_as=model.of,
        )
    except QueryFailed as failed:
        refused_by_quota(failed)
        refused(failed)
        raise


def fetched(query: Query, *, caller: Caller, what: str) -> Mapping[str, Any]:
    """The one row `query` finds for the caller, or 404."""
    (result,) = flight(query, user_id=caller.user_id)
    row = result.first()
    if row is None:
        raise NotFound(f"No such {what}.")
    return row
