"""One OpenAPI document assembled from every function's own app.

Each function's FastAPI app knows its one route; the template knows which functions exist.
Their documents are merged here, errors described as problem+json, and the bearer scheme
(the gateway's JWT authorizer) stated once.
"""

import copy
from typing import Any

from shared.http.problems import PROBLEM_MEDIA_TYPE
from shared.template import functions

TITLE = "Task API"
VERSION = "1.0.0"


# What API Gateway's JWT authorizer answers itself, before any function runs.
_GATEWAY_REFUSAL = {
    "schema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    "example": {"message": "Unauthorized"},
}


# What the gateway answers itself when a route's throttle (template parameters ThrottleRate,
# ThrottleBurst) is exceeded: every route, before any function runs. `todo-api serve` does
# not throttle.
_GATEWAY_THROTTLED = {
    "description": "Throttled by the API gateway (ThrottleRate / ThrottleBurst); retry later. Not sent by `todo-api serve`",
    "content": {"application/json": {**_GATEWAY_REFUSAL, "example": {"message": "Too Many Requests"}}},
}


def _problems_as_problem_json(operation: dict[str, Any], *, public: bool) -> None:
    """FastAPI files every response model under application/json; errors are problem+json.

    A protected route's 401 also comes from the gateway, as `{"message":"Unauthorized"}`."""
    for status, response in operation.get("responses", {}).items():
        content = response.get("content", {})
        schema = (content.get("application/json") or {}).get("schema") or {}
        # The MCP transport's own errors are JSON-RPC, as that protocol says: left as they are.
        if int(status) >= 400 and schema.get("$ref", "").endswith("/Problem"):
            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        if status == "401" and not public:
            content["application/json"] = _GATEWAY_REFUSAL


def build_openapi() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    security_schemes: dict[str, Any] = {}
    for function in functions().values():
        if not function.routes:
            continue
        document = copy.deepcopy(function.load_module().app.openapi())  # FastAPI caches it: never edit in place
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                _problems_as_problem_json(operation, public=not operation.get("security"))
                operation["responses"] = dict(sorted({**operation["responses"], "429": copy.deepcopy(_GATEWAY_THROTTLED)}.items()))
                paths.setdefault(path, {})[method] = operation
        components = document.get("components", {})
        schemas.update(components.get("schemas", {}))
        security_schemes.update(components.get("securitySchemes", {}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Every route except /health needs `Authorization: Bearer <JWT>`. "
            "`{user_id}` is the caller's `sub` or `me`. Errors are RFC 9457 problem+json.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": security_schemes},
    }
