"""Safe retries: `Idempotency-Key` on creates, complete and restore.

The key is claimed first, by the request's own flight (`INSERT` of the record, before the
change), and filled in with the outcome by the change's own statement (`remember_sql`:
CTEs that store the outcome row, or drop the claim when the outcome is an error), so it
commits or rolls back with the change itself: nothing is ever written twice, and a failed
request leaves no record (its retry runs again).

A second request with the same key collides with the first one's claim on its primary
key. While the first is still running, the second waits on its uncommitted row, up to
`IN_FLIGHT_WAIT_MS` (`lock_timeout` of the flight), then is told 409. Once the first has
committed, the second's claim fails with a unique violation, the rest of its flight is
skipped, and one more flight reads the stored response to replay: the one extra round
trip the contract allows, paid only by a retry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from shared.db import Query, QueryFailed, Result, Sql, flight
from shared.errors import Conflict, InvalidField
from shared.settings import get_settings

IN_FLIGHT_WAIT_MS = 2000
# What a key may be: 1..255 visible ASCII characters (the header's rule, and the MCP tools' argument's).
KEY_PATTERN = "^[!-~]{1,255}$"
_RECORD = "idempotency_keys_pkey"
T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class IdempotencyKey:
    key: str
    fingerprint: str  # of the request: route, target and canonical body

    @classmethod
    def of(cls, key: str, *, route: str, target: str, body: Any) -> IdempotencyKey:
        canonical = json.dumps([route, target, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(key=key, fingerprint=hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True)
class Outcome(Generic[T]):
    value: T
    replayed: bool = False


def remember_sql(status_code: int, *, outcome: str = "outcome", success: str = "true") -> str:
    """CTEs (`, remembered AS (...), unclaimed AS (...)`) that fill in the claimed record with
    the outcome row when it is a success, and drop the claim otherwise. With no key sent
    they match no row. Parameters: `:user_id`, `:idempotency_key`.
    """
    mine = "user_id = :user_id AND key = :idempotency_key::text"
    return f""", remembered AS (
            UPDATE idempotency_keys SET status_code = {status_code},
                response_body = (SELECT to_jsonb(o)::text FROM {outcome} o WHERE {success})
            WHERE {mine} AND EXISTS (SELECT FROM {outcome} o WHERE {success})
        ), unclaimed AS (
            DELETE FROM idempotency_keys WHERE {mine} AND NOT EXISTS (SELECT FROM {outcome} o WHERE {success})
        )"""


def key_params(idempotency: IdempotencyKey | None) -> dict[str, Any]:
    return {"idempotency_key": None if idempotency is None else idempotency.key}


# An expired record is as good as none (the cleanup deletes it for good later).
_FORGET_EXPIRED = Sql("DELETE FROM idempotency_keys WHERE user_id = :user_id AND key = :key AND expires_at <= now()")
_CLAIM = Sql(
    """
    INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, response_body, expires_at)
    VALUES (:user_id, :key, :fingerprint, 0, '', now() + :ttl::interval)
    """
)
_STORED = Sql(
    "SELECT fingerprint, response_body FROM idempotency_keys WHERE user_id = :user_id AND key = :key AND expires_at > now()"
)


def run_once(
    *,
    user_id: str,
    idempotency: IdempotencyKey | None,
    queries: list[Query],
    read: Callable[[list[Result]], T],
    model: type[T],
    stored_as: Callable[[dict[str, Any]], T] | None = None,
) -> Outcome[T]:
    """Runs the request's flight once per key; a retry gets the stored result back.

    `queries` must store the key themselves (`remember_sql`); `read` makes the answer from
    their results; `stored_as` makes it from the stored row (default: `model` validates it).
    """
    if idempotency is None:
        return Outcome(read(flight(*queries, user_id=user_id)))
    ttl = timedelta(hours=get_settings().idempotency_ttl_hours)
    claim = [
        _FORGET_EXPIRED(user_id=user_id, key=idempotency.key),
        _CLAIM(user_id=user_id, key=idempotency.key, fingerprint=idempotency.fingerprint, ttl=ttl),
    ]
    for _ in range(2):  # a second pass only if the record expired between the two flights
        try:
            results = flight(*claim, *queries, user_id=user_id, lock_timeout_ms=IN_FLIGHT_WAIT_MS)
            return Outcome(read(results[len(claim) :]))
        except QueryFailed as failed:
            if failed.sqlstate == "55P03":  # lock_not_available: the first is still running
                raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.") from None
            if failed.constraint != _RECORD or failed.index != 1:
                raise
        # The key was used and committed: one more flight reads what it answered.
        stored = flight(_STORED(user_id=user_id, key=idempotency.key), user_id=user_id)[0].first()
        if stored is None:
            continue
        if stored["fingerprint"] != idempotency.fingerprint:
            raise InvalidField(("header", "Idempotency-Key"), "was already used with a different request", "idempotency_key_reused")
        row = json.loads(stored["response_body"])
        return Outcome((stored_as or model.model_validate)(row), replayed=True)
    raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.")
