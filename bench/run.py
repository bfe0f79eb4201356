"""Cold starts and warm calls, each measured side by side with what it is compared to.

    .venv/bin/python bench/run.py              # ~6 minutes on a 2-core machine
    .venv/bin/python bench/run.py --cold-rounds 9 --source-rounds 5   # tighter medians, ~10 minutes
    .venv/bin/python bench/run.py --smoke      # 3 samples, 1 cold round of 2 functions: every path
    .venv/bin/python bench/run.py --smoke --functions GetTask,Mcp   # the MCP line too (Mcp is not in the smoke set: ~1 s more import)

One command, one run, every figure from it (nothing constant, nothing skipped). It builds
the functions first when `.aws-sam/build` (or `--build-dir`) is missing (`infra/sam.sh build`,
after `infra/install-sam.sh` when the SAM CLI is not installed yet;
a smoke run leaves the cold starts out instead), installs its one
extra dependency (psycopg, for libpq: bench/requirements.txt) into `.tools/bench/site` when
missing (never into .venv, never into the layer), starts a throwaway Postgres with TLS and
SCRAM on (shared/local/tls_postgres.py), migrates it with the project's own migrations and seeds it with a
user and 20 tasks. Then, each part timed interleaved so that machine drift hits all alike:

1. Connection: connect + verified TLS + SCRAM + `SELECT 1` + close, the project's connect
   (`shared.connect.connect_with_retry`, what every flight of shared/db.py opens) against
   libpq (psycopg, `sslmode=verify-full&sslrootcert=...`). There is no SQLAlchemy engine on
   the request path any more, so no engine-vs-pg8000 share and no engine first connect to
   time: the run checks instead that the connect itself sends no statement.
2. Warm call: get task, list tasks, create task through the real Lambda handlers (payload 2.0
   event in, response out, their own short-lived connection) against the floor: a bare pg8000
   on the same connect running the SQL the handler's flight really sent (captured at
   shared.db's executor), statement by statement in one transaction (pg8000's own protocol:
   it has no pipelining), and `json.dumps` of the rows. For reference, the same captured
   flight through shared.db's executor alone (one write, one Sync; no FastAPI, Mangum,
   Powertools or pydantic).
3. Cold start: every function in .aws-sam/build in a fresh python3.13 laid out as Lambda lays
   it out: its directory and the layer's python/ copied to a read-only place, first on
   sys.path; `-I -S -B` (not the repo, not site-packages, no bytecode written); boto3 and
   botocore importable after them, as Lambda's runtime has them. It imports `app` and
   answers its first event against the database; its peak RSS (VmHWM). Variants, interleaved:
     shipped    what `sam build` makes: layer bytecode compiled with unchecked-hash
     warm .pyc  the same sources with fresh timestamp-checked .pyc, as a previous run of
                Python writes them where it may (compileall --invalidation-mode timestamp)
     source     the same sources without any .pyc (what shipping no bytecode costs)
     monolith   ONE FastAPI app holding every REST route behind Mangum (`shared.http.
                lambda_entry.lambda_handler`), laid out and compiled as shipped, answering the same event
   and the MCP function (POST /mcp, the MCP SDK) beside the REST functions: its shipped cold
   start (import + a first tools/call, its example event's add_task) over their median.
4. The import profile of one shipped cold start (`-X importtime`): where the time goes, and
   which packages a function must never import (boto3, alembic, joserfc, uvicorn, ...).

Powertools in every handler call: POWERTOOLS_LOG_LEVEL=WARNING (no INFO line per request);
metrics are still computed and their EMF line printed on each call, to /dev/null here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import platform
import random
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before anything imports shared.observability (Powertools reads them at import).
os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "todo-api")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "TodoApi")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._support import (  # noqa: E402
    Checks, Goal, add_smoke_flag, interleaved, main_exit, median_ms, p90_ms, print_summary, schema_revision,
    set_database_url, verdict,
)

DEFAULT_BUILD_DIR = REPO / ".aws-sam" / "build"
BUILD_DIR = DEFAULT_BUILD_DIR  # --build-dir
BENCH_SITE = REPO / ".tools" / "bench" / "site"
REQUIREMENTS = REPO / "bench" / "requirements.txt"
EVENTS_DIR = REPO / "events"
RUNTIME = "python3.13"
# Packages no function may import at cold start (tooling, or ~180 ms of AWS SDK).
FORBIDDEN = ("boto3", "botocore", "alembic", "joserfc", "uvicorn", "yaml", "httpx", "psycopg")
SEEDED_TASKS = 20
# --smoke cold-starts these: a route (and the import profile, the monolith) and the scheduled one.
SMOKE_FUNCTIONS = "GetTask,Cleanup"
# What an MCP client sends with every message (Streamable HTTP): JSON answers accepted.
MCP_ACCEPT = "application/json, text/event-stream"


def log(message: str) -> None:
    """Progress goes to stderr; the tables go to stdout."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup


def layer_build() -> Path:
    return BUILD_DIR / "SharedLayer" / "python"


def host_architecture() -> str:
    """This machine as the template's `Architecture` names it (the build must run here)."""
    return {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "x86_64")


def ensure_build(smoke: bool) -> bool:
    """Whether there is a build to cold-start; made (`infra/sam.sh build` for this machine's
    architecture, minutes) when missing, except in a smoke run, which then leaves the cold
    starts out."""
    if layer_build().is_dir():
        marker = layer_build().parent / "architecture"
        built = marker.read_text().strip() if marker.is_file() else host_architecture()
        if built != host_architecture():
            raise SystemExit(f"{BUILD_DIR} is built for {built}, this machine is {host_architecture()}: rebuild with "
                             f"infra/sam.sh build --parameter-overrides Architecture={host_architecture()}")
        return True
    if smoke:
        return False
    if not (REPO / ".tools" / "sam" / "bin" / "sam").exists():  # a fresh clone has no SAM CLI yet
        log("No SAM CLI in .tools/sam: running infra/install-sam.sh (once, a few minutes) ...")
        subprocess.run(["bash", str(REPO / "infra" / "install-sam.sh")], cwd=REPO, check=True)
    log(f"No {BUILD_DIR}: running infra/sam.sh build ...")
    extra = [] if BUILD_DIR == DEFAULT_BUILD_DIR else ["--build-dir", str(BUILD_DIR)]
    subprocess.run([str(REPO / "infra" / "sam.sh"), "build", "--parameter-overrides",
                    f"Architecture={host_architecture()}", *extra], cwd=REPO, check=True)
    return True


