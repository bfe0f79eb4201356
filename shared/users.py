"""Users exist from their first write: the row is made from the token's `sub` (and `email`)."""

from shared.auth import Caller
from shared.db import Query, Sql

# Writes only when the user is new or their email changed. The user row's lock (the change
# log's per-user lock, migration 0008, and the tree's and the quotas', 0009) is taken by
# `lock_user` before this, first in every writing flight (docs/decisions/0010).
_UPSERT = Sql(
    """
    WITH fresh AS (
        INSERT INTO users (id, email, created_at) VALUES (:id, :email, now()) ON CONFLICT (id) DO NOTHING RETURNING id
    )
    UPDATE users SET email = :email
    WHERE id = :id AND :email::varchar IS NOT NULL AND email IS DISTINCT FROM :email::varchar AND NOT EXISTS (SELECT FROM fresh)
    """
)


# The user's write lock: every flight that writes the caller's tasks or categories takes it
# first, before any other row. The tree and quota triggers lock the same row (migration
# 0009); taken first, no two flights wait on each other in opposite orders, and the
# writing statement's snapshot, taken after it, sees every write of the user that came
# before (the subtree a cascade walks, the last sibling's key).
_LOCK = Sql("SELECT FROM users WHERE id = :id FOR NO KEY UPDATE")


def lock_user(caller: Caller) -> Query:
    """The statement that takes the caller's write lock, first in a flight that writes."""
    return _LOCK(id=caller.user_id)


def ensure_user(caller: Caller) -> Query:
    """The statement that makes sure the caller's row exists: one more in a create's flight."""
    return _UPSERT(id=caller.user_id, email=caller.email)
