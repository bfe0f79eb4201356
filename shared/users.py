"""Users exist from their first write: the row is made from the token's `sub` (and `email`)."""

from shared.auth import Caller
from shared.db import Query, Sql

# Writes only when the user is new or their email changed, and locks the row only then:
# the user row's lock is the change log's per-user lock (migration 0008), taken at the end
# of a write after its other row locks; a create that took it first would wait in a cycle
# with a category PATCH waiting for it (the task's foreign key shares the category's row).
_UPSERT = Sql(
    """
    WITH fresh AS (
        INSERT INTO users (id, email, created_at) VALUES (:id, :email, now()) ON CONFLICT (id) DO NOTHING RETURNING id
    )
    UPDATE users SET email = :email
    WHERE id = :id AND :email::varchar IS NOT NULL AND email IS DISTINCT FROM :email::varchar AND NOT EXISTS (SELECT FROM fresh)
    """
)


def ensure_user(caller: Caller) -> Query:
    """The statement that makes sure the caller's row exists: one more in a create's flight."""
    return _UPSERT(id=caller.user_id, email=caller.email)
