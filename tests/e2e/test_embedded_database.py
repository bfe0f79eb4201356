"""`todo-api serve` with no DATABASE_URL: its own Postgres, kept across restarts, never left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import port_open
from tests.e2e.conftest import Serve, bearer, clean_env, make_local_dir, mint


def _gone(pid: int) -> bool:
    """No such process (a zombie whose parent is gone counts as gone: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _processes_using(path: Path) -> list[int]:
    """Live processes whose command line names `path` (a postgres over that data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path).encode() in (entry / "cmdline").read_bytes() and not _gone(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def embedded_serve() -> Iterator[Serve]:
    local_dir = make_local_dir()
    previous = os.environ.get("TODO_API_LOCAL_DIR")
    os.environ["TODO_API_LOCAL_DIR"] = str(local_dir)  # tokens minted here use its key
    serve = Serve(env=clean_env(local_dir), log_dir=local_dir)
    try:
        yield serve
    finally:
        serve.stop()
        if previous is None:
            os.environ.pop("TODO_API_LOCAL_DIR", None)
        else:
            os.environ["TODO_API_LOCAL_DIR"] = previous
        shutil.rmtree(local_dir, ignore_errors=True)


def test_tasks_survive_a_restart_and_no_postgres_is_left_behind(embedded_serve: Serve):
    serve = embedded_serve
    started = time.monotonic()
    serve.start()
    assert time.monotonic() - started < 30, "embedded Postgres up and migrated within seconds"
    data_dir = Path(serve.env["TODO_API_LOCAL_DIR"]) / "pgdata"
    assert (data_dir / "PG_VERSION").exists()
    token = bearer(mint("persistent-user"))
    created = httpx.post(f"{serve.url}/api/me/tasks", headers=token, json={"title": "Survive a restart"})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    pg_pid, pg_port = serve.embedded_postgres()
    assert port_open("127.0.0.1", pg_port)

    # SIGTERM: serve stops cleanly and takes its Postgres with it.
    assert serve.stop(signal.SIGTERM) == 0
    assert _wait_until(lambda: _gone(pg_pid)), f"postgres {pg_pid} outlived serve"
    assert not port_open("127.0.0.1", pg_port)
    assert _processes_using(data_dir) == []
    assert not (data_dir / "postmaster.pid").exists()
    assert "stopping the embedded Postgres" in serve.stderr()

    # Started again over the same data: the task is still there.
    serve.start()
    again = httpx.get(f"{serve.url}/api/me/tasks/{task_id}", headers=token)
    assert (again.status_code, again.json()["title"]) == (200, "Survive a restart")


def test_a_killed_serve_does_not_leave_its_postgres_running(embedded_serve: Serve):
    serve = embedded_serve
    if serve.process is None:
        serve.start()
    data_dir = Path(serve.env["TODO_API_LOCAL_DIR"]) / "pgdata"
    pg_pid, pg_port = serve.embedded_postgres()

    # SIGKILL gives serve no chance to clean up: the kernel's parent-death signal does it.
    serve.stop(signal.SIGKILL)
    assert _wait_until(lambda: _gone(pg_pid)), f"postgres {pg_pid} outlived a killed serve"
    assert _wait_until(lambda: not port_open("127.0.0.1", pg_port))
    assert _wait_until(lambda: _processes_using(data_dir) == [])

    # And the next start works over the same data.
    serve.start()
    token = bearer(mint("persistent-user"))
    listed = httpx.get(f"{serve.url}/api/me/tasks", headers=token).json()
    assert [t["title"] for t in listed["items"]] == ["Survive a restart"]
    serve.stop()


def test_a_stale_postmaster_pid_from_a_vanished_server_is_cleared(embedded_serve: Serve):
    serve = embedded_serve
    data_dir = Path(serve.env["TODO_API_LOCAL_DIR"]) / "pgdata"
    assert serve.process is None and _processes_using(data_dir) == []
    # What a Postgres killed with SIGKILL leaves: a pid file naming a process that is gone.
    vanished = subprocess.Popen(["true"])
    vanished.wait()
    stale = data_dir / "postmaster.pid"
    stale.write_text(f"{vanished.pid}\n{data_dir}\n0\n5432\n\n127.0.0.1\n  0 0\nready\n")
    serve.start()
    assert "stale postmaster.pid" in serve.stderr()
    token = bearer(mint("persistent-user"))
    assert httpx.get(f"{serve.url}/api/me/tasks", headers=token).status_code == 200
    serve.stop()
