"""Users exist from their first write: the row is made from the token's `sub` (and `email`)."""

from shared.auth import Caller
from shared.db import Query, Sql

# Writes only when the user is new or their email changed.
_UPSERT = Sql(
    """
    INSERT INTO users (id, email, created_at) VALUES (:id, :email, now())
    ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email
    WHERE EXCLUDED.email IS NOT NULL AND users.email IS DISTINCT FROM EXCLUDED.email
    """
)


def ensure_user(caller: Caller) -> Query:
    """The statement that makes sure the caller's row exists: one more in a create's flight."""
    return _UPSERT(id=caller.user_id, email=caller.email)
