"""The MCP endpoint over real HTTP through `todo-api serve`, spoken to by the official MCP
client (`mcp`'s Streamable HTTP transport) with two users' tokens, in both protocol eras:
the initialize handshake (what most hosts speak today) and 2026-07-28's self-contained
requests (what this SDK's client negotiates by default)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from shared.local.keys import LOCAL_ISSUER
from shared.tools import TOOLS
from tests.e2e.conftest import Serve, bearer, mint

MODES = ["legacy", "auto"]


def _session(server: Serve, token: str | None, mode: str, work: Callable[[Client], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        headers = bearer(token) if token else {}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(f"{server.url}/mcp", http_client=http), mode=mode) as client:  # type: ignore[arg-type]
                return await work(client)

    return asyncio.run(run())


def _problem(result: Any) -> dict[str, Any]:
    assert result.is_error, result
    return json.loads(result.content[0].text)


def _value(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content  # the text says the same
    return result.structured_content


@pytest.mark.parametrize("mode", MODES)
def test_initialize_and_the_tools_with_their_schemas(server: Serve, alice: str, mode: str):
    async def work(client: Client) -> Any:
        return client.protocol_version, client.server_info, (await client.list_tools()).tools

    version, info, tools = _session(server, mint(alice), mode, work)
    assert (version == "2026-07-28") == (mode == "auto"), version
    assert info is not None and info.name == "todo-api"
    assert [tool.name for tool in tools] == [
        "add_task", "list_tasks", "get_task", "update_task", "complete_task", "delete_task", "restore_task",
        "list_categories", "add_category",
    ]  # fmt: skip
    for tool, expected in zip(tools, TOOLS, strict=True):
        # The REST models' own JSON Schemas, nothing written a second time.
        assert tool.input_schema == expected.arguments.model_json_schema(), tool.name
        assert tool.output_schema == expected.result.model_json_schema(mode="serialization"), tool.name
    by_name = {tool.name: tool for tool in tools}
    assert by_name["add_task"].input_schema["required"] == ["title"]
    assert "idempotency_key" in by_name["add_task"].input_schema["properties"]
    assert by_name["update_task"].input_schema["required"] == ["task_id"]
    assert {"status", "sort", "cursor", "limit", "q", "tag"} <= set(by_name["list_tasks"].input_schema["properties"])
    assert by_name["get_task"].annotations.read_only_hint and by_name["delete_task"].annotations.destructive_hint


@pytest.mark.parametrize("mode", MODES)
def test_every_tool_for_two_users_kept_apart(server: Serve, client: httpx.Client, alice: str, bob: str, mode: str):
    async def alices(c: Client) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        seen["category"] = _value(await c.call_tool("add_category", {"name": "Home", "color": "#336699"}))
        seen["task"] = task = _value(
            await c.call_tool("add_task", {"title": " Water the plants ", "tags": ["home"], "category_id": seen["category"]["id"]})
        )
        seen["other"] = _value(await c.call_tool("add_task", {"title": "Buy milk", "priority": "high"}))
        seen["listed"] = _value(await c.call_tool("list_tasks", {"sort": "title", "limit": 1}))
        seen["page2"] = _value(await c.call_tool("list_tasks", {"sort": "title", "limit": 1, "cursor": seen["listed"]["next_cursor"]}))
        seen["high"] = _value(await c.call_tool("list_tasks", {"priority": "high"}))
        seen["got"] = _value(await c.call_tool("get_task", {"task_id": task["id"]}))
        seen["updated"] = _value(await c.call_tool("update_task", {"task_id": task["id"], "description": "twice a week"}))
        seen["completed"] = _value(await c.call_tool("complete_task", {"task_id": task["id"]}))
        seen["again"] = _value(await c.call_tool("complete_task", {"task_id": task["id"]}))  # no toggle
        seen["reopened"] = _value(await c.call_tool("complete_task", {"task_id": task["id"], "completed": False}))
        seen["deleted"] = _value(await c.call_tool("delete_task", {"task_id": seen["other"]["id"]}))
        seen["gone"] = _problem(await c.call_tool("get_task", {"task_id": seen["other"]["id"]}))
        seen["restored"] = _value(await c.call_tool("restore_task", {"task_id": seen["other"]["id"]}))
        seen["categories"] = _value(await c.call_tool("list_categories", {}))
        return seen

    a = _session(server, mint(alice), mode, alices)
    task = a["task"]
    assert (task["title"], task["tags"], task["version"], task["completed"]) == ("Water the plants", ["home"], 1, False)
    assert [t["title"] for t in a["listed"]["items"]] == ["Buy milk"] and a["listed"]["next_cursor"]
    assert [t["title"] for t in a["page2"]["items"]] == ["Water the plants"] and a["page2"]["next_cursor"] is None
    assert [t["id"] for t in a["high"]["items"]] == [a["other"]["id"]]
    assert a["got"] == task
    assert (a["updated"]["description"], a["updated"]["tags"], a["updated"]["version"]) == ("twice a week", ["home"], 2)
    assert (a["completed"]["completed"], a["again"]["completed"], a["reopened"]["completed"]) == (True, True, False)
    assert a["deleted"] == {"id": a["other"]["id"], "in_trash": True}
    assert a["gone"]["code"] == "not_found"
    assert a["restored"]["id"] == a["other"]["id"]
    assert [(c["name"], c["task_count"]) for c in a["categories"]["items"]] == [("Home", 1)]
    # The tools' objects are the REST API's objects.
    rest = client.get(f"/api/me/tasks/{task['id']}", headers=bearer(mint(alice)))
    assert rest.status_code == 200 and rest.json() == a["reopened"]

    ids = {"task_id": task["id"]}

    async def bobs(c: Client) -> dict[str, Any]:
        seen: dict[str, Any] = {"listed": _value(await c.call_tool("list_tasks", {}))}
        seen["categories"] = _value(await c.call_tool("list_categories", {}))
        for name, arguments in (
            ("get_task", ids),
            ("update_task", {**ids, "title": "taken over"}),
            ("complete_task", ids),
            ("delete_task", ids),
            ("restore_task", {"task_id": a["other"]["id"]}),
        ):
            seen[name] = _problem(await c.call_tool(name, arguments))
        seen["foreign_category"] = _problem(await c.call_tool("add_task", {"title": "x", "category_id": a["category"]["id"]}))
        return seen

    b = _session(server, mint(bob), mode, bobs)
    assert b["listed"]["items"] == [] and b["categories"]["items"] == []
    for name in ("get_task", "update_task", "complete_task", "delete_task", "restore_task"):
        assert (b[name]["code"], b[name]["status"]) == ("not_found", 404), (name, b[name])
    assert b["foreign_category"]["errors"][0]["loc"] == ["arguments", "category_id"]
    assert client.get(f"/api/me/tasks/{task['id']}", headers=bearer(mint(alice))).json() == a["reopened"]  # untouched


@pytest.mark.parametrize("mode", MODES)
def test_errors_are_tool_errors_with_the_problem_code(server: Serve, alice: str, mode: str):
    key = f"k-{uuid.uuid4().hex}"

    async def work(c: Client) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        seen["blank"] = _problem(await c.call_tool("add_task", {"title": "   "}))
        seen["unknown_field"] = _problem(await c.call_tool("add_task", {"title": "x", "version": 3}))
        seen["bad_rule"] = _problem(await c.call_tool("add_task", {"title": "x", "recurrence": "FREQ=DAILY"}))
        seen["malformed_id"] = _problem(await c.call_tool("get_task", {"task_id": "not-a-uuid"}))
        seen["bad_cursor"] = _problem(await c.call_tool("list_tasks", {"cursor": "forged"}))
        await c.call_tool("add_category", {"name": "Work"})
        seen["duplicate"] = _problem(await c.call_tool("add_category", {"name": "WORK"}))
        seen["first"] = _value(await c.call_tool("add_task", {"title": "once", "idempotency_key": key}))
        seen["replay"] = await c.call_tool("add_task", {"title": "once", "idempotency_key": key})
        seen["reused"] = _problem(await c.call_tool("add_task", {"title": "another", "idempotency_key": key}))
        seen["all"] = _value(await c.call_tool("list_tasks", {"q": "once"}))
        return seen

    seen = _session(server, mint(alice), mode, work)
    assert (seen["blank"]["code"], seen["blank"]["status"]) == ("validation_error", 422)
    assert seen["blank"]["errors"][0]["loc"] == ["arguments", "title"]
    assert seen["blank"]["detail"] == "Invalid input: arguments.title."
    assert seen["unknown_field"]["errors"][0]["loc"] == ["arguments", "version"]  # no mass assignment
    assert seen["bad_rule"]["errors"][0]["loc"] == ["arguments", "recurrence"]
    assert seen["malformed_id"]["code"] == "not_found"
    assert (seen["bad_cursor"]["code"], seen["bad_cursor"]["status"]) == ("bad_request", 400)
    assert (seen["duplicate"]["code"], seen["duplicate"]["status"]) == ("conflict", 409)
    for problem in (seen["blank"], seen["duplicate"]):
        assert set(problem) >= {"type", "title", "status", "detail", "code", "request_id"} and problem["detail"]
    # The same key and arguments: the first answer again, nothing written twice.
    assert _value(seen["replay"]) == seen["first"] and seen["replay"].meta["todo-api/idempotent-replayed"] is True
    assert seen["reused"]["errors"][0]["loc"] == ["arguments", "idempotency_key"]
    assert [t["id"] for t in seen["all"]["items"]] == [seen["first"]["id"]]


def test_without_a_token_the_gateway_refuses(server: Serve, client: httpx.Client):
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    reply = client.post("/mcp", json=message, headers={"accept": "application/json, text/event-stream"})
    assert (reply.status_code, reply.json()) == (401, {"message": "Unauthorized"})
    expired = client.post("/mcp", json=message, headers={**bearer(mint("x", ttl=-60)), "accept": "application/json"})
    assert expired.status_code == 401
    with pytest.raises(Exception):  # the official client cannot get past it either
        _session(server, None, "legacy", lambda c: c.list_tools())


def test_the_protected_resource_document(server: Serve, client: httpx.Client):
    reply = client.get("/.well-known/oauth-protected-resource")  # no token needed
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "resource": f"{server.url}/mcp",
        "authorization_servers": [LOCAL_ISSUER],
        "bearer_methods_supported": ["header"],
        "resource_name": "Task API",
    }
