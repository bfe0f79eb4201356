"""End to end: `todo-api serve` as a real process, spoken to over real HTTP.

The server gets its own database (`todo_e2e_<random>` on the run's Postgres server: see
tests/conftest.py) and its own local directory
(`TODO_API_LOCAL_DIR`: issuer keys, embedded data), so the developer's `.local/` is never
touched. It is started once for the session and stopped (SIGTERM, then SIGKILL) at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pg8000.native
import pytest

from shared.local.serve_process import ServeProcess, clean_env, make_local_dir, todo_api_command

__all__ = ["CORS_ORIGIN", "Serve", "bearer", "clean_env", "make_local_dir", "mint", "todo_api_command"]

CORS_ORIGIN = "https://app.example"


class Serve(ServeProcess):
    """One `todo-api serve` process (shared/local/serve_process.py), and what its output says."""

    def embedded_postgres(self) -> tuple[int, int]:
        """(pid, port) of the embedded Postgres, as the start banner states them."""
        found = re.search(r"embedded Postgres \(pid (\d+),.*@127\.0\.0\.1:(\d+)/", self.stdout())
        assert found, self.stdout()
        return int(found.group(1)), int(found.group(2))

    def count_invocations(self, function: str) -> int:
        """Request log lines the function itself wrote (Powertools, on the server's stdout)."""
        return self.stdout().count(f'"function_name":"{function}"')


@pytest.fixture(scope="session")
def e2e_database(postgres_server: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A fresh database for the served API (serve migrates it), dropped at the end."""
    name = f"todo_e2e_{uuid.uuid4().hex[:10]}"
    admin = pg8000.native.Connection(**postgres_server, database="postgres")  # autocommit
    admin.run(f'CREATE DATABASE "{name}"')
    try:
        yield {**postgres_server, "database": name}
    finally:
        admin.run(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def local_dir() -> Iterator[Path]:
    """TODO_API_LOCAL_DIR for the session, in this process too (tokens are minted here)."""
    path = make_local_dir("todo-e2e-")
    previous = os.environ.get("TODO_API_LOCAL_DIR")
    os.environ["TODO_API_LOCAL_DIR"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("TODO_API_LOCAL_DIR", None)
        else:
            os.environ["TODO_API_LOCAL_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def server(e2e_database: dict[str, Any], local_dir: Path) -> Iterator[Serve]:
    """`todo-api serve` on a free port, DATABASE_URL set, CORS on for one origin."""
    db = e2e_database
    url = f"postgresql://{db['user']}@{db['host']}:{db['port']}/{db['database']}"
    serve = Serve(env=clean_env(local_dir, DATABASE_URL=url, CORS_ALLOW_ORIGINS=CORS_ORIGIN), log_dir=local_dir)
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()


@pytest.fixture
def sql(e2e_database: dict[str, Any]) -> Iterator[pg8000.native.Connection]:
    """A direct connection to the served database, to see what it really holds."""
    connection = pg8000.native.Connection(**e2e_database)
    yield connection
    connection.close()


@pytest.fixture
def client(server: Serve) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=15) as http:
        yield http


def mint(sub: str, **options: Any) -> str:
    from shared.local.keys import mint_token

    return mint_token(sub, **options)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
