"""Calls the real Lambda handlers with payload 2.0 events, as API Gateway would after its
JWT authorizer let the request through (claims present) or for a route without one."""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared.local.lambda_context import FakeLambdaContext
from shared.local.apigw import build_http_event, match_path, response_body
from shared.openapi import build_openapi
from shared.template import Function, http_routes

_documented: dict[tuple[str, str], set[int]] = {}


def documented_statuses(method: str, route_path: str) -> set[int]:
    """The statuses the OpenAPI document says this route can answer with."""
    if not _documented:
        for path, operations in build_openapi()["paths"].items():
            for verb, operation in operations.items():
                _documented[(verb.upper(), path)] = {int(code) for code in operation["responses"]}
    return _documented[(method, route_path)]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    function: str

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def problem(self) -> dict[str, Any]:
        assert self.headers.get("content-type") == "application/problem+json", self.headers
        return self.json()


class LambdaApi:
    def __init__(self) -> None:
        self.routes = http_routes()

    def route_for(self, method: str, path: str) -> tuple[str, Function]:
        for route, function in self.routes:
            if route.method == method and match_path(route.path, path) is not None:
                return route.path, function
        raise LookupError(f"no route for {method} {path} in template.yaml")

    def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None,
        json: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> Reply:
        method = method.upper()
        route_path, function = self.route_for(method, path)
        headers = dict(headers or {})
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers.setdefault("content-type", "application/json")
        if claims is None and user is not None:
            claims = {"sub": user, "email": f"{user}@example.com", "iss": "https://issuer.test/", "aud": "todo-api", "exp": 4102444800}
        if claims is not None:
            headers.setdefault("authorization", "Bearer header.payload.signature")
        raw_query = query if isinstance(query, str) else urlencode(query or {}, doseq=True)
        event = build_http_event(
            method=method, path=path, route_path=route_path, raw_query=raw_query, headers=headers, body=body, claims=claims
        )
        response = function.load_handler()(event, FakeLambdaContext(function.logical_id))
        # Every answer any test sees must be one the OpenAPI document promises.
        assert response["statusCode"] in documented_statuses(method, route_path), (method, route_path, response)
        return Reply(
            status=response["statusCode"],
            headers={k.lower(): v for k, v in (response.get("headers") or {}).items()},
            body=response_body(response),
            function=function.logical_id,
        )

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Reply:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Reply:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)

    def create_task(self, user: str, **fields: Any) -> dict[str, Any]:
        reply = self.post(f"/api/{user}/tasks", user=user, json={"title": "a task", **fields})
        assert reply.status == 201, reply.body
        return reply.json()

    def create_category(self, user: str, name: str, **fields: Any) -> dict[str, Any]:
        reply = self.post(f"/api/{user}/categories", user=user, json={"name": name, **fields})
        assert reply.status == 201, reply.body
        return reply.json()

    # -- the MCP endpoint (POST /mcp): one JSON-RPC message, as an MCP client sends it ---------

    def mcp(self, user: str | None, method: str, params: dict[str, Any] | None = None, *, version: str = "2025-11-25") -> Reply:
        """`version` is the client's MCP-Protocol-Version: a handshake-era one (the stateless
        legacy path) or `2026-07-28` (the self-contained request, which carries its own `_meta`)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            message["params"] = params
        if version >= "2026":
            meta = {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}
            message["params"] = {**(params or {}), "_meta": meta}
        headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": version}
        if method == "tools/call" and version >= "2026":
            headers |= {"mcp-method": method, "mcp-name": (params or {})["name"]}
        return self.post("/mcp", user=user, json=message, headers=headers)

    def call_tool(self, user: str, name: str, arguments: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """The tool's result (`structuredContent`, `isError`, `content`); a JSON-RPC error fails."""
        reply = self.mcp(user, "tools/call", {"name": name, "arguments": arguments or {}}, **kw)
        assert reply.status == 200, (reply.status, reply.body)
        answer = reply.json()
        assert "result" in answer, answer
        return answer["result"]
