"""Test helpers around `shared.db.flight`: plans as the functions get them, and faults in a flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pg8000.native

from shared import db

# Every backend of the functions (application_name) in the test database but our own.
FUNCTION_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = 'todo-api' AND pid <> pg_backend_pid()"
    " AND datname = current_database()"
)


def explain(query: db.Query, *, user_id: str | None = None, role: str = db.APP_ROLE, analyze: bool = False) -> str:
    """The plan of `query` taken exactly as a function runs it: its role, its caller's
    `app.user_id`, in a flight (row-level security binds it as it binds the function)."""
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    (result,) = db.flight(db.Query(prefix + query.text, query.params), user_id=user_id, role=role)
    return "\n".join(row["QUERY PLAN"] for row in result.rows)


def with_extra_queries(extra: Callable[[int], list[db.Query]]) -> Callable[..., list[db.Result]]:
    """A `flight` that appends `extra(n)` to its n-th call's queries (n from 1)."""
    real = db.flight
    calls = 0

    def flight(*queries: db.Query, **options: Any) -> list[db.Result]:
        nonlocal calls
        calls += 1
        added = extra(calls)
        return real(*queries, *added, **options)[: len(queries)] if added else real(*queries, **options)

    return flight


def kill_function_backend_when(condition: str, connect: Callable[[], pg8000.native.Connection], killed: list[Any]) -> threading.Thread:
    """A thread that terminates the function's backend once `condition` (SQL over
    pg_stat_activity) holds for it, so the FATAL arrives in the middle of its flight."""

    def run() -> None:
        try:
            connection = connect()
            try:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    found = connection.run(f"{FUNCTION_BACKENDS} AND {condition}")
                    if found:
                        killed.extend(connection.run("SELECT pg_terminate_backend(:pid, 5000)", pid=found[0][0])[0])
                        return
                    time.sleep(0.01)
                killed.append(f"no function backend matched {condition!r} within 5 s")
            finally:
                connection.close()
        except Exception as error:  # noqa: BLE001 - reported by the test
            killed.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
