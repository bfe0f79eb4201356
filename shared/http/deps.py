"""Route parameters every function shares, as `Annotated` aliases.

The dependencies are `async def` although none of them waits on anything: FastAPI runs a
plain `def` dependency in a worker thread, a thread hop per dependency and request.
"""

import re
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Header, Path, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import Caller, caller_from_event
from shared.errors import BadRequest, InvalidField
from shared.idempotency import KEY_PATTERN, IdempotencyKey, Outcome
from shared.models import TaskPublic

# Documents the bearer scheme; the token itself was checked by the gateway's authorizer.
_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT", description="A JWT from the configured issuer")


async def current_caller(request: Request, _token: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Caller:
    """The caller `ContractRoute` found before any parameter was read (401/403 first, on
    user-scoped paths), or, on any other route, read from the event now (401 if none)."""
    caller = getattr(request.state, "caller", None)
    return caller if caller is not None else caller_from_event(request.scope.get("aws.event"))


_ETAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')


_IF_MATCH_SCHEMA = {"pattern": r'^\s*(\*|(W/)?"[0-9]{1,9}")\s*$'}


async def if_match(
    # `str` with a default, not `str | None`: a header is absent or a string, never null.
    if_match: Annotated[
        str, Header(description='`"<version>"` as the ETag gave it, or `*`', json_schema_extra=_IF_MATCH_SCHEMA)
    ] = None,  # type: ignore[assignment]
) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG.match(if_match.strip())
    if found is None:
        raise InvalidField(("header", "If-Match"), 'must be an ETag: "<version>"')
    return int(found.group(1))


_VISIBLE_ASCII = re.compile(KEY_PATTERN)


async def idempotency_key(
    request: Request,
    idempotency_key: Annotated[
        str,
        Header(
            description="1..255 visible ASCII characters; a retry with the same key and body is replayed",
            json_schema_extra={"pattern": KEY_PATTERN},
        ),
    ] = None,  # type: ignore[assignment]
) -> IdempotencyKey | None:
    if idempotency_key is None:
        return None
    if not _VISIBLE_ASCII.match(idempotency_key):
        raise BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters.")
    route = request.scope["route"].path_format
    target = {name: value for name, value in request.path_params.items() if name != "user_id"}
    return IdempotencyKey.of(idempotency_key, route=f"{request.method} {route}", target=target, body=getattr(request.state, "json_body", None))


def mark_replayed(response: Response, outcome: Outcome) -> None:
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"


CallerDep = Annotated[Caller, Depends(current_caller)]
IdempotencyDep = Annotated[IdempotencyKey | None, Depends(idempotency_key)]
IfMatch = Annotated[int | None, Depends(if_match)]
UserId = Annotated[str, Path(description="The caller's `sub`, or `me`")]
TaskId = Annotated[str, Path(description="A task id (uuid)", json_schema_extra={"format": "uuid"})]
CategoryId = Annotated[str, Path(description="A category id (uuid)", json_schema_extra={"format": "uuid"})]


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


def set_task_headers(response: Response, task: TaskPublic, caller: Caller) -> None:
    """A task's ETag, and `Link: <...>; rel="next"` to its successor when it has one."""
    set_etag(response, task.version)
    if task.successor_id is not None:
        response.headers["Link"] = f'</api/{quote(caller.user_id, safe="")}/tasks/{task.successor_id}>; rel="next"'


def api_url(request: Request) -> str:
    """The API's base URL as the caller reached it: the gateway's own domain name from the
    event (https, unless the gateway said otherwise: the local one serves http)."""
    event = request.scope.get("aws.event") or {}
    domain = (event.get("requestContext") or {}).get("domainName") or request.url.netloc
    scheme = ((event.get("headers") or {}).get("x-forwarded-proto") or "https").split(",")[0].strip()
    return f"{scheme}://{domain}"
