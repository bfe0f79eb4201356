"""Users exist from their first write: the row is made from the token's `sub` (and `email`)."""

from sqlalchemy import text
from sqlmodel import Session

from shared.auth import Caller

_UPSERT = text(
    """
    INSERT INTO users (id, email, created_at) VALUES (:id, :email, now())
    ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email
    WHERE EXCLUDED.email IS NOT NULL AND users.email IS DISTINCT FROM EXCLUDED.email
    """
)


def ensure_user(session: Session, caller: Caller) -> None:
    """One round trip; writes only when the user is new or their email changed."""
    session.execute(_UPSERT, {"id": caller.user_id, "email": caller.email})
