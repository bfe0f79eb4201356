"""Round trips per HTTP route, counted through a delay proxy in front of a TLS + SCRAM Postgres.

    .venv/bin/python bench/round_trips.py                          # D = 10 ms one way, 7 samples, ~1 minute
    .venv/bin/python bench/round_trips.py --delay-ms 20 --samples 9
    .venv/bin/python bench/round_trips.py --smoke                  # every route answers; no figure asserted, < 30 s
    .venv/bin/python bench/round_trips.py --via-pgbouncer          # function -> relay -> PgBouncer -> Postgres
    .venv/bin/python bench/round_trips.py --direct-tls             # PostgreSQL 18, sslnegotiation=direct

A loopback benchmark cannot see round trips: on 127.0.0.1 one costs ~0.1 ms. Here every
byte between client and server goes through a relay (a separate process, 127.0.0.1 only,
stopped with this script) that forwards each chunk it reads, from either side, a fixed
one-way delay D after it read it, in order per direction. Each measured call runs at D and
at 0, interleaved in a new shuffled order every round, and

    round trips = (median at D - median at 0) / (2 D)

(`--baseline-ms B` compares D with B instead of 0: (median at D - median at B) / 2(D - B).)

The relay also counts turns on the wire (bytes from the server after bytes from the client)
inside each call's time window: an independent, integer count of the same thing, shown next
to the timed figure. The TCP handshake is not counted (the relay accepts on loopback and its
own upstream connect is not delayed): a real network adds 1 to every connect.

Measured, every figure from this run:
  - every HTTP function of template.yaml (shared/template.py), its real handler in process,
    a payload 2.0 event with a JWT `sub`, its own new connection through the relay
    (DATABASE_URL: verify-full against the test CA, SCRAM); CreateTask and CompleteTask also
    with a fresh Idempotency-Key per call;
  - the project's bare connect: shared.connect.connect_with_retry(parse_database_url(url)) + close;
  - checks of the relay: a simple-protocol `SELECT 1` on an open connection (1 round trip) and
    a parameterised pg8000 execute (3: Parse, Describe, Bind/Execute, each up to a Sync);
  - the naive baseline: psycopg (libpq) connect + the same SQL as separate statements (BEGIN;
    set_config; the statements; COMMIT) for GetTask, ListTasks and CreateTask, and GetTask's
    statements in ONE pipelined flight (psycopg pipeline mode) to show the goal is reachable;
  - a cold process: a fresh interpreter imports GetTask and makes its first and second call.

`--via-pgbouncer`: the functions' DATABASE_URL goes to the relay and the relay to a private
PgBouncer in transaction mode (shared/local/pgbouncer.py), which goes to the same TLS + SCRAM
Postgres: the delay sits on the Lambda-to-Neon-pooler hop. PgBouncer takes the clients over TLS
only (`client_tls_sslmode = require`, a certificate for localhost / 127.0.0.1 from the server's
throwaway CA, so the URL still says verify-full) and authenticates them with SCRAM-SHA-256
(`auth_type = scram-sha-256`, the password in plain text in its auth_file: pgbouncer 1.18 then
does SCRAM with the server too); its own connections to the server are TLS, verify-full.
Migrations still go straight to the server.

`--direct-tls`: the server is the PostgreSQL 18 with SSL of `.tools/postgresql-18` (`bash
infra/install-postgres18.sh`; `--server-bindir` names another 17+) and the functions' URL adds
`sslnegotiation=direct`: TLS at once with ALPN `postgresql`, no SSLRequest round trip (what
Neon takes); the psycopg rows get the same URL (their libpq must then be 17 or newer).

Goal (shared/CONTRACT.md, "Round trips"): each HTTP function does its database work in one
flight after the connection is authenticated: total <= connect + 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import json
import os
import platform
import random
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from queue import SimpleQueue
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DIRECT_TLS_BINDIR = REPO / ".tools" / "postgresql-18" / "bin"


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to its query string."""
    from urllib.parse import urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(query=query))

# --------------------------------------------------------------------------- the delay relay
# Runs in its own process (`--relay-child`): no GIL shared with the handler being timed.


