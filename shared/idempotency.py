"""Safe retries: `Idempotency-Key` on creates, complete and restore.

The record is claimed *first* in the request's own transaction and filled in with the
response *last*, so it commits or rolls back with the change itself: nothing is ever
written twice, and a failed request leaves no record (its retry runs again).

A retry that arrives while the first request is still running waits on the first one's
uncommitted claim (Postgres blocks the second insert of the same key) and then replays
its response; if the first is still running after `IN_FLIGHT_WAIT_MS`, the retry is told
409 instead of being held longer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import exc, text
from sqlmodel import Session

from shared.db import sqlstate
from shared.errors import Conflict, InvalidField
from shared.settings import get_settings

IN_FLIGHT_WAIT_MS = 2000
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


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str


_CLAIM = text(
    """
    INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, response_body, expires_at)
    VALUES (:user_id, :key, :fingerprint, 0, '', now() + :ttl)
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING 1
    """
)


def claim(session: Session, user_id: str, idempotency: IdempotencyKey | None) -> StoredResponse | None:
    """None: go ahead (the key is now ours). A StoredResponse: replay it, write nothing."""
    if idempotency is None:
        return None
    params = {"user_id": user_id, "key": idempotency.key}
    # An expired record is as good as none (the cleanup deletes it for good later).
    session.execute(text("DELETE FROM idempotency_keys WHERE user_id = :user_id AND key = :key AND expires_at <= now()"), params)
    session.execute(text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": f"{IN_FLIGHT_WAIT_MS}ms"})
    try:
        claimed = session.execute(
            _CLAIM,
            {**params, "fingerprint": idempotency.fingerprint, "ttl": timedelta(hours=get_settings().idempotency_ttl_hours)},
        ).first()
    except exc.DBAPIError as error:
        if sqlstate(error) == "55P03":  # lock_not_available: the first is still running
            raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.") from None
        raise
    session.execute(text("SELECT set_config('lock_timeout', '0', true)"))
    if claimed is not None:
        return None
    fingerprint, status_code, body = session.execute(
        text("SELECT fingerprint, status_code, response_body FROM idempotency_keys WHERE user_id = :user_id AND key = :key"),
        params,
    ).one()
    if fingerprint != idempotency.fingerprint:
        raise InvalidField(("header", "Idempotency-Key"), "was already used with a different request", "idempotency_key_reused")
    return StoredResponse(status_code=status_code, body=body)


def remember(session: Session, user_id: str, idempotency: IdempotencyKey | None, status_code: int, body: str) -> None:
    """Fills in the claimed record with the response, in the same transaction as the change."""
    if idempotency is None:
        return
    session.execute(
        text(
            "UPDATE idempotency_keys SET status_code = :status_code, response_body = :body "
            "WHERE user_id = :user_id AND key = :key"
        ),
        {"user_id": user_id, "key": idempotency.key, "status_code": status_code, "body": body},
    )


def run_once(
    session: Session, user_id: str, idempotency: IdempotencyKey | None, status_code: int, model: type[T], work: Callable[[], T]
) -> Outcome[T]:
    """`work()` once per key: later the same request gets the stored result back."""
    stored = claim(session, user_id, idempotency)
    if stored is not None:
        return Outcome(model.model_validate_json(stored.body), replayed=True)
    result = work()
    remember(session, user_id, idempotency, status_code, result.model_dump_json())
    return Outcome(result)
