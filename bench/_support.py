"""What the bench scripts share: a scratch database, interleaved timing, the goals summary.

- `scratch_database(prefix)`: a database of its own on the Postgres at 127.0.0.1:5432 (or,
  when nothing listens there or TEST_POSTGRES=embedded, on a throwaway embedded Postgres),
  migrated by the project's own `shared.local.migrate.migrate()`, DATABASE_URL pointing at it
  while it lives; dropped at the end, also on Ctrl-C, SIGTERM or an error.
- `interrupts_as_keyboard_interrupt()`: SIGTERM (and SIGINT, even when started with `&`)
  raise KeyboardInterrupt, so that every `finally` runs; `main_exit()` turns it into 130.
- `interleaved(ops, rounds)`: every op once a round, in a new shuffled order each round, so
  that machine drift hits all alike; `median_ms`, `p90_ms`.
- `Goal`, `verdict`, `print_summary`: one way to print a ratio against its goal; `Checks`:
  the correctness checks, any failure of which fails the run (smoke runs included).
- `add_smoke_flag`: `--smoke`, the tiny run `tests/test_bench_smoke.py` makes of every script.

Importing it puts the repository on sys.path (the scripts run as `python bench/<name>.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import signal
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pg8000.native  # noqa: E402

K = TypeVar("K", bound=Hashable)
SMOKE_NOTE = "SMOKE RUN: tiny sizes and 1-3 samples, to exercise every code path; no figure here means anything"


def note(message: str) -> None:
    """What the helpers do (databases made and dropped) goes to stderr, apart from the results."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- interruption


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # SIG_IGN when started with `&`
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """The block (a cleanup) is not cut short by a second Ctrl-C or SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main_exit(main: Callable[[], int]) -> int:
    """Runs `main` with SIGTERM as Ctrl-C; an interruption exits 130 once cleanups have run."""
    try:
        with interrupts_as_keyboard_interrupt():
            return main()
    except KeyboardInterrupt:
        note("interrupted")
        return 130


# ----------------------------------------------------------------------------- database


@dataclass(frozen=True)
class Server:
    """A Postgres server this run may make databases on, as its superuser (trust auth)."""

    host: str
    port: int
    where: str  # for the report: "127.0.0.1:5432" or "embedded, port N"
    user: str = "postgres"

    def params(self, database: str) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "database": database}

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


@contextlib.contextmanager
def postgres_server() -> Iterator[Server]:
    """The server on 127.0.0.1:5432, else (or with TEST_POSTGRES=embedded) an embedded one."""
    if os.environ.get("TEST_POSTGRES") != "embedded" and listening("127.0.0.1", 5432):
        yield Server("127.0.0.1", 5432, "127.0.0.1:5432")
        return
    from shared.local.embedded_postgres import EmbeddedPostgres

    note("nothing listens on 127.0.0.1:5432: starting a throwaway embedded Postgres")
    with EmbeddedPostgres.temporary() as embedded:
        yield Server(embedded.host, embedded.port, f"embedded, port {embedded.port}")


@dataclass(frozen=True)
class Scratch:
    """The scratch database: its server, name and URL."""

    server: Server
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    @property
    def params(self) -> dict[str, Any]:
        return self.server.params(self.name)

    def connect(self) -> pg8000.native.Connection:
        """A direct connection (autocommit) as the server's superuser: row-level security
        does not bind it, so it sees and may change every row."""
        return pg8000.native.Connection(**self.params)

    def revision(self) -> str:
        connection = self.connect()
        try:
            return schema_revision(connection)
        finally:
            connection.close()


def set_database_url(url: str | None) -> None:
    """DATABASE_URL for the project's code in this process, its cached engine forgotten."""
    from shared import db

    if url is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = url
    db.reset()


def migrate(url: str) -> None:
    """The project's own migrations (`todo-api migrate`) on `url`, which DATABASE_URL keeps."""
    from shared.local.migrate import migrate as project_migrate

    set_database_url(url)
    project_migrate()


def schema_revision(connection: pg8000.native.Connection) -> str:
    """alembic_version, read on a direct connection as the login role: the project's own
    transactions run as todo_app (row-level security, migration 0004), which may not."""
    (revision,), = connection.run("SELECT version_num FROM alembic_version")
    return revision