class _Relayed:
    """One client connection and its upstream: four threads (a reader and a writer per direction)."""

    def __init__(self, relay: _Relay, client: socket.socket, upstream: socket.socket) -> None:
        self.relay, self.client, self.upstream = relay, client, upstream
        self.lock = threading.Lock()
        self.last_direction = ""
        # When the server's answer to a client flight was forwarded (stamped just before the
        # send). A turn after the client's last bytes (its Terminate) is the server's TLS
        # close_notify, which nobody waits for: report() leaves it out.
        self.turns: list[float] = []
        self.last_client_bytes = 0.0
        self.hops: list[tuple[float, float]] = []  # (read, forwarded) per chunk
        self.bytes = {"c2s": 0, "s2c": 0}
        self.running = 4
        self.closed = threading.Event()
        c2s: SimpleQueue[tuple[float, float, bytes | None, bool]] = SimpleQueue()
        s2c: SimpleQueue[tuple[float, float, bytes | None, bool]] = SimpleQueue()
        for target, args in (
            (self.read, (client, c2s, "c2s")), (self.write, (upstream, c2s)),
            (self.read, (upstream, s2c, "s2c")), (self.write, (client, s2c)),
        ):
            threading.Thread(target=target, args=args, daemon=True).start()

    def read(self, source: socket.socket, queue: SimpleQueue, direction: str) -> None:
        try:
            while True:
                data = source.recv(65536)
                now = time.monotonic()
                if not data:
                    break
                with self.lock:
                    turn = direction == "s2c" and self.last_direction == "c2s"
                    self.last_direction = direction
                    self.bytes[direction] += len(data)
                    if direction == "c2s":
                        self.last_client_bytes = now
                queue.put((now + self.relay.delay, now, data, turn))
        except OSError:
            pass
        finally:
            now = time.monotonic()
            queue.put((now + self.relay.delay, now, None, False))  # end of stream, after the data
            self.finished()

    def write(self, target: socket.socket, queue: SimpleQueue) -> None:
        try:
            while True:
                due, read_at, data, turn = queue.get()  # FIFO: order kept per direction
                while (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                if data is None:
                    with contextlib.suppress(OSError):
                        target.shutdown(socket.SHUT_WR)
                    break
                sending = time.monotonic()  # before sendall: the client cannot have it earlier
                target.sendall(data)
                with self.lock:
                    self.hops.append((read_at, sending))
                    if turn:
                        self.turns.append(sending)
        except OSError:  # a side went away: unblock every thread of this connection
            for sock in (self.client, self.upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        finally:
            self.finished()

    def finished(self) -> None:
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last:
            self.client.close()
            self.upstream.close()
            self.closed.set()

    def report(self) -> dict[str, Any]:
        with self.lock:
            closed = self.closed.is_set()
            waited = [t for t in self.turns if not closed or t < self.last_client_bytes]
            return {"turns": waited, "unwaited_turns": len(self.turns) - len(waited), "hops": list(self.hops),
                    "bytes": dict(self.bytes), "closed": closed}


class _Relay:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.delay = 0.0
        self.connections: list[_Relayed] = []
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))  # loopback only, a free port
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            relayed = _Relayed(self, client, upstream)
            with self.lock:
                self.connections.append(relayed)

    def collect(self, wait: float = 10.0) -> list[dict[str, Any]]:
        """The connections since the last collect, once each has closed (or after `wait`)."""
        with self.lock:
            taken, self.connections = self.connections, []
        deadline = time.monotonic() + wait
        for relayed in taken:
            relayed.closed.wait(max(0.0, deadline - time.monotonic()))
        return [relayed.report() for relayed in taken]


