"""The assembled OpenAPI document is valid and describes what the functions really do.

(Every reply in the suite is also checked against the documented statuses of its route:
see tests/lambda_api.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys

from shared.openapi import build_openapi

PUBLIC = {"/health", "/.well-known/oauth-protected-resource"}
# What the MCP transport itself answers: JSON-RPC errors (or its plain-text refusals), as MCP says.
MCP_TRANSPORT = {"400", "404", "406", "413", "415"}


def test_the_document_is_openapi_3_1_with_every_error_as_problem_json():
    document = build_openapi()
    assert document["openapi"].startswith("3.1")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status == "429":
                    continue  # the gateway's own, below
                if path == "/mcp" and status in MCP_TRANSPORT:
                    assert sorted(response["content"]) == ["application/json", "text/plain"], status
                    assert response["content"]["application/json"]["schema"]["$ref"].endswith("/JsonRpcResponse")
                elif int(status) >= 400:
                    # A protected route's 401 may also be the gateway's own `{"message": ...}`.
                    gateway = ["application/json"] if status == "401" and path not in PUBLIC else []
                    assert sorted(response["content"]) == sorted(["application/problem+json", *gateway]), (method, path, status)
                    assert response["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")


def test_every_route_documents_the_gateways_429_when_throttled():
    """ThrottleRate / ThrottleBurst (template.yaml): API Gateway answers 429 itself, before any function."""
    for path, operations in build_openapi()["paths"].items():
        for method, operation in operations.items():
            throttled = operation["responses"]["429"]["content"]
            assert list(throttled) == ["application/json"], (method, path)
            assert throttled["application/json"]["example"] == {"message": "Too Many Requests"}, (method, path)


def test_every_route_but_the_public_two_requires_the_bearer_token():
    document = build_openapi()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC:
                assert "security" not in operation
            else:
                assert operation["security"] == [{"HTTPBearer": []}], (method, path)


def test_each_route_documents_the_statuses_the_contract_gives_it():
    paths = build_openapi()["paths"]
    statuses = lambda path, method: {int(s) for s in paths[path][method]["responses"]}  # noqa: E731
    assert statuses("/api/{user_id}/tasks", "post") == {201, 400, 401, 403, 409, 413, 415, 422, 429, 500, 503}
    assert statuses("/api/{user_id}/tasks/{task_id}/move", "post") == {200, 400, 401, 403, 404, 412, 413, 415, 422, 429, 500, 503}
    assert statuses("/api/{user_id}/tasks/{task_id}", "delete") >= {204, 401, 403, 404, 412, 503}
    assert statuses("/api/{user_id}/categories", "post") >= {201, 409}
    assert statuses("/health", "get") == {200, 422, 429, 500, 503}
    assert statuses("/api/{user_id}/changes", "get") == {200, 400, 401, 403, 410, 422, 429, 500, 503}
    assert statuses("/mcp", "post") == {200, 202, 400, 401, 404, 406, 413, 415, 422, 429, 500}
    assert statuses("/.well-known/oauth-protected-resource", "get") == {200, 422, 429, 500}
    task = build_openapi()["components"]["schemas"]["TaskPublic"]
    assert set(task["required"]) == {
        "id", "title", "description", "completed", "completed_at", "priority", "due_at", "category_id", "tags",
        "created_at", "updated_at", "version", "recurrence", "timezone", "series_id", "remind_at", "parent_id", "position",
    }


def test_the_recurrence_fields_are_described_with_an_example():
    create = build_openapi()["components"]["schemas"]["TaskCreate"]["properties"]
    for name in ("recurrence", "timezone", "remind_at"):
        described = create[name]
        assert described.get("description") and described.get("examples"), (name, described)


def test_request_schemas_forbid_unknown_fields():
    schemas = build_openapi()["components"]["schemas"]
    for name in ("TaskCreate", "TaskUpdate", "CategoryCreate", "CategoryUpdate", "CompleteRequest", "MoveRequest"):
        assert schemas[name]["additionalProperties"] is False, name


def test_the_command_prints_the_same_document():
    output = subprocess.run(
        [sys.executable, "-m", "shared.cli", "openapi"], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(output) == json.loads(json.dumps(build_openapi()))
