"""The Mcp and ProtectedResource functions, payload 2.0 event in, response out.

(The official MCP client against `todo-api serve`: tests/e2e/test_mcp_client.py; each tool
against another user's ids: tests/functions/test_ownership.py; one flight per tool call:
tests/shared/test_db.py.)
"""

from __future__ import annotations

import json

import pytest

from shared import tasks
from shared.settings import get_settings
from tests.lambda_api import LambdaApi

ACCEPT = {"accept": "application/json, text/event-stream"}


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_initialize_keeps_no_session(api: LambdaApi, alice, version):
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
    reply = api.mcp(alice, "initialize", params, version=version)
    assert reply.status == 200, reply.body
    result = reply.json()["result"]
    assert (result["protocolVersion"], result["serverInfo"]["name"]) == (version, "todo-api")
    assert set(result["capabilities"]) == {"tools"}
    assert "mcp-session-id" not in reply.headers  # stateless: nothing to come back to


def test_a_tool_call_needs_no_initialize_first(api: LambdaApi, alice):
    """Stateless: each POST stands alone, whichever Lambda instance gets it."""
    created = api.call_tool(alice, "add_task", {"title": "straight in"})
    assert created["structuredContent"]["title"] == "straight in"
    assert api.get(f"/api/me/tasks/{created['structuredContent']['id']}", user=alice).json() == created["structuredContent"]


def test_the_api_gateway_s_own_host_is_served(api: LambdaApi, alice):
    """The SDK's default Host check (localhost only, against DNS rebinding) would refuse it: 421."""
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for host in ("abc123.execute-api.eu-west-1.amazonaws.com", "api.example.com"):
        reply = api.post("/mcp", user=alice, json=message, headers={**ACCEPT, "host": host, "origin": f"https://{host}"})
        assert reply.status == 200 and len(reply.json()["result"]["tools"]) == 9, (host, reply.status, reply.body[:200])


def test_the_protocol_s_own_faults_are_json_rpc_errors(api: LambdaApi, alice):
    unknown = api.mcp(alice, "tools/call", {"name": "drop_database", "arguments": {}})
    assert unknown.status == 200 and unknown.json()["error"]["message"] == "Unknown tool: drop_database"
    modern = api.mcp(alice, "tools/call", {"name": "drop_database", "arguments": {}}, version="2026-07-28")
    assert modern.status == 400 and modern.json()["error"]["code"] == -32602
    no_method = api.mcp(alice, "prompts/list")
    assert no_method.status == 200 and no_method.json()["error"]["code"] == -32601
    notification = api.post("/mcp", user=alice, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=ACCEPT)
    assert notification.status == 202


def test_the_transport_refuses_what_is_not_an_mcp_request(api: LambdaApi, alice):
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert api.post("/mcp", user=alice, json=message).status == 406  # no Accept: application/json
    assert api.post("/mcp", user=alice, body=b"{not json", headers={**ACCEPT, "content-type": "application/json"}).status == 400
    assert api.post("/mcp", user=alice, body=b"x", headers={**ACCEPT, "content-type": "text/plain"}).status in (400, 415)
    big = {**message, "params": {"padding": "x" * (65 * 1024)}}
    assert api.post("/mcp", user=alice, json=big, headers=ACCEPT).status == 413  # the API's 64 KiB, not the SDK's 4 MiB
    unknown = api.post("/mcp", user=alice, json=message, headers=ACCEPT, query={"debug": "1"})
    assert (unknown.status, unknown.problem["errors"][0]["loc"]) == (422, ["query", "debug"])


def test_without_claims_it_is_401_problem_json_before_any_mcp(api: LambdaApi):
    reply = api.mcp(None, "tools/list")
    assert (reply.status, reply.problem["code"], reply.headers["www-authenticate"]) == (401, "unauthorized", "Bearer")


def test_a_failure_nobody_expected_tells_nothing_internal(api: LambdaApi, alice, monkeypatch, caplog):
    def broken(**_):
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(tasks, "get_task", broken)
    for version in ("2025-11-25", "2026-07-28"):  # the SDK's own handshake-era answer would carry the text
        reply = api.mcp(alice, "tools/call", {"name": "get_task", "arguments": {"task_id": "00000000-0000-4000-8000-000000000001"}}, version=version)
        assert reply.status == 200 and "secret" not in reply.body.decode()
        result = reply.json()["result"]
        problem = json.loads(result["content"][0]["text"])
        assert result["isError"] and (problem["status"], problem["code"]) == (500, "internal_error")
        assert problem["request_id"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == ["unhandled error"] * 2  # logged, in full


def test_a_database_outage_is_a_tool_error_to_retry(api: LambdaApi, alice, monkeypatch):
    from shared.errors import DatabaseUnavailable

    def down(**_):
        raise DatabaseUnavailable()

    monkeypatch.setattr(tasks, "list_tasks", down)
    result = api.call_tool(alice, "list_tasks", {})
    problem = json.loads(result["content"][0]["text"])
    assert result["isError"] and (problem["code"], problem["status"]) == ("database_unavailable", 503)


@pytest.fixture
def issuer(monkeypatch):
    monkeypatch.setenv("JWT_ISSUER", "https://issuer.example.com/")
    get_settings.cache_clear()
    yield "https://issuer.example.com/"
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_protected_resource_metadata_names_the_endpoint_and_the_issuer(api: LambdaApi, issuer):
    reply = api.get("/.well-known/oauth-protected-resource", user=None, headers={"host": "abc123.execute-api.eu-west-1.amazonaws.com"})
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "resource": "https://abc123.execute-api.eu-west-1.amazonaws.com/mcp",
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "Task API",
    }


def test_the_protected_resource_without_an_issuer_is_a_misconfiguration(api: LambdaApi, monkeypatch):
    monkeypatch.delenv("JWT_ISSUER", raising=False)
    get_settings.cache_clear()
    reply = api.get("/.well-known/oauth-protected-resource", user=None)
    assert (reply.status, reply.problem["code"]) == (500, "internal_error")