def relay_child(upstream_host: str, upstream_port: int, max_seconds: float) -> int:
    """The relay process: commands on stdin, one JSON answer per line on stdout; EOF stops it."""
    relay = _Relay((upstream_host, upstream_port))
    threading.Timer(max_seconds, lambda: os._exit(3)).start()  # never outlives a stuck parent
    out = sys.stdout
    out.write(json.dumps({"port": relay.port}) + "\n")
    out.flush()
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "delay":
            relay.delay = float(argument)
            answer: Any = "ok"
        elif command == "collect":
            answer = relay.collect()
        elif command == "quit":
            break
        else:
            answer = {"error": f"unknown command {command!r}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    relay.listener.close()
    os._exit(0)  # daemon threads of finished connections need no joining


class DelayRelay:
    """The parent's handle on the relay process."""

    def __init__(self, upstream_host: str, upstream_port: int, max_seconds: float = 3600.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), "--relay-child", upstream_host, str(upstream_port), str(max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.port = int(self._answer()["port"])
        self.delay = 0.0

    def _answer(self) -> Any:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the relay process stopped (exit {self.process.poll()})")
        return json.loads(line)

    def _ask(self, command: str) -> Any:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def set_delay(self, seconds: float) -> None:
        if seconds != self.delay:
            assert self._ask(f"delay {seconds!r}") == "ok"
            self.delay = seconds

    def collect(self) -> list[dict[str, Any]]:
        return self._ask("collect")

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process.stdout.close()

    def __enter__(self) -> DelayRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- what is measured


@dataclasses.dataclass
class Sample:
    seconds: float
    wire_turns: int
    hop_delays: list[float]  # forwarding - read, per chunk in the call's window
    connections: int


@dataclasses.dataclass
class Case:
    """One measured call. `prepare()` (untimed, at D=0) returns the timed op and an untimed cleanup."""

    label: str
    group: str  # "route" | "connect" | "check" | "psycopg"
    prepare: Callable[[], tuple[Callable[[], None], Callable[[], None]]]
    function: str | None = None
    over: str | None = None  # which connect row the "over connect" column subtracts
    samples: dict[float, list[Sample]] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(case: Case, relay: DelayRelay, delay: float) -> None:
    relay.set_delay(0.0)
    try:
        op, cleanup = case.prepare()
    except Exception as error:  # noqa: BLE001 - a fixture that fails is a failed route
        case.failures.append(f"prepare: {type(error).__name__}: {error}")
        relay.collect()
        return
    relay.set_delay(delay)
    started = time.monotonic()
    try:
        op()
    except Exception as error:  # noqa: BLE001 - reported in the table and the exit status
        case.failures.append(f"{type(error).__name__}: {error}")
    ended = time.monotonic()
    relay.set_delay(0.0)
    with contextlib.suppress(Exception):
        cleanup()
    connections = relay.collect()
    turns = sum(1 for c in connections for t in c["turns"] if started <= t <= ended)
    hops = [sent - read for c in connections for read, sent in c["hops"] if started <= read <= ended]
    touched = sum(1 for c in connections if any(started <= read <= ended for read, _ in c["hops"]))
    case.samples.setdefault(delay, []).append(Sample(ended - started, turns, hops, touched))


# --------------------------------------------------------------------------- the project's side


class Project:
    """The project's modules and the real handlers, imported once the environment is set."""

    def __init__(self, direct_url: str, relay_url: str) -> None:
        from shared import connect, db  # the engine's connect: shared/connect.py (since the one-flight rewrite)
        from shared.local.lambda_context import FakeLambdaContext
        from shared.local.apigw import build_http_event, response_json
        from shared.template import http_routes

        self.db, self.connect = db, connect
        self.context, self.build_event, self.response_json = FakeLambdaContext, build_http_event, response_json
        self.direct_url, self.relay_url = direct_url, relay_url
        self.routes = {function.logical_id: (route, function) for route, function in http_routes()}
        self.handlers: dict[str, Any] = {}
        self.devnull = open(os.devnull, "w")  # noqa: SIM115 - closed by close()

    def close(self) -> None:
        self.devnull.close()

    def handler(self, function: str) -> Any:
        if function not in self.handlers:
            self.handlers[function] = self.routes[function][1].load_handler()
        return self.handlers[function]

    def event(self, function: str, user: str | None, ids: dict[str, str] | None = None, body: Any = None,
              headers: dict[str, str] | None = None, query: str = "") -> dict[str, Any]:
        route, _ = self.routes[function]
        path = route.path
        for name, value in {"user_id": "me", **(ids or {})}.items():
            path = path.replace("{" + name + "}", value)
        all_headers = {"accept": "application/json", "host": "bench.execute-api.us-east-1.amazonaws.com",
                       "user-agent": "bench/round_trips.py", **(headers or {})}
        raw = None
        if body is not None:
            raw = json.dumps(body).encode()
            all_headers["content-type"] = "application/json"
        claims = None if route.public else {"sub": user, "email": f"{user}@example.com"}
        if claims is not None:
            all_headers["authorization"] = "Bearer header.payload.signature"
        return self.build_event(method=route.method, path=path, route_path=route.path, raw_query=query,
                                headers=all_headers, body=raw, claims=claims)

    def invoke(self, function: str, event: dict[str, Any], status: int) -> dict[str, Any]:
        handler = self.handler(function)
        with contextlib.redirect_stdout(self.devnull):  # Powertools' EMF line
            response = handler(event, self.context(function))
        if response["statusCode"] != status:
            raise AssertionError(f"{function} answered {response['statusCode']} (expected {status}): "
                                 f"{str(response.get('body'))[:300]}")
        return response

    def call(self, function: str, user: str | None, status: int, **event_args: Any) -> Any:
        response = self.invoke(function, self.event(function, user, **event_args), status)
        return self.response_json(response) if response.get("body") else None


@dataclasses.dataclass
class Fixtures:
    reader: str  # owns tasks and categories that reads and in-place writes use
    writer: str  # creates land here, so the reader's lists never grow
    pool_user: str  # owns the tasks and categories deleted / restored, one per call
    tasks: list[str]
    categories: list[str]
    to_delete: list[str]
    to_restore: list[str]
    categories_to_delete: list[str]


TASK_ROUTES_USING = {"GetTask": 0, "ReplaceTask": 1, "UpdateTask": 2, "CompleteTask": 3, "CompleteTask+key": 4}


def make_fixtures(project: Project, calls_per_pool: int) -> Fixtures:
    """Everything each route needs, made through the real handlers (untimed, at D=0)."""
    tag = uuid.uuid4().hex[:8]
    f = Fixtures(reader=f"rt-reader-{tag}", writer=f"rt-writer-{tag}", pool_user=f"rt-pool-{tag}",
                 tasks=[], categories=[], to_delete=[], to_restore=[], categories_to_delete=[])
    for i in range(3):
        f.categories.append(project.call("CreateCategory", f.reader, 201,
                                         body={"name": f"Category {i}", "color": "#3366cc"})["id"])
    for i in range(20):
        body = {"title": f"Task {i}", "description": "made by bench/round_trips.py",
                "priority": ["low", "medium", "high"][i % 3], "due_at": f"2027-01-{i % 28 + 1:02d}T12:00:00Z",
                "tags": ["bench", f"t{i % 4}"], "category_id": f.categories[i % 3]}
        f.tasks.append(project.call("CreateTask", f.reader, 201, body=body)["id"])
    for task_id in f.tasks[-5:]:  # the reader's trash: ListTrash reads 5 rows every time
        project.call("DeleteTask", f.reader, 204, ids={"task_id": task_id})
    del f.tasks[-5:]
    for _ in range(calls_per_pool):
        f.to_delete.append(project.call("CreateTask", f.pool_user, 201, body={"title": "to delete"})["id"])
        restore = project.call("CreateTask", f.pool_user, 201, body={"title": "to restore"})["id"]
        project.call("DeleteTask", f.pool_user, 204, ids={"task_id": restore})
        f.to_restore.append(restore)
        f.categories_to_delete.append(
            project.call("CreateCategory", f.pool_user, 201, body={"name": f"doomed {uuid.uuid4().hex[:10]}"})["id"])
    return f


def route_cases(project: Project, f: Fixtures) -> dict[str, Case]:
    """One case per HTTP function of template.yaml (plus the two with an Idempotency-Key)."""
    cases: dict[str, Case] = {}

    def add(label: str, function: str, status: int, make: Callable[[], dict[str, Any]]) -> None:
        def prepare() -> tuple[Callable[[], None], Callable[[], None]]:
            event = make()  # untimed: the event (and any fixture it takes from a pool)
            return (lambda: project.invoke(function, event, status)), (lambda: None)

        route, _ = project.routes[function]
        cases[label] = Case(label=f"{label:<17} {route.method} {route.path}", group="route", prepare=prepare,
                            function=function, over="connect")

    def key() -> dict[str, str]:
        return {"idempotency-key": f"rt-{uuid.uuid4()}"}

    reader, writer, pool = f.reader, f.writer, f.pool_user
    task = {name: {"task_id": f.tasks[i]} for name, i in TASK_ROUTES_USING.items()}
    category = {"category_id": f.categories[0]}
    add("Health", "Health", 200, lambda: project.event("Health", None))
    add("ListTasks", "ListTasks", 200, lambda: project.event("ListTasks", reader))
    add("CreateTask", "CreateTask", 201, lambda: project.event(
        "CreateTask", writer, body={"title": f"Created {uuid.uuid4().hex[:8]}", "priority": "high", "tags": ["bench"]}))
    add("CreateTask+key", "CreateTask", 201, lambda: project.event(
        "CreateTask", writer, body={"title": f"Created {uuid.uuid4().hex[:8]}", "priority": "high", "tags": ["bench"]},
        headers=key()))
    add("GetTask", "GetTask", 200, lambda: project.event("GetTask", reader, ids=task["GetTask"]))
    add("ReplaceTask", "ReplaceTask", 200, lambda: project.event(
        "ReplaceTask", reader, ids=task["ReplaceTask"],
        body={"title": f"Replaced {uuid.uuid4().hex[:8]}", "priority": "low", "tags": ["bench", "put"]}))
    add("UpdateTask", "UpdateTask", 200, lambda: project.event(
        "UpdateTask", reader, ids=task["UpdateTask"], body={"title": f"Updated {uuid.uuid4().hex[:8]}"}))
    add("DeleteTask", "DeleteTask", 204, lambda: project.event("DeleteTask", pool, ids={"task_id": f.to_delete.pop()}))
    add("CompleteTask", "CompleteTask", 200, lambda: project.event("CompleteTask", reader, ids=task["CompleteTask"]))
    add("CompleteTask+key", "CompleteTask", 200, lambda: project.event(
        "CompleteTask", reader, ids=task["CompleteTask+key"], headers=key()))
    moves = itertools.cycle([f.tasks[6], f.tasks[7]])  # task 5 goes after one, then the other: a real move each call
    add("MoveTask", "MoveTask", 200, lambda: project.event(
        "MoveTask", reader, ids={"task_id": f.tasks[5]}, body={"parent_id": None, "after": next(moves)}))
    add("ListTrash", "ListTrash", 200, lambda: project.event("ListTrash", reader))
    add("RestoreTask", "RestoreTask", 200, lambda: project.event("RestoreTask", pool, ids={"task_id": f.to_restore.pop()}))
    add("ListCategories", "ListCategories", 200, lambda: project.event("ListCategories", reader))
    add("ListChanges", "ListChanges", 200, lambda: project.event("ListChanges", reader))
    add("CreateCategory", "CreateCategory", 201, lambda: project.event(
        "CreateCategory", writer, body={"name": f"Made {uuid.uuid4().hex[:10]}"}))
    add("GetCategory", "GetCategory", 200, lambda: project.event("GetCategory", reader, ids=category))
    add("UpdateCategory", "UpdateCategory", 200, lambda: project.event(
        "UpdateCategory", reader, ids={"category_id": f.categories[1]}, body={"name": f"Renamed {uuid.uuid4().hex[:10]}"}))
    add("DeleteCategory", "DeleteCategory", 204, lambda: project.event(
        "DeleteCategory", pool, ids={"category_id": f.categories_to_delete.pop()}))
    # POST /mcp: a tool call as an MCP client sends it (JSON-RPC; JSON answers accepted).
    mcp_headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}

    def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}

    add("Mcp add_task", "Mcp", 200, lambda: project.event(
        "Mcp", writer, headers=mcp_headers, body=tool_call("add_task", {"title": f"By MCP {uuid.uuid4().hex[:8]}"})))
    add("Mcp list_tasks", "Mcp", 200, lambda: project.event("Mcp", reader, headers=mcp_headers, body=tool_call("list_tasks", {})))
    add("ProtectedResource", "ProtectedResource", 200, lambda: project.event("ProtectedResource", None))
    cases["ProtectedResource"].over = None  # reads no database: nothing to count over the connect
    missing = sorted(set(project.routes) - {c.function for c in cases.values()})
    if missing:  # a route added to template.yaml must be measured too
        raise SystemExit(f"bench/round_trips.py has no case for HTTP function(s) {', '.join(missing)}: add one")
    return cases