def ensure_psycopg() -> Any:
    """psycopg (libpq) for the reference connect: from .tools/bench/site, installed on demand."""
    if str(BENCH_SITE) not in sys.path:
        sys.path.append(str(BENCH_SITE))  # last: never shadows the project's own packages
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        log(f"Installing {REQUIREMENTS.relative_to(REPO)} into {BENCH_SITE.relative_to(REPO)} ...")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(BENCH_SITE), "-r", str(REQUIREMENTS)],
            check=True,
        )
        importlib.invalidate_caches()
        return importlib.import_module("psycopg")


def runtime_python() -> str:
    """The functions' runtime: pyenv's own python3.13 binary (as infra/sam.sh finds it)."""
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        roots.insert(0, subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10).stdout.strip())
    candidates = []
    for root in filter(None, roots):
        candidates += sorted(Path(root).glob(f"versions/3.13.*/bin/{RUNTIME}"), reverse=True)
    candidates.append(shutil.which(RUNTIME))
    for candidate in filter(None, candidates):
        check = subprocess.run([str(candidate), "-c", "import sys; assert sys.version_info[:2] == (3, 13)"],
                               capture_output=True)
        if check.returncode == 0:
            return str(candidate)
    raise SystemExit(f"No {RUNTIME} interpreter found (pyenv install 3.13): the functions' runtime is needed")


# The project's modules, imported once the environment is set.
db: Any = None
connect: Any = None


def import_project() -> None:
    global db, connect
    from shared import connect as shared_connect, db as shared_db

    db, connect = shared_db, shared_connect


@dataclass
class Seed:
    reader: str  # owns SEEDED_TASKS tasks: get and list read them
    writer: str  # creates: its task count grows during the run, the reader's does not
    task_ids: list[str] = field(default_factory=list)


def claims(user: str) -> dict[str, str]:
    return {"sub": user, "email": f"{user}@example.com"}


def seed(handlers: dict[str, Any]) -> Seed:
    """A user and their tasks, made through the real CreateTask handler."""
    from shared.local.lambda_context import FakeLambdaContext
    from shared.local.apigw import response_json

    found = Seed(reader=f"bench-reader-{uuid.uuid4().hex[:8]}", writer=f"bench-writer-{uuid.uuid4().hex[:8]}")
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        for i in range(SEEDED_TASKS):
            body = {"title": f"Seeded task {i}", "description": "made by bench/run.py", "priority": ["low", "medium", "high"][i % 3],
                    "due_at": f"2027-01-{i % 28 + 1:02d}T12:00:00Z", "tags": ["bench", f"t{i % 4}"]}
            response = handlers["CreateTask"](create_event(found.reader, body), FakeLambdaContext("CreateTask"))
            assert response["statusCode"] == 201, response
            found.task_ids.append(response_json(response)["id"])
    return found


def http_event(method: str, path: str, route: str, user: str | None, body: dict[str, Any] | None = None,
               query: str = "", accept: str = "application/json") -> dict[str, Any]:
    from shared.local.apigw import build_http_event

    headers = {"accept": accept, "host": "bench.execute-api.us-east-1.amazonaws.com",
               "user-agent": "bench/run.py"}
    raw = None
    if body is not None:
        raw = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    return build_http_event(method=method, path=path, route_path=route, raw_query=query, headers=headers, body=raw,
                            claims=claims(user) if user else None)


