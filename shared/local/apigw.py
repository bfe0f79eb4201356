"""API Gateway HTTP API (payload 2.0) events, built as AWS builds them.

Used by the local gateway for every request, by the tests, and to write `events/`.
What AWS does and this mirrors: header names lower-cased, repeated query parameters
joined with commas in `queryStringParameters` (the raw string kept), a binary or
non-UTF-8 body base64-encoded, JWT claims as strings, `scopes` null without a scope claim.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

_TEXT_TYPES = re.compile(r"^(text/|application/(json|.*\+json|xml|javascript|x-www-form-urlencoded))", re.I)


def claim_strings(claims: dict[str, Any]) -> dict[str, str]:
    """As the JWT authorizer passes claims: every value a string, arrays as `[a b c]`."""
    out: dict[str, str] = {}
    for name, value in claims.items():
        if isinstance(value, list):
            out[name] = "[" + " ".join(str(v) for v in value) + "]"
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


def match_path(template: str, path: str) -> dict[str, str] | None:
    """`/api/{user_id}/tasks` against a concrete path: the path parameters, or None."""
    names = re.findall(r"{(\w+)}", template)
    pattern = "^" + re.sub(r"{\w+}", "([^/]+)", template) + "$"
    found = re.match(pattern, path)
    return dict(zip(names, found.groups())) if found else None


def build_http_event(
    *,
    method: str,
    path: str,
    route_path: str,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    claims: dict[str, Any] | None = None,
    scopes: list[str] | None = None,
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
) -> dict[str, Any]:
    """One payload 2.0 event. `claims=None` means the route has no authorizer."""
    method = method.upper()
    headers = {name.lower(): value for name, value in (headers or {}).items()}
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route_path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": headers.get("host", "localhost").split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id or base64.b32encode(uuid.uuid4().bytes).decode()[:16],
            "routeKey": f"{method} {route_path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    path_params = match_path(route_path, path)
    if path_params:
        event["pathParameters"] = path_params
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claim_strings(claims), "scopes": scopes}}
    if body:
        if _TEXT_TYPES.match(headers.get("content-type", "")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def response_body(response: dict[str, Any]) -> bytes:
    """The body of a Lambda proxy response, base64 undone."""
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def response_json(response: dict[str, Any]) -> Any:
    return json.loads(response_body(response))