def project_cases(project: Project) -> dict[str, Case]:
    connect = project.connect
    params = connect.parse_database_url(project.relay_url)
    timeout = params.connect_timeout or 10.0

    def bare_connect() -> tuple[Callable[[], None], Callable[[], None]]:
        op = lambda: connect.connect_with_retry(connect.parse_database_url(project.relay_url), timeout).close()  # noqa: E731
        return op, (lambda: None)

    def on_open_connection(run: Callable[[Any], None]) -> Callable[[], tuple[Callable[[], None], Callable[[], None]]]:
        def prepare() -> tuple[Callable[[], None], Callable[[], None]]:
            connection = connect.connect_once(params, timeout)  # at D=0, untimed
            return (lambda: run(connection)), connection.close

        return prepare

    def simple_select(connection: Any) -> None:
        assert connection.execute_simple("SELECT 1").rows == [[1]]

    def parameterised(connection: Any) -> None:
        assert connection.execute_unnamed("SELECT 1").rows == [[1]]

    return {
        "connect": Case("bare connect: shared.connect.connect_with_retry + close", "connect", bare_connect),
        "select1": Case("check: SELECT 1, simple query, open connection (expect 1)", "check",
                        on_open_connection(simple_select)),
        "extended": Case("check: pg8000 execute_unnamed, open connection (expect 3)", "check",
                         on_open_connection(parameterised)),
    }


# --------------------------------------------------------------------------- the naive baseline

TASK_COLUMNS = ("id, user_id, title, description, completed, completed_at, priority, due_at, category_id, tags, "
                "created_at, updated_at, deleted_at, version")
PER_TRANSACTION = ("SELECT set_config('statement_timeout', %s, true), set_config('app.user_id', %s, true), "
                   "set_config('role', %s, true)")
