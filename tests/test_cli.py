"""`todo-api`: invoke runs a function on an events/ file; migrate is idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.template import REPO_ROOT, functions


def _cli(*args: str, database_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=REPO_ROOT,
        # JWT_ISSUER: what the template gives ProtectedResource.
        env={**os.environ, "DATABASE_URL": database_url, "POWERTOOLS_LOG_LEVEL": "WARNING", "JWT_ISSUER": "https://issuer.example.com/"},
        capture_output=True,
        text=True,
    )


def test_invoke_runs_the_health_function_on_its_event(database_url):
    result = _cli("invoke", "Health", "--event", "events/Health.json", database_url=database_url)
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"status": "ok", "database": "ok"})


def test_invoke_create_then_get_with_the_example_events(database_url):
    created = json.loads(_cli("invoke", "CreateTask", "--event", "events/CreateTask.json", database_url=database_url).stdout)
    assert created["statusCode"] == 201
    assert json.loads(created["body"])["title"] == "Buy milk"
    # The GetTask example names an id nobody has: a clean 404, not an error.
    missing = json.loads(_cli("invoke", "GetTask", "--event", "events/GetTask.json", database_url=database_url).stdout)
    assert missing["statusCode"] == 404


def test_invoke_names_the_functions_when_given_an_unknown_one(database_url):
    result = _cli("invoke", "NoSuchFunction", "--event", "events/Health.json", database_url=database_url)
    assert result.returncode != 0
    assert "GetTask" in result.stderr


@pytest.mark.parametrize("function", sorted(f.logical_id for f in functions().values() if f.routes))
def test_every_example_event_gets_an_answer_from_the_contract(database_url, function):
    """On a fresh database: the ids in the example events exist nowhere (404); lists and
    health answer 200, creates 201."""
    route = functions()[function].routes[0]
    creates = route.method == "POST" and route.path != "/mcp"  # an MCP call answers 200, its tool's result inside
    expected = 404 if "{task_id}" in route.path or "{category_id}" in route.path else 201 if creates else 200
    result = _cli("invoke", function, "--event", f"events/{function}.json", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["statusCode"] == expected


def test_migrate_twice_is_harmless(database_url):
    for _ in range(2):
        result = _cli("migrate", database_url=database_url)
        assert result.returncode == 0, result.stderr
