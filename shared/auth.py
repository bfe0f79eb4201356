"""Who is calling: the identity the gateway's JWT authorizer proved, nothing else.

The token was verified before the function ran (API Gateway in AWS, the local gateway in
development); a function only reads the claims that came with the event. See
docs/decisions/0006.
"""

from dataclasses import dataclass
from typing import Any

from shared.errors import Forbidden, Unauthorized

MAX_SUB_LENGTH = 255


@dataclass(frozen=True)
class Caller:
    user_id: str
    email: str | None = None


def caller_from_event(event: dict[str, Any] | None) -> Caller:
    """`requestContext.authorizer.jwt.claims` of a payload 2.0 event (values are strings)."""
    claims = (((event or {}).get("requestContext") or {}).get("authorizer") or {}).get("jwt", {}).get("claims") or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_LENGTH or "\x00" in sub:
        raise Unauthorized("This route needs a valid bearer token.")
    email = claims.get("email")
    return Caller(user_id=sub, email=email if isinstance(email, str) and 0 < len(email) <= 320 else None)


def authorize_path_user(caller: Caller, path_user_id: str) -> None:
    """`/api/{user_id}/...` names the caller (or `me`); any other value is refused unread."""
    if path_user_id not in ("me", caller.user_id):
        raise Forbidden("The path names another user.")
