"""The one place errors become HTTP: RFC 9457 problem+json, and its OpenAPI description."""

from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shared import errors

PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_OF: dict[type[errors.DomainError], int] = {
    errors.BadRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.QuotaExceeded: 409,
    errors.ResyncRequired: 410,
    errors.PreconditionFailed: 412,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.InvalidField: 422,
    errors.DatabaseUnavailable: 503,
}


def request_id_of(request: Request) -> str:
    event = request.scope.get("aws.event") or {}
    return (event.get("requestContext") or {}).get("requestId") or ""


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str,
    request_id: str,
    errors_: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The RFC 9457 document itself (also what an MCP tool error carries, shared/http/mcp.py)."""
    body: dict[str, Any] = {
        "type": f"urn:todo-api:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        "request_id": request_id,
    }
    if errors_ is not None:
        body["errors"] = errors_
    return body


def problem(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    errors_: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(status, code, detail, instance=request.url.path, request_id=request_id_of(request), errors_=errors_)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def domain_problem(error: errors.DomainError) -> tuple[int, str, str, list[dict[str, Any]] | None]:
    """A domain error's status, code, detail and (on 422) field errors."""
    errors_ = error.errors if isinstance(error, errors.InvalidField) else None
    return STATUS_OF.get(type(error), 500), error.code, error.detail, errors_


def from_domain_error(request: Request, error: errors.DomainError) -> JSONResponse:
    status, code, detail, errors_ = domain_problem(error)
    headers: dict[str, str] = {}
    if isinstance(error, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, errors.DatabaseUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, errors.PreconditionFailed):
        headers["ETag"] = f'"{error.current_version}"'
    return problem(request, status, code, detail, errors_=errors_, headers=headers)


def _jsonable(loc: tuple[Any, ...]) -> list[str | int]:
    return [part if isinstance(part, (str, int)) else str(part) for part in loc]


def validation_problem(raw_errors: list[dict[str, Any]]) -> tuple[int, str, str, list[dict[str, Any]]]:
    """422 naming each field (`loc`), without echoing the input back."""
    items = [{"loc": _jsonable(tuple(e.get("loc", ()))), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in raw_errors]
    fields = ", ".join(".".join(str(p) for p in item["loc"]) for item in items)
    return 422, "validation_error", f"Invalid input: {fields}.", items


def from_validation_errors(request: Request, raw_errors: list[dict[str, Any]]) -> JSONResponse:
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in raw_errors):
        return problem(request, 400, "bad_request", "This route needs a JSON object as its body.")
    status, code, detail, items = validation_problem(raw_errors)
    return problem(request, status, code, detail, errors_=items)


# ---------------------------------------------------------------------------- OpenAPI


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    request_id: str
    errors: list[ValidationIssue] | None = None


_WHEN = {
    400: "The body is not JSON, the cursor is not one this query made, or a malformed `Idempotency-Key`",
    401: "No identity (the gateway answers `{\"message\":\"Unauthorized\"}` itself for a bad token)",
    403: "`{user_id}` in the path is not the caller",
    404: "No such object for this caller",
    409: "Conflicts with what exists, a request with this `Idempotency-Key` is still in progress, or `quota_exceeded`: one more"
    " would pass a per-user limit",
    410: "The sync cursor is older than the kept history (`resync_required`): start again without a cursor",
    412: "`If-Match` does not match the current version",
    413: "The body is over 64 KiB",
    415: "The body is not `application/json`",
    422: "A field or parameter breaks a rule (or an `Idempotency-Key` reused with another request); `errors` names each",
    500: "Unexpected; logged with `request_id`",
    503: "The database is unreachable; retry after `Retry-After` seconds",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: exactly the statuses it can answer with.

    Every route can answer 422 (an unknown query parameter) and 500.
    """
    return {
        status: {"description": _WHEN[status], "model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
        for status in sorted({*statuses, 422, 500})
    }