UPSERT_USER = ("INSERT INTO users (id, email, created_at) VALUES (%s, %s, now()) ON CONFLICT (id) DO UPDATE "
               "SET email = EXCLUDED.email WHERE EXCLUDED.email IS NOT NULL AND users.email IS DISTINCT FROM EXCLUDED.email")


def psycopg_cases(psycopg: Any, relay_url: str, f: Fixtures) -> dict[str, Case]:
    """libpq, connect + each statement on its own (BEGIN; set_config; ...; COMMIT): what naive costs."""

    def per_transaction(user: str) -> tuple[str, str, str]:
        return ("5000ms", user, "todo_app")

    def get_task(connection: Any) -> None:
        connection.execute("BEGIN")
        connection.execute(PER_TRANSACTION, per_transaction(f.reader))
        row = connection.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE user_id = %s AND id = %s AND deleted_at IS NULL",
                                 (f.reader, f.tasks[0])).fetchone()
        connection.execute("COMMIT")
        assert row is not None, "GetTask's task not found"

    def list_tasks(connection: Any) -> None:
        connection.execute("BEGIN")
        connection.execute(PER_TRANSACTION, per_transaction(f.reader))
        rows = connection.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE user_id = %s AND deleted_at IS NULL "
                                  "ORDER BY created_at DESC, id DESC LIMIT 51", (f.reader,)).fetchall()
        connection.execute("COMMIT")
        assert len(rows) == len(f.tasks), len(rows)

    def create_task(connection: Any) -> None:
        connection.execute("BEGIN")
        connection.execute(PER_TRANSACTION, per_transaction(f.writer))
        connection.execute(UPSERT_USER, (f.writer, f"{f.writer}@example.com"))
        row = connection.execute(
            f"INSERT INTO tasks (id, user_id, title, priority, tags, created_at, updated_at) "
            f"VALUES (%s, %s, %s, 2, %s, now(), now()) RETURNING {TASK_COLUMNS}",
            (uuid.uuid4(), f.writer, f"psycopg {uuid.uuid4().hex[:8]}", ["bench"])).fetchone()
        connection.execute("COMMIT")
        assert row is not None

    def get_task_pipelined(connection: Any) -> None:
        with connection.pipeline():
            connection.execute("BEGIN")
            connection.execute(PER_TRANSACTION, per_transaction(f.reader))
            cursor = connection.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE user_id = %s AND id = %s AND deleted_at IS NULL",
                (f.reader, f.tasks[0]))
            connection.execute("COMMIT")
        assert cursor.fetchone() is not None, "GetTask's task not found"

    def with_connection(run: Callable[[Any], None] | None) -> Callable[[], tuple[Callable[[], None], Callable[[], None]]]:
        def op() -> None:
            connection = psycopg.connect(relay_url, autocommit=True)  # BEGIN/COMMIT sent explicitly
            try:
                if run is not None:
                    run(connection)
            finally:
                connection.close()

        return lambda: (op, lambda: None)

    return {
        "psycopg connect": Case("psycopg connect + close", "psycopg", with_connection(None)),
        "psycopg GetTask": Case("psycopg naive GetTask (4 statements)", "psycopg", with_connection(get_task),
                                over="psycopg connect"),
        "psycopg ListTasks": Case("psycopg naive ListTasks (4 statements)", "psycopg", with_connection(list_tasks),
                                  over="psycopg connect"),
        "psycopg CreateTask": Case("psycopg naive CreateTask (5 statements)", "psycopg", with_connection(create_task),
                                   over="psycopg connect"),
        "psycopg GetTask pipelined": Case("psycopg GetTask, 4 statements in ONE pipelined flight", "psycopg",
                                          with_connection(get_task_pipelined), over="psycopg connect"),
    }


# --------------------------------------------------------------------------- a cold process

COLD_CHILD = r"""
import contextlib, json, os, sys, time
repo, function, status, first_event, second_event = sys.argv[1:6]
sys.path.insert(0, repo)
t0 = time.monotonic()
from shared.local.lambda_context import FakeLambdaContext
from shared.template import functions
handler = functions()[function].load_handler()
t1 = time.monotonic()
windows, statuses = [], []
with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
    for event in (first_event, second_event):
        event = json.loads(event)
        started = time.monotonic()
        response = handler(event, FakeLambdaContext(function))
        windows.append((started, time.monotonic()))
        statuses.append(response["statusCode"])
print(json.dumps({"import": t1 - t0, "windows": windows, "statuses": statuses}))
"""


def cold_runs(project: Project, relay: DelayRelay, f: Fixtures, delays: list[float], rounds: int) -> dict[str, Any]:
    """A fresh interpreter per run: import GetTask's module, first call, second call (same event)."""
    function, status = "GetTask", 200
    event = json.dumps(project.event(function, f.reader, ids={"task_id": f.tasks[0]}))
    env = {**os.environ, "DATABASE_URL": project.relay_url}
    results: dict[float, list[dict[str, Any]]] = {d: [] for d in delays}
    failures: list[str] = []
    order = [d for d in delays for _ in range(rounds)]
    random.shuffle(order)
    for delay in order:
        relay.set_delay(delay)
        child = subprocess.run([sys.executable, "-c", COLD_CHILD, str(REPO), function, str(status), event, event],
                               env=env, capture_output=True, text=True, timeout=120)
        relay.set_delay(0.0)
        connections = relay.collect()
        if child.returncode != 0:
            failures.append(f"cold child exited {child.returncode}: {child.stderr.strip()[-400:]}")
            continue
        out = json.loads(child.stdout.strip().splitlines()[-1])
        if out["statuses"] != [status, status]:
            failures.append(f"cold {function} answered {out['statuses']}")
            continue
        calls = []
        for started, ended in out["windows"]:
            turns = sum(1 for c in connections for t in c["turns"] if started <= t <= ended)
            calls.append({"seconds": ended - started, "turns": turns})
        outside = sum(1 for c in connections for t in c["turns"]
                      if not any(s <= t <= e for s, e in out["windows"]))
        results[delay].append({"import": out["import"], "calls": calls, "turns_outside_calls": outside})
    return {"function": function, "results": results, "failures": failures}