def create_event(user: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    body = body or {"title": f"Bench task {uuid.uuid4().hex[:6]}", "priority": "high", "tags": ["bench"]}
    return http_event("POST", "/api/me/tasks", "/api/{user_id}/tasks", user, body)


# --------------------------------------------------------------------------- 1. connection


def capture_wire(run: Callable[[], Any]) -> list[str]:
    """Every statement pg8000 itself sends while `run()` runs (its simple and extended query
    calls; a flight writes its own messages and is not seen here)."""
    import pg8000.core

    sent: list[str] = []
    core = pg8000.core.CoreConnection
    simple, unnamed = core.execute_simple, core.execute_unnamed

    def execute_simple(self: Any, statement: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(" ".join(statement.split()))
        return simple(self, statement, *args, **kwargs)

    def execute_unnamed(self: Any, statement: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(" ".join(statement.split()))
        return unnamed(self, statement, *args, **kwargs)

    core.execute_simple, core.execute_unnamed = execute_simple, execute_unnamed
    try:
        run()
    finally:
        core.execute_simple, core.execute_unnamed = simple, unnamed
    return sent


def bench_connection(server: Any, psycopg: Any, samples: int) -> dict[str, Any]:
    from bench.connect import describe_socket, project_connect, time_context_builds, with_cursor
    from shared.local.certificates import make_ca

    set_database_url(server.url)
    checks: list[tuple[bool, str]] = []  # (passed, what was seen)
    raw = project_connect(server.url)()
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        row = cursor.fetchone()
        checks.append((row[0] is True, f"project pg_stat_ssl ssl={row[0]} {row[1]}; {describe_socket(raw)}"))
    finally:
        raw.close()
    with psycopg.connect(server.url) as pc:
        row = pc.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        checks.append((row[0] is True, f"libpq   pg_stat_ssl ssl={row[0]} {row[1]}; sslmode="
                       f"{pc.info.get_parameters().get('sslmode', 'verify-full')} (URL: verify-full + sslrootcert), "
                       "auth SCRAM (server allows nothing else over TCP)"))
    # Both refuse a server whose certificate their root does not sign.
    wrong = Path(server.directory) / "unrelated-ca.pem"
    wrong.write_bytes(make_ca("unrelated CA").cert_pem)
    for name, attempt in (
        ("project", lambda: with_cursor(project_connect(server.url_with(sslrootcert=str(wrong))))()),
        ("libpq", lambda: psycopg.connect(server.url_with(sslrootcert=str(wrong))).close()),
    ):
        try:
            attempt()
            checks.append((False, f"{name} CONNECTED with an unrelated root"))
        except Exception as error:  # noqa: BLE001 - what matters is that it failed, and why
            checks.append((True, f"{name} refuses an unrelated root ({type(error).__name__})"))
    # What the connect sends before the caller's first statement: nothing, cold or warm.
    sent = capture_wire(lambda: project_connect(server.url)().close())
    checks.append((not sent, f"project connect sends no statement of its own ({len(sent)} sent"
                             f"{': ' + '; '.join(sent) if sent else ''})"))

    def libpq() -> None:
        connection = psycopg.connect(server.url)
        try:
            connection.execute("SELECT 1").fetchall()
        finally:
            connection.close()

    variants: dict[str, Callable[[], None]] = {"project": with_cursor(project_connect(server.url)), "libpq": libpq}
    for op in variants.values():
        op()
    times = interleaved(variants, samples)
    system_ctx, one_ca_ctx = time_context_builds(server.ca_path)
    return {"times": times, "checks": checks, "ctx": (system_ctx, one_ca_ctx)}


def print_connection(result: dict[str, Any], samples: int, psycopg: Any, check: Checks) -> dict[str, float]:
    times = result["times"]
    med = {name: median_ms(values) for name, values in times.items()}
    print(f"\n1. CONNECTION: connect + verified TLS + SCRAM + SELECT 1 + close "
          f"({samples} samples each, interleaved in shuffled order)")
    for passed, line in result["checks"]:
        check(passed, line)
    rows = [
        ("project", "project connect (shared.connect.connect_with_retry, pg8000)"),
        ("libpq", f"libpq via psycopg {psycopg.__version__} (libpq {psycopg.pq.version()})"),
    ]
    print(f"   {'variant':<62}{'median':>9}{'p90':>9}  ms")
    for key, label in rows:
        print(f"   {label:<62}{med[key]:>9.2f}{p90_ms(times[key]):>9.2f}")
    ratio = med["project"] / med["libpq"]
    print(f"   ratio project connect / libpq = {ratio:.2f}   ({verdict(ratio, 1.0)})")
    print("   first connect of an engine: not measured, there is none (no SQLAlchemy engine on the request path since")
    print("   the one-flight data layer; the check above shows the connect sends no statement, cold or warm)")
    system_ctx, one_ca_ctx = result["ctx"]
    print(f"   TLS context, built once per process (in the first connect): {one_ca_ctx * 1000:.1f} ms from this "
          f"server's one-CA sslrootcert; {system_ctx * 1000:.1f} ms from the system CA bundle (no sslrootcert, as "
          "with Neon)")
    return {"ratio": ratio}


# --------------------------------------------------------------------------- 2. warm call


@contextlib.contextmanager
def captured_flights() -> Iterator[list[list[Any]]]:
    """The queries of every flight while the block runs, as shared.db's executor sends them
    (the transaction's settings first)."""
    seen: list[list[Any]] = []
    real = db._exchange

    def exchange(sock: Any, queries: Any) -> Any:
        seen.append(list(queries))
        return real(sock, queries)

    db._exchange = exchange
    try:
        yield seen
    finally:
        db._exchange = real


def refreshed(queries: list[Any], fresh_ids: set[str]) -> list[Any]:
    """The same queries, each id the handler created replaced by a new one (creates repeat)."""
    if not fresh_ids:
        return queries
    new = {old: uuid.uuid4() for old in fresh_ids}

    def fresh(value: Any) -> Any:
        if isinstance(value, (uuid.UUID, str)) and str(value) in new:
            return new[str(value)] if isinstance(value, uuid.UUID) else str(new[str(value)])
        return value

    return [db.Query(q.text, tuple(fresh(v) for v in q.params)) for q in queries]


def floor_op(params: Any, queries: list[Any], fresh_ids: set[str]) -> Callable[[], str]:
    """A bare pg8000 on the project's connect: the flight's SQL statement by statement, in
    one transaction, then json.dumps of the last statement's rows."""

    def op() -> str:
        connection = connect.connect_with_retry(params, 10)
        try:
            rows: list[dict[str, Any]] = []
            connection.execute_simple("BEGIN")
            for query in refreshed(queries, fresh_ids):
                context = connection.execute_unnamed(query.text, vals=query.params)
                if context.columns:
                    names = [column["name"] for column in context.columns]
                    rows = [dict(zip(names, row)) for row in context.rows]
            connection.execute_simple("COMMIT")
        finally:
            connection.close()
        return json.dumps(rows, default=str)

    return op


def flight_op(params: Any, queries: list[Any], fresh_ids: set[str]) -> Callable[[], str]:
    """The same flight through shared.db's executor alone: connect, one write, one Sync, close."""

    def op() -> str:
        connection = connect.connect_with_retry(params, 10)
        try:
            results = db._exchange(db._wire(connection), refreshed(queries, fresh_ids))
        finally:
            connection.close()
        return json.dumps(results[-1].rows, default=str)

    return op


def bench_warm(server: Any, handlers: dict[str, Any], seeded: Seed, samples: int) -> dict[str, Any]:
    from shared.local.lambda_context import FakeLambdaContext
    from shared.local.apigw import response_json

    set_database_url(server.url)
    params = connect.parse_database_url(server.url)
    task_id = seeded.task_ids[len(seeded.task_ids) // 2]
    cases: dict[str, tuple[str, Callable[[], dict[str, Any]], int]] = {
        "get task": ("GetTask", lambda: http_event("GET", f"/api/me/tasks/{task_id}", "/api/{user_id}/tasks/{task_id}", seeded.reader), 200),
        f"list tasks ({SEEDED_TASKS})": ("ListTasks", lambda: http_event("GET", "/api/me/tasks", "/api/{user_id}/tasks", seeded.reader), 200),
        "create task": ("CreateTask", lambda: create_event(seeded.writer), 201),
    }
    with open(os.devnull, "w") as devnull:
        ops: dict[str, Callable[[], Any]] = {}
        captured: dict[str, list[Any]] = {}
        for label, (function, make_event, status) in cases.items():
            handler = handlers[function]

            def call(handler: Any = handler, function: str = function, make_event: Any = make_event, status: int = status) -> Any:
                event, context = make_event(), FakeLambdaContext(function)
                t = time.perf_counter()
                response = handler(event, context)
                elapsed = time.perf_counter() - t
                if response["statusCode"] != status:
                    raise AssertionError(f"{function} answered {response['statusCode']}: {response.get('body')}")
                return elapsed, response

            with contextlib.redirect_stdout(devnull):
                call()  # warm: the handler's first request
                with captured_flights() as seen:
                    _, response = call()
            if len(seen) != 1:
                raise AssertionError(f"{function} made {len(seen)} flights, not one")
            captured[label] = seen[0]
            created = {response_json(response)["id"]} if function == "CreateTask" else set()
            references = {"floor": floor_op(params, seen[0], created), "flight": flight_op(params, seen[0], created)}
            ops[f"{label}|handler"] = lambda call=call: call()[0]
            for name, reference in references.items():
                reference()  # it works, with the same result shape
                ops[f"{label}|{name}"] = lambda reference=reference: reference() and None  # timed by interleaved()

        with contextlib.redirect_stdout(devnull):
            times = interleaved(ops, samples)
        return {"times": times, "captured": captured, "labels": list(cases)}


def print_warm(result: dict[str, Any], samples: int) -> dict[str, float]:
    times = result["times"]
    print(f"\n2. WARM CALL: the real handler (event in, response out, own connection) vs the floor "
          f"({samples} samples each, interleaved)")
    print("   floor  = a bare pg8000 on the project's connect: the SQL the handler's flight sent (captured),")
    print("            statement by statement in one transaction (BEGIN ... COMMIT), json.dumps")
    print("   flight = that captured flight through shared.db's executor alone (one write, one Sync), json.dumps")
    print(f"   {'route':<22}{'handler':>10}{'floor':>10}{'ratio':>8}{'handler-floor':>15}  goal <= 1.3"
          f"{'flight':>10}{'handler/flight':>16}  ms")
    ratios = {}
    for label in result["labels"]:
        handler, floor = median_ms(times[f"{label}|handler"]), median_ms(times[f"{label}|floor"])
        flight = median_ms(times[f"{label}|flight"])
        ratios[label] = handler / floor
        print(f"   {label:<22}{handler:>10.2f}{floor:>10.2f}{ratios[label]:>8.2f}{handler - floor:>15.2f}"
              f"  {'MET' if ratios[label] <= 1.3 else 'NOT MET':<11}{flight:>10.2f}{handler / flight:>16.2f}")
    for label in result["labels"]:
        statements = [" ".join(q.text.split())[:110] for q in result["captured"][label]]
        print(f"   SQL of {label} ({len(statements)} statements, one flight): " + " | ".join(statements))
    return ratios


# --------------------------------------------------------------------------- 3. cold start

# Runs in the fresh python3.13: Lambda's layout on sys.path, a watch on forbidden imports,
# `import app`, one event, the figures written as JSON, then exit without interpreter
# teardown (Lambda never tears a process down; it only slows the benchmark).
CHILD = r"""
import sys, time
t0 = time.perf_counter()
import json, os

(task_dir, layer_dir, runtime_dir, result_path, function_name, handler_path, event_json, forbidden,
 second_json, priming) = sys.argv[1:11]
forbidden = set(forbidden.split(","))


class Watch:
    tried = []

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in forbidden:
            cls.tried.append(name)
        return None


sys.meta_path.insert(0, Watch)
# /var/task, /opt/python, then the runtime's own packages (boto3) as Lambda orders them.
sys.path[0:0] = [task_dir, layer_dir]
if runtime_dir:
    sys.path.append(runtime_dir)


class Context:
    function_name = function_name
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 1024
    aws_request_id = "bench-request-id"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis():
        return 10_000


event, second_event = json.loads(event_json), json.loads(second_json)
t1 = time.perf_counter()
if priming == "off":  # inside the timed init: the app imports shared.snapstart anyway
    from shared import snapstart
    snapstart.disable_priming()
module_name, _, attribute = handler_path.rpartition(".")
handler = getattr(__import__(module_name), attribute)
t2 = time.perf_counter()
response = handler(event, Context())
t3 = time.perf_counter()
second = handler(second_event, Context())  # the same instance's next event: a warm one
t4 = time.perf_counter()


def peak_rss_kb():
    # VmHWM: this process's own peak. ru_maxrss is not: on Linux it keeps the peak of the
    # process that spawned it across exec (here the benchmark, ~110 MB).
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


import shared

with open(result_path, "w") as out:
    json.dump({
        "import": t2 - t1, "first": t3 - t2, "total": t3 - t1, "startup": t1 - t0, "second": t4 - t3,
        "status": response.get("statusCode", "ok") if isinstance(response, dict) else "ok",
        "second_status": second.get("statusCode", "ok") if isinstance(second, dict) else "ok",
        "rss_kb": peak_rss_kb(), "shared": shared.__file__, "tried": Watch.tried,
        "loaded": sorted(name for name in sys.modules if name.partition(".")[0] in forbidden),
        "modules": len(sys.modules),
    }, out)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"""

MONOLITH = '''"""Every route of the API in ONE FastAPI app behind one Mangum handler (bench/run.py).

The usual single-function design, built from the functions' own modules: same routes, same
`create_app` (shared/http/app.py) and `lambda_handler` (shared/http/lambda_entry.py).
"""

import importlib

from shared.http.app import create_app
from shared.http.lambda_entry import lambda_handler

ROUTE_MODULES = {modules!r}

app = create_app("Monolith")
for _name in ROUTE_MODULES:
    app.router.routes.extend(importlib.import_module(f"routes.{{_name}}").app.routes)

handler = lambda_handler(app)
'''

VARIANTS = ("shipped", "unprimed", "warm", "source", "monolith")
# What Lambda's python3.13 runtime has on sys.path after the layer (/var/runtime): boto3.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "urllib3")


@dataclass
class Layout:
    root: Path
    layers: dict[str, Path] = field(default_factory=dict)  # variant -> /opt/python
    tasks: dict[str, Path] = field(default_factory=dict)  # variant -> dir holding /var/task per function
    runtime: Path | None = None  # boto3 & co., as the Lambda runtime provides them
    pyc_counts: dict[Path, int] = field(default_factory=dict)


def count_pyc(path: Path) -> int:
    return sum(1 for _ in path.rglob("*.pyc"))


def runtime_packages(root: Path) -> Path | None:
    """boto3/botocore from .venv (pure Python) on the path after the layer, as /var/runtime."""
    found = {}
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return None
        found[name] = Path(next(iter(spec.submodule_search_locations)))
    runtime = root / "runtime"
    runtime.mkdir()
    for name, path in found.items():
        (runtime / name).symlink_to(path, target_is_directory=True)
    return runtime


def build_layouts(root: Path, python: str, http_functions: list[str], all_functions: list[str]) -> Layout:
    """Copies of the build for each variant, read-only."""
    layout = Layout(root)

    def copy(source: Path, target: Path, *, bytecode: bool) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(source), str(target)], check=True)  # keeps mtimes, like a zip would not
        if not bytecode:
            subprocess.run(["find", str(target), "-name", "__pycache__", "-prune", "-exec", "rm", "-rf", "{}", "+"],
                           check=True)

    for variant in ("shipped", "source", "warm"):
        layout.layers[variant] = root / variant / "opt" / "python"
        copy(layer_build(), layout.layers[variant], bytecode=variant == "shipped")
        layout.tasks[variant] = root / variant / "task"
        for name in all_functions:
            copy(BUILD_DIR / name, layout.tasks[variant] / name, bytecode=variant == "shipped")
    layout.layers["monolith"] = layout.layers["unprimed"] = layout.layers["shipped"]
    layout.tasks["unprimed"] = layout.tasks["shipped"]  # the same files, priming switched off
    # The monolith: /var/task = app.py + routes/<function>.py (each function's own module).
    mono = root / "monolith" / "task" / "Monolith"
    (mono / "routes").mkdir(parents=True)
    (mono / "routes" / "__init__.py").write_text("")
    for name in http_functions:
        shutil.copy2(BUILD_DIR / name / "app.py", mono / "routes" / f"{name}.py")
    (mono / "app.py").write_text(MONOLITH.format(modules=http_functions))
    layout.tasks["monolith"] = root / "monolith" / "task"
    compile_args = [python, "-I", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode"]
    # Conservative for the monolith: its own code gets unchecked-hash bytecode like the layer
    # (`sam build` leaves each function's app.py uncompiled).
    subprocess.run([*compile_args, "unchecked-hash", str(mono)], check=True, stdout=subprocess.DEVNULL)
    # "Warm": timestamp-checked .pyc next to every source, as Python writes them itself.
    subprocess.run([*compile_args, "timestamp", str(layout.layers["warm"]), str(layout.tasks["warm"])],
                   check=True, stdout=subprocess.DEVNULL)
    for variant in ("shipped", "source", "warm", "monolith"):
        subprocess.run(["chmod", "-R", "a-w", str(root / variant)], check=True)
        layout.pyc_counts[root / variant] = count_pyc(root / variant)
    layout.runtime = runtime_packages(root)
    return layout


def cold_event(function: str, seeded: Seed, template_functions: dict[str, Any]) -> dict[str, Any] | None:
    """A valid, authorized first event: events/<Function>.json's request, as a seeded user."""
    example_path = EVENTS_DIR / f"{function}.json"
    fn = template_functions[function]
    if not fn.routes:
        return json.loads(example_path.read_text()) if example_path.is_file() else None
    route = fn.routes[0]
    example = json.loads(example_path.read_text()) if example_path.is_file() else {}
    path = example.get("rawPath") or route.path.replace("{user_id}", "me")
    body = json.loads(example["body"]) if example.get("body") else None
    if function == "GetTask":
        path = f"/api/me/tasks/{seeded.task_ids[0]}"  # a seeded task: 200
    if function == "CreateCategory" and body is not None:
        body = {**body, "name": f"Bench {uuid.uuid4().hex[:10]}"}  # unique names: 201, never 409
    # Writes as the writer: the reader's list stays the same size all run long.
    user = None if route.public else (seeded.writer if route.method == "POST" else seeded.reader)
    # Mcp: its example event's tool call (add_task), as an MCP client sends it.
    return http_event(route.method, path, route.path, user, body, accept=MCP_ACCEPT if route.path == "/mcp" else "application/json")


def cold_events(function: str, seeded: Seed, template_functions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A process's first event and the next one (fresh ids and names each)."""
    first, second = cold_event(function, seeded, template_functions), cold_event(function, seeded, template_functions)
    assert first is not None and second is not None
    return first, second


def child_env(database_url: str, function: str) -> dict[str, str]:
    from shared.template import load_template

    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    env = {name: value for name, value in variables.items() if isinstance(value, str)}  # drops !Ref / !If
    env.update({
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC",
        "DATABASE_URL": database_url,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "PYTHONDONTWRITEBYTECODE": "1",  # -B says it too: nothing is written (the copies are read-only)
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "JWT_ISSUER": "https://issuer.bench.test/",  # what the template gives ProtectedResource
    })
    return env


class ChildFailed(RuntimeError):
    pass


def run_child(python: str, layout: Layout, variant: str, function: str, handler: str,
              events: tuple[dict[str, Any], dict[str, Any]], database_url: str,
              extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """One fresh process: init, `events[0]` (the first event), `events[1]` (the next: warm)."""
    task = layout.tasks[variant] / ("Monolith" if variant == "monolith" else function)
    result_path = layout.root / "results" / f"{uuid.uuid4().hex}.json"
    started = time.perf_counter()
    completed = subprocess.run(
        [python, "-I", "-S", "-B", *extra_args, "-c", CHILD, str(task), str(layout.layers[variant]),
         str(layout.runtime or ""), str(result_path), function, handler, json.dumps(events[0]), ",".join(FORBIDDEN),
         json.dumps(events[1]), "off" if variant == "unprimed" else "on"],
        cwd=layout.root / "cwd", env=child_env(database_url, function),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=180,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0 or not result_path.is_file():
        raise ChildFailed(f"{function} ({variant}) exited {completed.returncode}: {completed.stderr.strip()[-600:]}")
    result = json.loads(result_path.read_text())
    result["wall"] = wall
    result["stderr"] = completed.stderr
    layer = str(layout.layers[variant].resolve())
    if not str(Path(result["shared"]).resolve()).startswith(layer + os.sep):
        raise ChildFailed(f"{function} ({variant}) imported shared from {result['shared']}, not its layer copy")
    return result


def bench_cold(server: Any, seeded: Seed, rounds: int, source_rounds: int, python: str,
               only: set[str] | None) -> dict[str, Any]:
    from shared.template import functions

    template_functions = functions()
    built = sorted(p.parent.name for p in BUILD_DIR.glob("*/app.py") if only is None or p.parent.name in only)
    built = [name for name in built if name in template_functions]
    wanted = set(template_functions) if only is None else set(template_functions) & only
    missing = sorted(wanted - set(built))
    # The monolith holds the REST routes: the MCP SDK (Mcp) would add its own import time to
    # it, and so to every route's comparison (Mcp is set beside the REST functions instead).
    http_functions = [name for name in built if template_functions[name].routes
                      and template_functions[name].routes[0].path != "/mcp"]
    no_event = [name for name in built if cold_event(name, seeded, template_functions) is None]
    measured = [name for name in built if name not in no_event]
    root = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    os.chmod(root, 0o755)
    failures: dict[str, str] = {}
    started = time.perf_counter()
    try:
        (root / "results").mkdir()
        (root / "cwd").mkdir()
        log(f"Cold start: copying the build into read-only layouts under {root} ...")
        layout = build_layouts(root, python, http_functions, built)
        all_runs = [(name, variant) for name in measured for variant in VARIANTS
                    if variant != "monolith" or name in http_functions]
        results: dict[tuple[str, str], list[dict[str, Any]]] = {run: [] for run in all_runs}
        expected: dict[str, Any] = {}
        # One discarded run of each layout first: the first touch of freshly copied files.
        warmup = http_functions[0] if http_functions else measured[0]
        for variant in VARIANTS:
            if (warmup, variant) in results:
                with contextlib.suppress(ChildFailed):
                    run_child(python, layout, variant, warmup, template_functions[warmup].handler,
                              cold_events(warmup, seeded, template_functions), server.url)
        for round_ in range(rounds):
            runs = [run for run in all_runs if run[0] not in failures
                    and (run[1] != "source" or round_ < source_rounds)]
            random.shuffle(runs)
            for name, variant in runs:
                if name in failures:
                    continue
                events = cold_events(name, seeded, template_functions)  # fresh ids / names each run
                try:
                    result = run_child(python, layout, variant, name, template_functions[name].handler, events, server.url)
                except ChildFailed as error:
                    failures[name] = str(error)
                    continue
                if expected.setdefault(name, result["status"]) != result["status"]:
                    failures[name] = f"{name} ({variant}) answered {result['status']}, other runs {expected[name]}"
                    continue
                if result["second_status"] != result["status"]:
                    failures[name] = f"{name} ({variant}) answered {result['status']}, then {result['second_status']}"
                    continue
                results[(name, variant)].append(result)
            log(f"  round {round_ + 1}/{rounds} done ({time.perf_counter() - started:.0f} s)")
        written = {str(path.relative_to(root)): count_pyc(path) - before for path, before in layout.pyc_counts.items()}
        profile = import_profile(python, layout, seeded, server.url, template_functions) if "GetTask" in measured else None
        runtime = layout.runtime is not None
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)
    return {"results": results, "built": measured, "http": http_functions, "missing": missing,
            "mcp": [name for name in built if template_functions[name].routes and name not in http_functions],
            "no_event": no_event, "expected": expected, "written": written, "profile": profile,
            "failures": failures, "runtime": runtime, "elapsed": time.perf_counter() - started}


def import_profile(python: str, layout: Layout, seeded: Seed, database_url: str,
                   template_functions: dict[str, Any]) -> dict[str, Any]:
    """One shipped cold start of GetTask under -X importtime: self time per top-level package."""
    name = "GetTask"
    result = run_child(python, layout, "shipped", name, template_functions[name].handler,
                       cold_events(name, seeded, template_functions), database_url, ("-X", "importtime"))
    per_package: dict[str, int] = {}
    for line in result["stderr"].splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, self_us, _cumulative, module = (part.strip() for part in line.replace("import time:", "|", 1).split("|"))
        top = module.partition(".")[0]
        per_package[top] = per_package.get(top, 0) + int(self_us)
    return {"function": name, "packages": per_package, "result": result}


def print_cold(cold: dict[str, Any], rounds: int, source_rounds: int) -> dict[str, Any]:
    results = cold["results"]

    def values(name: str, variant: str, key: str = "total") -> list[float]:
        return [r[key] for r in results.get((name, variant), [])]

    def med(name: str, variant: str, key: str = "total") -> float:
        return median_ms(values(name, variant, key))

    def rss(name: str, variant: str) -> float:
        return statistics.median(values(name, variant, "rss_kb")) / 1024

    print(f"\n3. COLD START: a fresh python3.13 per run, laid out as Lambda does, read-only; `import app` + first "
          f"event against the database")
    print(f"   median of {rounds} runs per function and variant ({source_rounds} for `source`), every run "
          "interleaved in a new shuffled order each round")
    print("   shipped  = our build: layer bytecode compiled with unchecked-hash (no source check)")
    print("   warm     = the same sources with fresh timestamp-checked .pyc, as a previous run writes them")
    print("   source   = the same sources, no .pyc at all (what shipping no bytecode costs)")
    print("   monolith = ONE FastAPI app with every REST route behind Mangum, its code compiled like the layer,"
          " answering the same event")
    print("   RSS      = the process's peak resident set (VmHWM) after the first event, MB")
    print(f"   {'function':<16}{'answer':>7}{'shipped':>9}{'warm':>8}{'ship/warm':>10}{'source':>9}{'src/ship':>9}"
          f"{'monolith':>9}{'ship/mono':>10}{'RSS':>6}{'RSS mono':>9}   (ms)")
    ratios: dict[str, list[float]] = {"warm": [], "source": [], "monolith": []}
    spreads = []
    for name in cold["built"]:
        if name in cold["failures"] or not values(name, "shipped"):
            continue
        shipped, warm, source = med(name, "shipped"), med(name, "warm"), med(name, "source")
        ratios["warm"].append(shipped / warm)
        ratios["source"].append(source / shipped)
        runs = values(name, "shipped")
        spreads.append((max(runs) - min(runs)) / statistics.median(runs))
        if values(name, "monolith"):
            mono = med(name, "monolith")
            ratios["monolith"].append(shipped / mono)
            mono_cols, mono_rss = f"{mono:>9.0f}{shipped / mono:>10.2f}", f"{rss(name, 'monolith'):>9.0f}"
        else:
            mono_cols, mono_rss = f"{'-':>9}{'(not in it)' if name in cold['mcp'] else '(no route)':>10}", f"{'-':>9}"
        print(f"   {name:<16}{cold['expected'][name]!s:>7}{shipped:>9.0f}{warm:>8.0f}{shipped / warm:>10.2f}"
              f"{source:>9.0f}{source / shipped:>9.2f}{mono_cols}{rss(name, 'shipped'):>6.0f}{mono_rss}")
    for name, error in cold["failures"].items():
        print(f"   {name:<16} FAILED: {error}")
    if not ratios["warm"]:
        return {}
    summary = {key: statistics.median(values_) for key, values_ in ratios.items() if values_}
    shipped_runs = [r for (n, v), rs in results.items() if v == "shipped" and n not in cold["failures"] for r in rs]
    mono_runs = [r for (n, v), rs in results.items() if v == "monolith" and n not in cold["failures"] for r in rs]
    print(f"   summary, median of the per-function ratios: shipped/warm {summary['warm']:.2f} "
          f"({verdict(summary['warm'], 1.1)}; worst function {max(ratios['warm']):.2f}); "
          f"source/shipped {summary['source']:.2f}")
    if "monolith" in summary:
        worst = max(ratios["monolith"])
        met = sum(ratio <= 1.0 for ratio in ratios["monolith"])
        summary["monolith_met"] = f"{met} of {len(ratios['monolith'])} functions at or under 1.0"
        print(f"   per-function/monolith {summary['monolith']:.2f} ({verdict(summary['monolith'], 1.0)}; "
              f"{met} of {len(ratios['monolith'])} functions at or under 1.0, worst {worst:.2f})")
    for label, runs in (("shipped", shipped_runs), ("monolith", mono_runs)):
        if runs:
            print(f"   {label:<8} all functions: import {median_ms([r['import'] for r in runs]):.0f} ms + first event "
                  f"{median_ms([r['first'] for r in runs]):.0f} ms, {statistics.median(r['modules'] for r in runs):.0f} "
                  f"modules, peak RSS {statistics.median(r['rss_kb'] for r in runs) / 1024:.0f} MB; whole process "
                  f"(spawn to exit) {median_ms([r['wall'] for r in runs]):.0f} ms")
    print(f"   noise: identical shipped runs of one function spread over {statistics.median(spreads) * 100:.0f}% "
          "of their median (max-min; median over functions)")
    mcp_line(cold, med, rss)
    tried_by = sorted({(m.partition('.')[0], n) for (n, _), rs in results.items() for r in rs for m in r["tried"]})
    tried = [f"{package} ({', '.join(n for p, n in tried_by if p == package)})" for package in sorted({p for p, _ in tried_by})]
    loaded = sorted({m for rs in results.values() for r in rs for m in r["loaded"]})
    runtime_note = ("importable from a runtime directory after the layer, as on Lambda"
                    if cold["runtime"] else "NOT importable here (no boto3 in .venv to stand in for Lambda's runtime)")
    print(f"   forbidden packages ({', '.join(FORBIDDEN)}; boto3/botocore {runtime_note}):")
    print(f"      import attempted: {', '.join(tried) or 'none'}; modules loaded: {', '.join(loaded) or 'none'}")
    if "botocore" in loaded and "boto3" not in loaded:
        print("      (Powertools' package __init__ tries `import botocore` to register its user-agent hook: botocore's"
              " own __init__ only, no session, no boto3)")
    written = {k: v for k, v in cold["written"].items() if v}
    print(f"   .pyc written into the read-only copies by all these runs: {written or 'none'}")
    if cold["missing"]:
        print(f"   NOT BUILT (in template.yaml, not in .aws-sam/build: run infra/sam.sh build): {', '.join(cold['missing'])}")
    if cold["no_event"]:
        print(f"   NO EVENT (no route and no events/<Function>.json): {', '.join(cold['no_event'])}")
    return summary


def print_priming(cold: dict[str, Any]) -> dict[str, float]:
    """Section 5: the first event after priming against the same process's next (warm) event,
    and what priming adds to init (what a SnapStart snapshot hides), from the cold runs."""
    results = cold["results"]

    def med(name: str, variant: str, key: str) -> float:
        return median_ms([r[key] for r in results.get((name, variant), [])])

    print("\n5. PRIMING: per function, a fresh process as in 3. (shipped = primed at init, as built; unprimed = the")
    print("   same files with shared.snapstart's priming switched off): init (`import app`), then the first event,")
    print("   then the same instance's next event (warm: its own new connection too, as every event has)")
    print(f"   {'function':<16}{'init':>7}{'unprimed':>9}{'+prime':>8}{'first':>7}{'warm':>7}{'first/warm':>11}"
          f"{'unprimed first':>15}{'warm':>7}{'first/warm':>11}   (ms; goal first/warm <= 1.2 primed)")
    primed_ratios, unprimed_ratios, added = [], [], []
    for name in cold["built"]:
        if name in cold["failures"] or not results.get((name, "shipped")) or not results.get((name, "unprimed")):
            continue
        init_p, init_u = med(name, "shipped", "import"), med(name, "unprimed", "import")
        first_p, warm_p = med(name, "shipped", "first"), med(name, "shipped", "second")
        first_u, warm_u = med(name, "unprimed", "first"), med(name, "unprimed", "second")
        primed_ratios.append(first_p / warm_p)
        unprimed_ratios.append(first_u / warm_u)
        added.append(init_p - init_u)
        print(f"   {name:<16}{init_p:>7.0f}{init_u:>9.0f}{init_p - init_u:>8.1f}{first_p:>7.1f}{warm_p:>7.1f}"
              f"{first_p / warm_p:>11.2f}{first_u:>15.1f}{warm_u:>7.1f}{first_u / warm_u:>11.2f}")
    if not primed_ratios:
        return {}
    summary = {"primed": statistics.median(primed_ratios), "worst": max(primed_ratios),
               "unprimed": statistics.median(unprimed_ratios), "added": statistics.median(added)}
    print(f"   first/warm, median over functions: primed {summary['primed']:.2f} ({verdict(summary['primed'], 1.2)}; "
          f"worst {summary['worst']:.2f}), unprimed {summary['unprimed']:.2f}; priming adds "
          f"{summary['added']:.1f} ms to init (median): with SnapStart the snapshot holds it, without it "
          "each new instance pays it once, before its first event instead of in it")
    return summary


def mcp_line(cold: dict[str, Any], med: Callable[..., float], rss: Callable[[str, str], float]) -> None:
    """The MCP function's cold start beside the REST functions' (the same run, interleaved)."""
    results, name = cold["results"], "Mcp"
    if name in cold["failures"] or not results.get((name, "shipped")):
        return
    from shared.template import functions

    rest = [n for n in cold["http"] if n not in cold["failures"] and results.get((n, "shipped"))
            and functions()[n].routes[0].path.startswith("/api/")]
    if not rest:
        return
    rest_total = statistics.median(med(n, "shipped") for n in rest)
    rest_import = statistics.median(med(n, "shipped", "import") for n in rest)
    runs = results[(name, "shipped")]
    print(f"   MCP beside REST (shipped): Mcp {med(name, 'shipped'):.0f} ms (import {med(name, 'shipped', 'import'):.0f} + "
          f"first tools/call {med(name, 'shipped', 'first'):.0f}), {statistics.median(r['modules'] for r in runs):.0f} modules, "
          f"RSS {rss(name, 'shipped'):.0f} MB; the {len(rest)} REST functions' median {rest_total:.0f} ms "
          f"(import {rest_import:.0f}): Mcp/REST {med(name, 'shipped') / rest_total:.2f}")


def print_profile(profile: dict[str, Any] | None) -> None:
    if profile is None:
        return
    packages = sorted(profile["packages"].items(), key=lambda kv: -kv[1])
    total = sum(profile["packages"].values()) / 1000
    print(f"\n4. IMPORT PROFILE: one shipped cold start of {profile['function']} under -X importtime: self time summed "
          f"per top-level package ({total:.0f} ms of imports in all; one run, indicative)")
    line = ", ".join(f"{name} {us / 1000:.0f}" for name, us in packages[:16])
    print(f"   ms: {line}")
    shared = profile["packages"].get("shared", 0) / 1000
    print(f"   shared/ itself: {shared:.0f} ms; everything else is the libraries' own import code")
    absent = [name for name in FORBIDDEN if name not in profile["packages"]]
    present = [name for name in FORBIDDEN if name in profile["packages"]]
    imported = ", ".join(f"{name} ({profile['packages'][name] / 1000:.1f} ms)" for name in present)
    print(f"   not imported: {', '.join(absent)}" + (f"; imported: {imported}" if present else ""))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    global BUILD_DIR
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conn-samples", type=int, default=200, help="connections per variant (default 200)")
    parser.add_argument("--warm-samples", type=int, default=150, help="calls per route and variant (default 150)")
    parser.add_argument("--cold-rounds", type=int, default=5,
                        help="cold starts per function and variant (default 5)")
    parser.add_argument("--source-rounds", type=int, default=3,
                        help="of those, how many also run the slow no-bytecode variant (default 3)")
    parser.add_argument("--functions", help="cold-start only these (comma-separated logical ids; default: every built one)")
    parser.add_argument("--parts", default="connection,warm,cold",
                        help="while working on one part: run only these (default: all three)")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR,
                        help="the `sam build` output to cold-start (default .aws-sam/build)")
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.conn_samples = args.warm_samples = 3
        args.cold_rounds = args.source_rounds = 1
        args.functions = args.functions or SMOKE_FUNCTIONS
    elif min(args.conn_samples, args.warm_samples, args.cold_rounds, args.source_rounds) < 3:
        parser.error("every sample count must be at least 3 (--smoke for a quick run through every path)")
    BUILD_DIR = args.build_dir.resolve()
    parts = set(args.parts.split(","))

    started = time.perf_counter()
    if "cold" in parts and not ensure_build(args.smoke):
        log(f"smoke run: no {BUILD_DIR} (infra/sam.sh build makes it): the cold starts are left out")
        parts.discard("cold")
    psycopg = ensure_psycopg()
    python = runtime_python() if "cold" in parts else None
    runtime_version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                     capture_output=True, text=True, check=True).stdout.strip() if python else "-"
    import_project()
    import pg8000
    import pg8000.native
    import sqlalchemy

    from bench._support import migrate
    from shared.local.tls_postgres import tls_postgres
    from shared.template import functions

    check = Checks()
    previous_url = os.environ.get("DATABASE_URL")
    try:
        with tls_postgres() as server:
            migrate(server.url)
            direct = pg8000.native.Connection(server.user, host=server.host, port=server.port, password=server.password,
                                              database=server.database,
                                              ssl_context=ssl.create_default_context(cafile=server.ca_path))
            try:
                head = schema_revision(direct)
            finally:
                direct.close()
            template_functions = functions()
            handlers = {name: template_functions[name].load_handler() for name in ("GetTask", "ListTasks", "CreateTask")}
            seeded = seed(handlers)

            connection = warm = cold = None
            if "connection" in parts:
                log("1/3 connection ...")
                connection = bench_connection(server, psycopg, args.conn_samples)
            if "warm" in parts:
                log("2/3 warm calls ...")
                warm = bench_warm(server, handlers, seeded, args.warm_samples)
            if "cold" in parts:
                log("3/3 cold starts ...")
                only = set(args.functions.split(",")) if args.functions else None
                cold = bench_cold(server, seeded, args.cold_rounds, min(args.source_rounds, args.cold_rounds), python, only)

            print("=" * 110)
            print("bench/run.py: cold starts and warm calls, side by side (every figure from this run)")
            print(f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs, shared and noisy: "
                  "other jobs run at the same time, so single times swing widely;")
            print("         read the medians of interleaved samples and the ratios between variants, not single times.")
            print(f"Python: bench {platform.python_version()} (connection, warm calls), functions {runtime_version} "
                  f"(cold starts: {python or '-'})")
            print(f"Stack: pg8000 {pg8000.__version__} (every flight), SQLAlchemy {sqlalchemy.__version__} (still imported: "
                  f"the URL parser, SQLModel's tables), psycopg {psycopg.__version__}, "
                  f"{ssl.OPENSSL_VERSION}")
            print(f"Server: Postgres {server.server_version} on localhost, TLS only (verify-full against its own CA), "
                  f"SCRAM-SHA-256; migrated to {head}; {SEEDED_TASKS} tasks of one user")
            print("Powertools: POWERTOOLS_LOG_LEVEL=WARNING (no INFO log line per call); metrics still computed and "
                  "flushed each call, their EMF stdout line sent to /dev/null")
            conn_summary = print_connection(connection, args.conn_samples, psycopg, check) if connection else None
            warm_ratios = print_warm(warm, args.warm_samples) if warm else {}
            cold_summary = print_cold(cold, args.cold_rounds, min(args.source_rounds, args.cold_rounds)) if cold else None
            priming = {}
            if cold:
                print_profile(cold["profile"])
                priming = print_priming(cold)
                for name, error in cold["failures"].items():
                    check(False, f"cold start of {name}: {error}")
            goals = []
            if conn_summary:
                goals.append(Goal("connection project/libpq", conn_summary["ratio"], 1.0))
            goals += [Goal(f"warm {label}", ratio, 1.3) for label, ratio in warm_ratios.items()]
            if cold_summary and "warm" in cold_summary:
                goals.append(Goal("cold shipped/warm .pyc", cold_summary["warm"], 1.1))
            if priming:
                goals.append(Goal("first event after priming/warm event", priming["primed"], 1.2,
                                  note=f"worst function {priming['worst']:.2f}"))
            if cold_summary and "monolith" in cold_summary:
                goals.append(Goal("cold per-function/monolith", cold_summary["monolith"], 1.0,
                                  note=cold_summary["monolith_met"]))
            print_summary("GOALS", goals, smoke=args.smoke)
            if parts != {"connection", "warm", "cold"}:
                print(f"   (PARTIAL RUN: only {', '.join(sorted(parts))})")
            cold_note = (f" (cold starts {cold['elapsed']:.0f} s for {sum(len(v) for v in cold['results'].values())} processes)"
                         if cold else "")
            print(f"\nWhole run: {time.perf_counter() - started:.0f} s{cold_note}")
    finally:
        set_database_url(previous_url)
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main_exit(main))
