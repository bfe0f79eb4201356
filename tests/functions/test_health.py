"""GET /health, and what every route does when the database cannot be reached."""

from __future__ import annotations

import time

import pytest

from shared import db

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler


def test_health_is_ok_without_a_token(api):
    reply = api.get("/health", user=None)
    assert (reply.status, reply.json()) == (200, {"status": "ok", "database": "ok"})


@pytest.fixture
def database_down(monkeypatch, database_url):
    """Nothing listens where DATABASE_URL points; a short connect budget."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/nothing")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2")
    db.reset()
    yield
    monkeypatch.undo()
    db.reset()


def test_health_is_503_with_retry_after_when_the_database_is_down(api, database_down):
    started = time.monotonic()
    reply = api.get("/health", user=None)
    assert time.monotonic() - started < 2.5  # within the connect budget
    assert (reply.status, reply.problem["code"]) == (503, "database_unavailable")
    assert int(reply.headers["retry-after"]) > 0


def test_a_write_is_503_when_the_database_is_down_and_nothing_leaks(api, alice, database_down):
    reply = api.post("/api/me/tasks", user=alice, json={"title": "lost?"})
    assert reply.status == 503
    problem = reply.problem
    assert set(problem) == {"type", "title", "status", "detail", "instance", "code", "request_id"}
    assert "127.0.0.1" not in reply.body.decode() and "pg8000" not in reply.body.decode()
    assert problem["request_id"]
