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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pg8000.native
import pytest

from shared.template import REPO_ROOT

CORS_ORIGIN = "https://app.example"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def todo_api_command() -> list[str]:
    script = Path(sys.executable).parent / "todo-api"
    return [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]


def make_local_dir() -> Path:
    """A fresh TODO_API_LOCAL_DIR that a service user (when we run as root) can pass through."""
    path = Path(tempfile.mkdtemp(prefix="todo-e2e-"))
    path.chmod(0o755)
    return path


def clean_env(local_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a serve process: no inherited database, issuer or CORS setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL", "CORS_ALLOW_ORIGINS")
    }
    env["TODO_API_LOCAL_DIR"] = str(local_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Serve:
    """One `todo-api serve` process; its stdout and stderr go to files."""

    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"serve-{self.runs}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"serve-{self.runs}.err"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def start(self) -> None:
        self.runs += 1
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [*todo_api_command(), "serve", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.stdout()}\n{self.stderr()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"serve did not answer within {START_TIMEOUT:.0f}s:\n{self.stdout()}\n{self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal it and wait; SIGKILL when it does not go. Returns its exit code."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise AssertionError(f"serve ignored signal {sig} for {timeout:.0f}s:\n{self.stderr()}") from None

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
    path = make_local_dir()
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
