"""The pooler pass checks itself: the application's connections really go through PgBouncer
in transaction mode, and a server connection that served one caller's requests carries
nothing of them (caller, role, statement timeout) to the next client that borrows it."""

from __future__ import annotations

import pg8000.native
import pytest

from tests.conftest import VIA

pytestmark = pytest.mark.pooler
if VIA != "pgbouncer":
    pytest.skip("checks the pooler pass itself (TEST_DATABASE_VIA=pgbouncer)", allow_module_level=True)


def _pool(pgbouncer, database: str, command: str) -> list[dict]:
    return [row for row in pgbouncer.admin(command) if row["database"] == database]


def test_the_application_goes_through_pgbouncer_in_transaction_mode(api, alice, database_url, database_name, pgbouncer):
    assert database_url == pgbouncer.url(database_name)
    assert api.get("/health", user=None).status == 200  # the pool has stats once something went through
    [before] = _pool(pgbouncer, database_name, "SHOW STATS")
    task = api.create_task(alice, title="pooled")
    assert api.get(f"/api/me/tasks/{task['id']}", user=alice).status == 200
    [after] = _pool(pgbouncer, database_name, "SHOW STATS")
    assert after["total_xact_count"] >= before["total_xact_count"] + 2
    assert {row["pool_mode"] for row in _pool(pgbouncer, database_name, "SHOW POOLS")} == {"transaction"}


def test_a_server_connection_carries_nothing_from_one_request_to_the_next_client(api, alice, sql, database_name, pgbouncer):
    api.create_task(alice, title="leaves nothing behind")
    assert api.get("/api/me/tasks", user=alice).status == 200
    used = {row["remote_pid"] for row in _pool(pgbouncer, database_name, "SHOW SERVERS")}
    [[default_timeout]] = sql.run("SHOW statement_timeout")  # a fresh session's, on the server itself

    client = pg8000.native.Connection("postgres", host=pgbouncer.host, port=pgbouncer.port, database=database_name)
    try:
        [[pid, caller, role, timeout]] = client.run(
            "SELECT pg_backend_pid(), current_setting('app.user_id', true), current_user, current_setting('statement_timeout')"
        )
    finally:
        client.close()
    assert pid in used  # pgbouncer lent a server connection the requests had used (LIFO), not a new one
    assert (caller or "", role, timeout) == ("", "postgres", default_timeout)
