"""`POST /mcp`: shared/tools.py as a Model Context Protocol server (docs/decisions/0011-mcp.md).

The official SDK's low-level `Server` (each tool's JSON Schemas are the pydantic models'
own; nothing is derived from signatures a second time) over Streamable HTTP, stateless and
with JSON responses: every HTTP request gets a fresh session manager that lives exactly as
long as that request (Lambda holds nothing between invocations, and the SDK's manager can
run only once). Both protocol eras are served: 2026-07-28's self-contained requests and,
for clients that still start with `initialize`, the earlier handshake without a session.

A tool's failure that the REST API answers with a problem is an `isError` result whose
text is that same problem+json document (`code`, `detail`, `errors`), its `status` the one
REST would send (an unexpected one too: `internal_error`, logged with the request id).
Only the protocol's own faults (unknown tool, malformed JSON-RPC) are JSON-RPC errors.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shared.auth import caller_from_event
from shared.errors import DomainError
from shared.http.body import MAX_BODY_BYTES
from shared.http.problems import domain_problem, problem_body, validation_problem
from shared.observability import logger
from shared.tools import TOOLS, Tool

NAME = "todo-api"
REPLAYED_META = "todo-api/idempotent-replayed"
# The gateway routes only its own host to the function and every call carries a verified
# token: the SDK's localhost-only Host check (DNS rebinding) has nothing to protect here and
# would refuse the API Gateway's own domain (docs/run/deploy.md of the SDK).
_BEHIND_THE_GATEWAY = TransportSecuritySettings(enable_dns_rebinding_protection=False)
# Where a rule broke, as a tool's caller sees it: its arguments, not a body, query or header.
_ARGUMENT_OF = {("header", "Idempotency-Key"): ["arguments", "idempotency_key"]}


def _argument_loc(loc: list[Any]) -> list[Any]:
    if tuple(loc[:2]) in _ARGUMENT_OF:
        return _ARGUMENT_OF[tuple(loc[:2])] + loc[2:]
    return ["arguments", *loc[1:]] if loc[:1] in (["body"], ["query"]) else loc


def tool_error(
    status: int, code: str, detail: str, errors_: list[dict[str, Any]] | None, *, tool: str, request_id: str
) -> types.CallToolResult:
    """The one mapping of a tool's failure: the REST problem document as an `isError` result."""
    if errors_ is not None:
        errors_ = [{**error, "loc": _argument_loc(list(error["loc"]))} for error in errors_]
    body = problem_body(status, code, detail, instance=f"/mcp#{tool}", request_id=request_id, errors_=errors_)
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(body))], is_error=True)


def _describe(tool: Tool) -> types.Tool:
    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.arguments.model_json_schema(mode="validation"),
        output_schema=tool.result.model_json_schema(mode="serialization"),
        annotations=types.ToolAnnotations(
            title=tool.title,
            read_only_hint=tool.read_only,
            destructive_hint=tool.destructive,
            idempotent_hint=tool.read_only,
            open_world_hint=False,
        ),
    )


def _event_of(ctx: Any) -> dict[str, Any] | None:
    request = getattr(ctx, "request", None)
    return request.scope.get("aws.event") if request is not None else None


def build_server(tools: tuple[Tool, ...] = TOOLS) -> Server[Any]:
    listing = types.ListToolsResult(tools=[_describe(tool) for tool in tools])
    by_name = {tool.name: tool for tool in tools}

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return listing

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        event = _event_of(ctx)
        request_id = ((event or {}).get("requestContext") or {}).get("requestId") or ""
        try:
            caller = caller_from_event(event)  # as every REST route reads it
            arguments = tool.arguments.model_validate(params.arguments or {})
            outcome = tool.run(caller, arguments)
        except ValidationError as error:
            raw = [{**e, "loc": ("arguments", *e["loc"])} for e in error.errors()]
            return tool_error(*validation_problem(raw), tool=tool.name, request_id=request_id)
        except DomainError as error:
            return tool_error(*domain_problem(error), tool=tool.name, request_id=request_id)
        except Exception:
            # Not re-raised: the SDK's handshake-era path would put the exception's text in
            # its JSON-RPC error. The REST route's 500, found by its request id in the logs.
            logger.exception("unhandled error", extra={"tool": tool.name})
            return tool_error(500, "internal_error", "Something went wrong on our side.", None, tool=tool.name, request_id=request_id)
        value = outcome.value.model_dump(mode="json")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(value))],
            structured_content=value,
            _meta={REPLAYED_META: True} if outcome.replayed else None,
        )

    return Server(NAME, title="Task API", on_list_tools=list_tools, on_call_tool=call_tool)


class McpExchange(Response):
    """One MCP exchange, answered by the SDK's transport itself (the route's response)."""

    def __init__(self, server: Server[Any]) -> None:
        super().__init__()
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            stateless=True,
            security_settings=_BEHIND_THE_GATEWAY,
            max_request_body_size=MAX_BODY_BYTES,
        )
        async with manager.run():
            await manager.handle_request(scope, receive, send)


# ---------------------------------------------------------------------------- OpenAPI
# The endpoint's body is JSON-RPC 2.0 as the MCP specification defines it; these describe
# the envelope (methods and tools: `tools/list` on the endpoint itself).


class JsonRpcRequest(BaseModel):
    """A JSON-RPC 2.0 request or notification, e.g. `tools/call` with `{"name", "arguments"}`."""

    jsonrpc: Literal["2.0"]
    id: str | int | None = None
    method: str = Field(examples=["tools/list", "tools/call", "initialize"])
    params: dict[str, Any] | None = None


class JsonRpcErrorObject(BaseModel):
    code: int
    message: str
    data: Any = None


class JsonRpcResponse(BaseModel):
    """The answer: `result` (a tool's own failure is a result with `isError`), or `error`."""

    jsonrpc: Literal["2.0"]
    id: str | int | None
    result: dict[str, Any] | None = None
    error: JsonRpcErrorObject | None = None


_TRANSPORT = {
    400: "Not a JSON-RPC request, or its parameters break the protocol (the body says which)",
    404: "A method the server does not have (2026-07-28 clients)",
    406: "`Accept` does not include `application/json`",
    413: "The body is over 64 KiB",
    415: "The body is not `application/json`",
}


def mcp_responses() -> dict[int | str, dict[str, Any]]:
    """What the MCP transport itself answers, besides 200 and the problems of every route."""
    plain = {"text/plain": {"schema": {"type": "string"}}}
    return {
        202: {"description": "A notification, accepted (no body)"},
        **{status: {"description": f"MCP transport: {why}", "model": JsonRpcResponse, "content": plain} for status, why in _TRANSPORT.items()},
    }


REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": JsonRpcRequest.model_json_schema(),
                "example": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_tasks", "arguments": {}}},
            }
        },
        "description": "One JSON-RPC message of the Model Context Protocol (Streamable HTTP transport)",
    }
}