# --------------------------------------------------------------------------- the report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def figures(case: Case, delay: float, base: float) -> dict[str, Any] | None:
    at_d, at_0 = case.samples.get(delay, []), case.samples.get(base, [])
    if not at_d or not at_0 or case.failures:
        return None
    turns = sorted({s.wire_turns for s in at_d})
    return {
        "rt": (med([s.seconds for s in at_d]) - med([s.seconds for s in at_0])) / (2 * (delay - base)),
        "ms0": med([s.seconds for s in at_0]) * 1000,
        "msd": med([s.seconds for s in at_d]) * 1000,
        "wire": turns,
        "wire_median": med([s.wire_turns for s in at_d]),
        "connections": med([s.connections for s in at_d]),
    }


def goal_met(figure: dict[str, Any], connect: dict[str, Any]) -> bool:
    """One flight on top of the connect in every sample, by the wire count: exact, and immune to the
    machine's load. The timed figure is its check (a row where the two differ is flagged)."""
    return figure["wire"][-1] <= connect["wire"][-1] + 1


def wire_text(turns: list[int]) -> str:
    return str(turns[0]) if len(turns) == 1 else f"{turns[0]}-{turns[-1]}"


def report(cases: dict[str, Case], delay: float, base: float, samples: int, smoke: bool, cold: dict[str, Any] | None,
           header: list[str]) -> int:
    """Prints the tables; returns the number of problems (failed calls, a relay check out of range)."""
    problems = 0
    print("=" * 118)
    print("bench/round_trips.py: database round trips per call, through a delay relay (every figure from this run)")
    for line in header:
        print(line)
    b = f"{base * 1000:g}"
    print(f"D = {delay * 1000:g} ms one way ({2 * delay * 1000:g} ms per round trip), baseline B = {b} ms; {samples} sample(s) "
          "at D and at B per row, interleaved in a new shuffled order each round; "
          f"round trips = (median at D - median at B) / 2(D - B)")
    print("wire = turns the relay saw in the call's window (server bytes after client bytes): an integer count of the same thing")
    if smoke:
        print("SMOKE RUN: tiny D and sample count; the figures below are NOT measurements, only a check that every route answers")

    fig = {name: figures(case, delay, base) for name, case in cases.items()}
    connect = fig.get("connect")
    print()
    print(f"{'':<66}{'timed':>14}{'wire turns':>12}")
    print(f"{'route (real handler, own connection)':<66}{'total':>7}{'over':>7}{'total':>6}{'over':>6}"
          f"{'goal':>6}{'met':>5}{'ms@B':>9}{'ms@D':>9}")

    def row(name: str, case: Case, goal: bool) -> None:
        nonlocal problems
        figure = fig[name]
        if figure is None:
            problems += 1
            print(f"{case.label:<66}  FAILED: {'; '.join(case.failures)[:300] or 'no samples'}")
            return
        base = fig.get(case.over) if case.over else None
        over = f"{figure['rt'] - base['rt']:+7.1f}" if base else f"{'':>7}"
        wire_over = f"{figure['wire'][-1] - base['wire'][-1]:+6d}" if base else f"{'':>6}"
        goal_text, met = f"{'':>6}", f"{'':>5}"
        if goal and base:
            goal_text = f"{base['wire'][-1] + 1:6d}"
            met = f"{'yes' if goal_met(figure, base) else 'no':>5}"
        flag = " *" if abs(figure["rt"] - figure["wire_median"]) > 0.5 else ""
        print(f"{case.label:<66}{figure['rt']:7.1f}{over}{wire_text(figure['wire']):>6}{wire_over}{goal_text}{met}"
              f"{figure['ms0']:9.1f}{figure['msd']:9.1f}{flag}")

    for name, case in cases.items():
        if case.group == "route":
            row(name, case, goal=True)
    print()
    print("references, measured in the same rounds")
    for group in ("connect", "check", "psycopg"):
        for name, case in cases.items():
            if case.group == group:
                row(name, case, goal=False)

    for name, expected in (("select1", 1), ("extended", 3)):
        figure = fig.get(name)
        if figure is None:
            continue
        ok = abs(figure["rt"] - expected) <= 0.3 and figure["wire"] == [expected]
        if not ok and not smoke:
            problems += 1
        print(f"relay check {name}: {figure['rt']:.2f} round trips timed, wire {wire_text(figure['wire'])}, "
              f"expected {expected}: {'ok' if ok else 'OUT OF RANGE' + (' (ignored in a smoke run)' if smoke else '')}")
    hops_d = [h for case in cases.values() for s in case.samples.get(delay, []) for h in s.hop_delays]
    hops_0 = [h for case in cases.values() for s in case.samples.get(base, []) for h in s.hop_delays]
    if hops_d and hops_0:
        effective = statistics.mean(hops_d) - statistics.mean(hops_0)
        print(f"relay hop delay: mean {statistics.mean(hops_d) * 1000:.3f} ms at D, {statistics.mean(hops_0) * 1000:.3f} ms "
              f"at B ({len(hops_d)} and {len(hops_0)} chunks): effective D - B = {effective * 1000:.3f} ms "
              f"({(effective / (delay - base) - 1) * 100:+.1f}% vs nominal; the figures use nominal D - B)")
    per_call = {name: sorted({s.connections for s in case.samples.get(delay, [])})
                for name, case in cases.items() if case.group == "route"}
    other = {name: counts for name, counts in per_call.items() if counts and counts != [1]}
    print("connections per call: 1 in every route row" if not other
          else "connections per call, rows not at 1: " + ", ".join(f"{n} {c}" for n, c in other.items()))
    if connect:
        print(f"goal: connect + 1 = {connect['wire'][-1] + 1} round trips (shared/CONTRACT.md, 'Round trips'); met = every "
              "sample's wire count <= the connect's + 1 (exact; the timed figure is its check, see *)")
    print("* = the timed figure and the wire count differ by more than 0.5: noise from other jobs on the machine (timed "
          "figures drift up under load; --baseline-ms helps), or a wait the wire count does not see")

    if cold is not None:
        print()
        print(f"cold process: a fresh `{Path(sys.executable).name} -c` imports {cold['function']}'s module and calls it twice "
              "(same event), its own new connection each call")
        for failure in cold["failures"]:
            problems += 1
            print(f"   FAILED: {failure}")
        runs_d, runs_0 = cold["results"].get(delay, []), cold["results"].get(base, [])
        if runs_d and runs_0:
            connect_rt = connect["rt"] if connect else None
            for index, name in ((0, "first call"), (1, "second call")):
                t_d = med([r["calls"][index]["seconds"] for r in runs_d])
                t_0 = med([r["calls"][index]["seconds"] for r in runs_0])
                rt = (t_d - t_0) / (2 * (delay - base))
                turns = sorted({r["calls"][index]["turns"] for r in runs_d})
                over = f", {rt - connect_rt:+.1f} over the bare connect" if connect_rt is not None else ""
                print(f"   {name:<12} {rt:6.1f} round trips{over}  (wire {wire_text(turns)}; {t_0 * 1000:.1f} ms at B, "
                      f"{t_d * 1000:.1f} ms at D; {len(runs_d)}+{len(runs_0)} processes)")
            outside = max(r["turns_outside_calls"] for r in runs_d + runs_0)
            imports = med([r["import"] for r in runs_d + runs_0]) * 1000
            print(f"   import of the function: {imports:.0f} ms (median); database turns outside the two calls: {outside}")
    return problems


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=None, help="one-way delay D in ms (default 10; 2 with --smoke)")
    parser.add_argument("--baseline-ms", type=float, default=0.0,
                        help="the baseline delay B the D figures are compared with (default 0: round trips = "
                             "(t(D) - t(0)) / 2D). A B > 0 gives both sides the same number of sleeps and wake-ups")
    parser.add_argument("--samples", type=int, default=None, help="samples per row at D and at B (default 7; 1 with --smoke)")
    parser.add_argument("--cold-samples", type=int, default=None,
                        help="cold processes at D and at B each (default 3; 1 with --smoke; 0 skips)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run: checks every route answers with its success status; asserts no figure")
    parser.add_argument("--functions", help="comma-separated route rows to run (e.g. GetTask,Health); the connect row always runs")
    parser.add_argument("--no-psycopg", action="store_true", help="skip the psycopg baseline rows")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a route misses its goal (by the wire count) too")
    parser.add_argument("--via-pgbouncer", action="store_true",
                        help="put a private PgBouncer (transaction mode, TLS + SCRAM to the client) behind the relay, "
                             "in front of the server: the delay is then the function-to-pooler hop")
    parser.add_argument("--direct-tls", action="store_true",
                        help="PostgreSQL 17+ with SSL (default .tools/postgresql-18) and sslnegotiation=direct in the functions' URL")
    parser.add_argument("--server-bindir", type=Path, default=None,
                        help="the server's bin directory (default: the system's; with --direct-tls .tools/postgresql-18/bin)")
    args = parser.parse_args(argv)
    if args.direct_tls and args.via_pgbouncer:
        parser.error("--direct-tls and --via-pgbouncer: PgBouncer takes no direct TLS; pick one")
    bindir = args.server_bindir or (DIRECT_TLS_BINDIR if args.direct_tls else None)
    if bindir is not None and not (bindir / "postgres").exists():
        raise SystemExit(f"no server binaries in {bindir}: bash infra/install-postgres18.sh")
    delay = (args.delay_ms if args.delay_ms is not None else (2.0 if args.smoke else 10.0)) / 1000
    samples = args.samples if args.samples is not None else (1 if args.smoke else 7)
    cold_samples = args.cold_samples if args.cold_samples is not None else (1 if args.smoke else 3)
    base = args.baseline_ms / 1000
    if delay <= 0 or not 0 <= base < delay or samples < 1 or cold_samples < 0:
        parser.error("--delay-ms must be > 0, 0 <= --baseline-ms < --delay-ms, --samples >= 1, --cold-samples >= 0")

    # Before anything imports shared.observability (Powertools reads them at import).
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "todo-api")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "TodoApi")
    os.environ.setdefault("JWT_ISSUER", "https://issuer.bench.test/")  # what the template gives ProtectedResource
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from shared.local.tls_postgres import tls_postgres

    started = time.monotonic()
    previous_url = os.environ.get("DATABASE_URL")
    try:
        with tls_postgres(bindir=bindir) as server, contextlib.ExitStack() as stack:
            upstream, bouncer = server.port, None
            if args.via_pgbouncer:
                bouncer = stack.enter_context(pgbouncer_for(server))
                upstream = bouncer.port
                log(f"PgBouncer (transaction mode, TLS + SCRAM) on 127.0.0.1:{bouncer.port} in front of the server")
            relay = stack.enter_context(DelayRelay("127.0.0.1", upstream))
            log(f"Postgres {server.server_version} (TLS + SCRAM) on :{server.port}, relay on 127.0.0.1:{relay.port}")
            relay_url = dataclasses.replace(server, port=relay.port).url
            if args.direct_tls:
                relay_url = with_query(relay_url, sslnegotiation="direct")
            return run(args, server, relay, relay_url, delay, base, samples, cold_samples, started, bouncer)
    finally:
        if previous_url is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous_url


