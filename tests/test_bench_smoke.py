"""Every benchmark in bench/ still runs: each script's `--smoke` mode, as a subprocess.

A smoke run is tiny (a few hundred rows, 1-3 samples, a few seconds of load) but goes
through every code path and every correctness check of the script: a script that no longer
runs, or whose checks fail, fails here. No timing figure is judged (bench/README.md).
The scripts make and drop their own databases (bench/_support.py) and servers.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import time

import pytest

from shared.template import REPO_ROOT

BENCH = REPO_ROOT / "bench"
# Not scripts: the shared helpers.
NOT_SCRIPTS = {"__init__.py", "_support.py"}
SCRIPTS = ["changes.py", "cleanup.py", "connect.py", "list.py", "reminders.py", "round_trips.py", "run.py", "soak.py"]
NEEDS_SERVER_BINARIES = {"connect.py", "round_trips.py", "run.py"}  # their own TLS Postgres (shared/local/tls_postgres.py)
TIMEOUT = 300


def server_binaries() -> bool:
    """What tls_postgres() starts its server from: pg_config's bindir or a Debian one."""
    return bool(shutil.which("pg_config") or glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def test_every_bench_script_has_a_smoke_test():
    found = sorted(path.rsplit("/", 1)[-1] for path in glob.glob(str(BENCH / "*.py")))
    assert sorted(set(found) - NOT_SCRIPTS) == sorted(SCRIPTS), "list every bench script in SCRIPTS"


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script: str):
    if script in NEEDS_SERVER_BINARIES and not server_binaries():
        pytest.skip("no Postgres server binaries (initdb) for shared/local/tls_postgres.py")
    run_smoke(script)


def test_smoke_round_trips_with_direct_tls():
    """`--direct-tls` runs on its own server (PostgreSQL 18 with SSL, infra/install-postgres18.sh)."""
    if not (REPO_ROOT / ".tools" / "postgresql-18" / "bin" / "postgres").exists():
        pytest.skip("no .tools/postgresql-18: bash infra/install-postgres18.sh (make test runs it)")
    stdout = run_smoke("round_trips.py", "--direct-tls")
    assert "Server: PostgreSQL 18" in stdout


def run_smoke(script: str, *options: str) -> str:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(BENCH / script), "--smoke", *options],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the script still drops its database and stops its servers
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"bench/{script} --smoke ran over {TIMEOUT} s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    output = f"--- stdout\n{stdout[-6000:]}\n--- stderr\n{stderr[-6000:]}"
    assert process.returncode == 0, f"bench/{script} --smoke exited {process.returncode}\n{output}"
    assert "SMOKE RUN" in stdout, f"bench/{script} did not run in smoke mode\n{output}"
    print(f"bench/{script} --smoke {' '.join(options)}: {time.monotonic() - started:.1f} s")
    return stdout