@contextlib.contextmanager
def scratch_database(prefix: str, *, migrated: bool = True) -> Iterator[Scratch]:
    """`<prefix>_<random>` on postgres_server(), migrated unless told otherwise, with
    DATABASE_URL set to it; dropped (WITH (FORCE)) whatever happens, SIGTERM included."""
    previous_url = os.environ.get("DATABASE_URL")
    with interrupts_as_keyboard_interrupt(), postgres_server() as server:
        scratch = Scratch(server, f"{prefix}_{uuid.uuid4().hex[:8]}")
        admin = pg8000.native.Connection(**server.params("postgres"))
        try:
            admin.run(f"CREATE DATABASE {pg8000.native.identifier(scratch.name)}")
            note(f"created database {scratch.name} on {server.where}")
            set_database_url(scratch.url)
            if migrated:
                migrate(scratch.url)
            yield scratch
        finally:
            with uninterrupted():
                set_database_url(previous_url)
                try:
                    admin.run(f"DROP DATABASE IF EXISTS {pg8000.native.identifier(scratch.name)} WITH (FORCE)")
                    note(f"dropped database {scratch.name}")
                except Exception as error:  # noqa: BLE001 - say so, never mask the original error
                    note(f"could not drop database {scratch.name}: {error}")
                admin.close()


# ------------------------------------------------------------------------------- timing


def interleaved(ops: Mapping[K, Callable[[], float | None]], rounds: int,
                rng: random.Random | None = None) -> dict[K, list[float]]:
    """Seconds per op: each round runs every op once, in a new shuffled order.

    An op that returns a number has timed itself (the part that counts, in seconds);
    otherwise the whole call is timed here.
    """
    shuffle = (rng or random).shuffle
    times: dict[K, list[float]] = {key: [] for key in ops}
    order = list(ops.items())
    gc.collect()
    for _ in range(rounds):
        shuffle(order)
        for key, op in order:
            started = time.perf_counter()
            measured = op()
            times[key].append(time.perf_counter() - started if measured is None else measured)
    return times


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def p90_ms(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=10)[8] * 1000 if len(seconds) >= 2 else seconds[0] * 1000


# ------------------------------------------------------------------------------ summary


class Checks:
    """Correctness checks of a run: each printed `[ok]` or `[FAIL]`; any failure fails the run."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, ok: bool, message: str) -> bool:
        print(f"  [{'ok' if ok else 'FAIL'}] {message}")
        if not ok:
            self.failed.append(message)
        return ok

    def exit_status(self) -> int:
        print(f"\nchecks: {'all ok' if not self.failed else f'{len(self.failed)} FAILED'}")
        return 1 if self.failed else 0


@dataclass(frozen=True)
class Goal:
    """A ratio and the goal it is held to (`at_least`: the goal is a floor, not a ceiling)."""

    label: str
    ratio: float
    goal: float | None = None
    at_least: bool = False
    note: str = ""

    @property
    def met(self) -> bool:
        return self.goal is None or (self.ratio >= self.goal if self.at_least else self.ratio <= self.goal)


def verdict(ratio: float, goal: float, *, at_least: bool = False) -> str:
    met = ratio >= goal if at_least else ratio <= goal
    return f"goal {'>=' if at_least else '<='} {goal:.1f}: {'MET' if met else 'NOT MET'}"


def print_summary(title: str, goals: list[Goal], *, smoke: bool = False) -> None:
    """The ratios of a run, each against its goal, in one block at the end."""
    print(f"\n{title}")
    width = max((len(g.label) for g in goals), default=0) + 2
    for g in goals:
        if g.goal is None:
            judged = ""
        elif smoke:
            judged = f"  goal {'>=' if g.at_least else '<='} {g.goal:.1f}: not judged"
        else:
            judged = f"  {verdict(g.ratio, g.goal, at_least=g.at_least)}"
        print(f"   {g.label:<{width}}{g.ratio:7.2f}{judged}{f' ({g.note})' if g.note else ''}")
    if smoke:
        print(f"   ({SMOKE_NOTE})")


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run through every code path and every check (seconds): "
                             "its figures mean nothing; tests/test_bench_smoke.py runs it")