def pgbouncer_for(server: Any) -> Any:
    """A private PgBouncer in front of `server` (shared/local/tls_postgres.py's): TLS + SCRAM to its clients with
    a certificate from the server's CA, SCRAM and TLS (verify-full) to the server. Not started."""
    from shared.local.pgbouncer import INSTALL_HINT, PgBouncer, find_binary

    if find_binary() is None:
        raise SystemExit(f"--via-pgbouncer: pgbouncer is not installed ({INSTALL_HINT})")
    return PgBouncer("127.0.0.1", server.port, server.user, password=server.password,
                     client_tls=server.ca.issue(), server_tls_ca=server.ca_path,
                     ssl_context=ssl.create_default_context(cafile=server.ca_path))


def pgbouncer_version(bouncer: Any) -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run([bouncer.binary, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.split("\n")[0].strip()
    return "PgBouncer"


def run(args: argparse.Namespace, server: Any, relay: DelayRelay, relay_url: str, delay: float, base: float,
        samples: int, cold_samples: int, started: float, bouncer: Any = None) -> int:
    from shared import db
    from shared.local.migrate import migrate

    os.environ["DATABASE_URL"] = server.url  # migrations go straight to the server
    db.reset()
    with contextlib.redirect_stdout(sys.stderr):
        migrate()
    os.environ["DATABASE_URL"] = relay_url  # every handler from now on goes through the relay
    db.reset()

    project = Project(server.url, relay_url)
    try:
        warmups = 1
        log("Making fixtures through the real handlers ...")
        fixtures = make_fixtures(project, calls_per_pool=2 * samples + warmups)
        cases = route_cases(project, fixtures)
        if args.functions:
            wanted = {name.strip() for name in args.functions.split(",")}
            unknown = wanted - set(cases)
            if unknown:
                raise SystemExit(f"--functions: no rows {sorted(unknown)}; there are {', '.join(cases)}")
            cases = {name: case for name, case in cases.items() if name in wanted}
        cases.update(project_cases(project))
        psycopg = None
        if not args.no_psycopg:
            try:
                import psycopg  # the dev extra
            except ImportError:
                raise SystemExit("psycopg is missing: .venv/bin/pip install -e '.[dev]' (or run with --no-psycopg)") from None

            cases.update(psycopg_cases(psycopg, relay_url, fixtures))

        # Warm-up at D=0 (untimed): the engine's first connect (dialect initialisation), every
        # handler's first request, psycopg's first connect. A failure here is reported below.
        log(f"Warm-up, then {samples} round(s) of {len(cases)} rows x 2 delays ...")
        for case in cases.values():
            measure(case, relay, 0.0)
            case.samples.clear()
        gc.collect()
        order = [(case, d) for case in cases.values() for d in (base, delay)]
        for number in range(samples):
            random.shuffle(order)
            for case, d in order:
                if not case.failures:
                    measure(case, relay, d)
            log(f"  round {number + 1}/{samples} done ({time.monotonic() - started:.0f} s)")

        cold = None
        if cold_samples:
            log(f"Cold processes: {cold_samples} at D and {cold_samples} at B ...")
            cold = cold_runs(project, relay, fixtures, [base, delay], cold_samples)

        import pg8000
        import sqlalchemy

        header = [
            f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs, shared; Python {platform.python_version()}",
            f"Stack: pg8000 {pg8000.__version__}, SQLAlchemy {sqlalchemy.__version__}"
            + (f", psycopg {psycopg.__version__} (libpq {psycopg.pq.version()})" if psycopg else "")
            + f", {ssl.OPENSSL_VERSION}",
            (f"Server: PostgreSQL {server.server_version} ({server.bindir}), TLS only, verify-full against its own CA, "
             "SCRAM-SHA-256; the relay on 127.0.0.1 in front of it (a separate process)") if bouncer is None else
            (f"Server: PostgreSQL {server.server_version} ({server.bindir}), TLS + SCRAM-SHA-256, behind {pgbouncer_version(bouncer)} "
             "(pool_mode = transaction; clients: TLS required, verify-full against the same CA, auth_type = scram-sha-256; "
             "to the server: TLS verify-full, SCRAM)"),
            *([f"VIA PGBOUNCER: function -> relay (the delay: the function-to-pooler hop) -> PgBouncer -> Postgres; "
               "the pooler's server connections stay open, so their cost is not in any row"] if bouncer is not None else []),
            f"Bare connect: {project.connect.__name__}.connect_with_retry(parse_database_url(url), timeout), then close; "
            "the handlers connect as deployed, each call its own new connection",
        ]
        problems = report(cases, delay, base, samples, args.smoke, cold, header)
        missed = missed_timed = 0
        connect = figures(cases["connect"], delay, base)
        for case in cases.values():
            figure = figures(case, delay, base)
            if case.group == "route" and figure and connect:
                missed += not goal_met(figure, connect)
                missed_timed += round(figure["rt"] - connect["rt"]) > 1
        judged = ("not judged in a smoke run" if args.smoke
                  else f"{missed} by the wire count ({missed_timed} whose timed excess rounds above 1)")
        print(f"\n{len(cases)} rows, {problems} problem(s); route rows missing the goal: {judged}; "
              f"run took {time.monotonic() - started:.0f} s")
        if problems:
            return 1
        return 1 if args.strict and not args.smoke and missed else 0
    finally:
        project.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--relay-child":  # the relay process: stdlib only
        sys.exit(relay_child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    sys.path.insert(0, str(REPO))
    from bench._support import main_exit  # SIGTERM as Ctrl-C: the server and the relay are stopped

    sys.exit(main_exit(main))
