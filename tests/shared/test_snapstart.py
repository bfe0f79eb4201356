"""SnapStart: every function's init primes it without the database and registers the runtime
hooks; the snapshot holds nothing open; restored copies do not share their randomness.

Each function is imported in a fresh interpreter (a process is one Lambda instance), with
the PyPI `snapshot_restore_py`, whose registry the Lambda runtime runs, and a database that
cannot be reached (127.0.0.1 port 1) or a secret that cannot be read (no AWS): an audit
hook records every socket connect, and none may happen.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from shared import db, secrets, snapstart
from shared.template import REPO_ROOT, functions

UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/nowhere"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:todo-api/database-url-AbCdEf"

# In the child: record every connect and thread, import the function, report what init did,
# run the before-snapshot hooks as the runtime would, and report what is left open (a
# network socket would be dead in every restored copy).
CHILD = r"""
import json, os, sys, threading
connects = []
sys.addaudithook(lambda event, args: connects.append(repr(args[1])) if event == "socket.connect" else None)
from shared.template import functions

function = functions()[sys.argv[1]]
function.load_handler()

import snapshot_restore_py
from shared import snapstart

registered = {
    "before": [f.__qualname__ for f, _, _ in snapshot_restore_py.get_before_snapshot()],
    "after": [f.__qualname__ for f, _, _ in snapshot_restore_py.get_after_restore()],
}
snapstart.run_before_snapshot()
import psutil
# Network sockets only: the event loop's own socketpair (AF_UNIX, inside the process) is as
# much a part of the snapshot as its memory.
sockets = [repr(c) for c in psutil.Process().net_connections(kind="inet")]
primed = snapstart.primed.get(function.logical_id)
print(json.dumps({
    "registered": registered,
    "primed": None if primed is None else {"statuses": primed.statuses, "samples_valid": primed.samples_valid},
    "connects": connects,
    "sockets": sockets,
    "threads": [t.name for t in threading.enumerate()],
    "secrets_read": "aws_lambda_powertools.utilities.parameters" in sys.modules or "boto3" in sys.modules,
}))
"""


def import_in_fresh_process(name: str, **environment: str) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_URL", "AWS_"))}
    env.update({"LOG_LEVEL": "WARNING", "AWS_DEFAULT_REGION": "us-east-1", **environment})
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, name], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


# A synthetic request that gets as far as connecting answers 503; the MCP endpoint answers
# 200, the tool's 503 problem inside; the protected-resource document needs no database.
PRIMED_STATUS = {"Mcp": 200, "ProtectedResource": 200}


@pytest.mark.parametrize("name", sorted(functions()))
def test_every_function_registers_the_hooks_and_primes_without_the_database(name: str) -> None:
    function = functions()[name]
    report = import_in_fresh_process(name, DATABASE_URL=UNREACHABLE_URL, JWT_ISSUER="https://issuer.example")

    # The runtime's registry holds the hooks (it runs those, and nothing else).
    assert "before_snapshot" in report["registered"]["before"], report["registered"]
    assert "after_restore" in report["registered"]["after"], report["registered"]
    # Init primed this function: each route's synthetic request got as far as connecting
    # (503: refused by db.connections_refused), its models took their samples.
    primed = report["primed"]
    assert primed is not None, f"{name} was not primed at init"
    routes = {f"{route.method} {route.path}" for route in function.routes}
    assert set(primed["statuses"]) == routes
    assert set(primed["statuses"].values()) <= {PRIMED_STATUS.get(name, 503)}, primed["statuses"]
    assert all(primed["samples_valid"].values()), primed["samples_valid"]
    # Never the database, never a secret; nothing open and no thread in the snapshot.
    assert report["connects"] == [], report["connects"]
    assert report["sockets"] == [], report["sockets"]
    assert report["threads"] == ["MainThread"], report["threads"]
    assert report["secrets_read"] is False


@pytest.mark.parametrize("name", ["GetTask", "Reminders"])
def test_priming_never_reads_the_secret(name: str) -> None:
    """With the URL in Secrets Manager (and no AWS to reach) init neither fetches it nor loads boto3."""
    report = import_in_fresh_process(name, DATABASE_URL_SECRET_ARN=SECRET_ARN)
    assert report["primed"] is not None
    assert report["connects"] == [] and report["secrets_read"] is False, report


def _sockets_to(port: int) -> list[Any]:
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


def test_before_snapshot_closes_a_connection_left_open(database_url: str) -> None:
    port = db.parse_database_url(database_url).port
    before = len(_sockets_to(port))
    with db.transaction(user_id="snapshot-test"):  # open: a connection, nothing sent yet
        assert len(_sockets_to(port)) == before + 1
        snapstart.run_before_snapshot()
        assert len(_sockets_to(port)) == before, "the snapshot would hold a connection to the database"
    assert db.close_open_connections() == 0


def test_restored_copies_draw_their_own_randomness() -> None:
    """Two copies forked from one primed state (what a snapshot restore is): with the
    after-restore hooks they draw different `random` values and ids; without, the same."""
    functions()["CreateTask"].load_handler()  # a primed function in this process
    snapshot = random.getstate()  # the generator as the snapshot holds it

    def restored_copy(run_hooks: bool) -> dict[str, Any]:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the copy
            os.close(read)
            try:
                # A fork reseeds `random` by itself (os.register_at_fork); a restore does not:
                # the copy starts from the snapshot's generator.
                random.setstate(snapshot)
                if run_hooks:
                    snapstart.run_after_restore()
                draw = {"random": random.random(), "id": str(uuid.uuid4()), "choice": random.getrandbits(64)}
                os.write(write, json.dumps(draw).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            drawn = json.loads(pipe.read())
        os.waitpid(pid, 0)
        return drawn

    first, second = restored_copy(True), restored_copy(True)
    assert first["random"] != second["random"] and first["choice"] != second["choice"]
    assert first["id"] != second["id"]
    # The control: the same two copies without the hooks share the snapshot's generator.
    assert restored_copy(False)["random"] == restored_copy(False)["random"]


def test_after_restore_drops_a_secret_cached_longer_than_its_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.reset()
    assert secrets.forget_expired() is False  # nothing cached
    now = time.time()
    monkeypatch.setattr(secrets, "_cached_since", now - secrets.SECRET_MAX_AGE_SECONDS + 60)
    snapstart.run_after_restore()
    assert secrets._cached_since is not None, "a value younger than its max age is kept"
    monkeypatch.setattr(secrets, "_cached_since", now - secrets.SECRET_MAX_AGE_SECONDS - 1)
    snapstart.run_after_restore()
    assert secrets._cached_since is None, "a value older than its max age must be read again"


def test_the_layer_does_not_ship_the_runtimes_hook_module() -> None:
    """The managed runtime runs the hooks registered in ITS snapshot_restore_py: a copy in the
    layer would take the registrations and nothing would run them."""
    requirements = (REPO_ROOT / "infra" / "layer" / "requirements.txt").read_text()
    constraints = (REPO_ROOT / "infra" / "layer" / "constraints.txt").read_text()
    assert "snapshot" not in requirements.lower() and "snapshot" not in constraints.lower()
    built = REPO_ROOT / ".aws-sam" / "build" / "SharedLayer" / "python"
    if built.is_dir():
        assert not list(Path(built).glob("snapshot_restore_py*"))
