"""The synthetic traffic of priming (shared/snapstart.py): one request per route, and a sample
through each route's request and response models. None of it reaches the database: it runs
under `db.connections_refused()`, so a request that gets as far as connecting answers 503.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.routing import APIRoute
from pydantic import TypeAdapter

PRIMING_SUB = "snapstart-priming"
_SOME_ID = "00000000-0000-4000-8000-000000000000"
_PATH_PARAMETER = re.compile(r"\{([^}]+)\}")


def synthetic_event(route: APIRoute) -> dict[str, Any]:
    """A payload 2.0 event for `route` as the HTTP API sends it, from a priming caller
    (`me`), with the smallest valid body (`sample`) when the route takes one."""
    method = sorted(route.methods)[0]
    values = {name: ("me" if name == "user_id" else _SOME_ID) for name in _PATH_PARAMETER.findall(route.path)}
    path = _PATH_PARAMETER.sub(lambda m: values[m.group(1)], route.path)
    headers = {"accept": "application/json", "host": "priming.invalid", "user-agent": "snapstart-priming"}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route.path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "priming",
            "domainName": "priming.invalid",
            "domainPrefix": "priming",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "snapstart-priming"},
            "requestId": "snapstart-priming",
            "routeKey": f"{method} {route.path}",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
            "authorizer": {"jwt": {"claims": {"sub": PRIMING_SUB}, "scopes": None}},
        },
        "isBase64Encoded": False,
    }
    if values:
        event["pathParameters"] = values
    body = documented_example(route)
    if body is None and route.body_field is not None:
        body = sample(route.body_field.field_info.annotation)
    if body is not None:
        headers["content-type"] = "application/json"
        event["body"] = json.dumps(body)
    return event


def documented_example(route: APIRoute) -> Any:
    """The JSON example of a body the route documents by hand (`openapi_extra`, as /mcp's
    JSON-RPC envelope), or None."""
    content = ((route.openapi_extra or {}).get("requestBody") or {}).get("content") or {}
    return (content.get("application/json") or {}).get("example")


def exercise_models(route: APIRoute) -> bool:
    """A minimal valid sample validated by the route's body model and validated and serialized
    by its response model, as FastAPI does on a request. Whether both samples validated."""
    valid = True
    for field, respond in ((route.body_field, False), (route.response_field, True)):
        if field is None:
            continue
        value, errors = field.validate(sample(field.field_info.annotation), loc=("body",))
        valid = valid and not errors
        if respond and not errors:
            field.serialize_json(value)
    return valid


def sample(annotation: Any) -> Any:
    """The smallest value its JSON schema allows: required fields only, each the simplest of its type."""
    schema = TypeAdapter(annotation).json_schema()
    return _sample(schema, schema.get("$defs", {}))


_FORMATS = {"uuid": _SOME_ID, "date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "email": "a@example.com"}


def _sample(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return _sample(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("examples", "enum"):
        if schema.get(key):
            return schema[key][0]
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [option for option in schema.get(key, []) if option.get("type") != "null"]
        if options:
            return _sample(options[0], defs)
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _sample(properties.get(name, {}), defs) for name in schema.get("required", [])}
    if kind == "array":
        return [_sample(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return _FORMATS.get(schema.get("format", ""), "x" * max(schema.get("minLength", 1), 1))
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return None
