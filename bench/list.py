"""GET /tasks at 1k, 100k and 1M tasks of one user: does a page cost the same at any size?

    .venv/bin/python bench/list.py [--samples 41] [--sizes 1000,100000,1000000]
    .venv/bin/python bench/list.py --smoke     # 500 and 1,000 tasks, 1 sample: every path, seconds

Issue 4's benchmark. What it does, in order:

1. Creates a database of its own on 127.0.0.1:5432 (or, when nothing listens there, on a
   throwaway embedded Postgres), migrates it with the project's own `migrate()`, and drops
   it at the end, also on Ctrl-C, SIGTERM or an error (bench/_support.py).
2. Grows ONE table in steps: the benchmark user's tasks to 1k, measure, to 100k, measure,
   to 1M, measure; plus 10% as many tasks of 100 other users (owner filtering matters).
   Rows are made in SQL (`INSERT ... SELECT ... FROM generate_series`, 100k a statement)
   into the table with all of its indexes, with ties everywhere a real list has them: two-
   or three-word titles from a 40-word list in three casings (lower(title) ties, ~17.6k
   distinct), priority 25/50/25% over its 3 values, 30% without due_at and the others on
   1,096 distinct instants, created_at at minute resolution over a year, updated_at equal
   to it for 40%, 30% completed, 5% in the trash, 30% tagged. created_at is NOT correlated
   with the physical row order (the worst case for heap locality). After each step:
   `VACUUM ANALYZE tasks`, i.e. what autovacuum converges a real database to.
3. For each size and each of the 10 sorts, two pages of 50: page 1, and the deep page that
   starts at the middle of the list (its cursor is built from the row at OFFSET live/2,
   read once with the sort's own expression, and signed with `list_tasks`'s own binding);
   for the two due_at sorts also a page in the tail of tasks without due_at (row 0.85*live,
   a cursor holding 'infinity' / '-infinity'). Every page is first checked against SQL (the
   same 50 ids, in order), then timed N times, interleaved in a shuffled order each round so
   that machine drift hits all alike:
     handler  the real ListTasks Lambda handler, event in, response out (its own new
              connection, FastAPI, Mangum, Powertools), as API Gateway would call it;
     sql      the same `page_query` statement on a kept-open connection (no connect,
              no HTTP), to tell the query's cost from the constant cost around it.
   The same pages of a second user with 1,000 tasks (`bench-control`, inserted in the first
   step) are timed in the same rounds: sizes are measured minutes apart, and a shared
   machine drifts; 1M against that user at the same moment is the drift-free ratio.
4. Prints the medians, the ratio 1M/1k (goal: <= 1.3), the plan of every 1M case
   (`EXPLAIN (ANALYZE, BUFFERS)`: top nodes, index, whether a Sort node appears) and the
   full plan of the slowest 1M case.

Handlers log at WARNING (POWERTOOLS_LOG_LEVEL) and their per-call EMF metrics line, which
Powertools prints on stdout, goes to /dev/null: it is still produced, as in Lambda.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before any handler (Powertools Logger reads it when the module is imported).
os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "todo-api-bench")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pg8000.native  # noqa: E402

from bench._support import (  # noqa: E402
    Goal, Scratch, add_smoke_flag, interleaved, main_exit, print_summary, scratch_database, schema_revision,
)

USER = "bench-user"
CONTROL = "bench-control"  # 1,000 tasks from the first step on: the same-moment 1k reference
CONTROL_SIZE = 1000
NOISE_USERS = 100
PAGE = 50
SORTS = ["created_at", "-created_at", "updated_at", "-updated_at", "due_at", "-due_at", "priority", "-priority", "title", "-title"]
# Where a page starts, as a fraction of the live list (None: page 1). `nulls` is in the due_at
# sorts' tail of tasks without due_at (the last 30%): its cursor holds 'infinity'/'-infinity'.
DEPTHS = {"page1": None, "middle": 0.5}
NULLS_DEPTH = {"nulls": 0.85}


def depths(sort: str) -> dict[str, float | None]:
    return {**DEPTHS, **NULLS_DEPTH} if sort.lstrip("-") == "due_at" else DEPTHS


def case_keys() -> list[tuple[str, str]]:
    return [(sort, depth) for sort in SORTS for depth in depths(sort)]
GOAL = 1.3

WORDS = [
    "buy", "call", "fix", "write", "review", "plan", "book", "send", "clean", "pay",
    "read", "check", "update", "email", "order", "prepare", "cancel", "renew", "print", "sign",
    "milk", "report", "invoice", "dentist", "car", "taxes", "slides", "garden", "flight", "hotel",
    "budget", "lunch", "meeting", "backup", "laptop", "gift", "doctor", "rent", "code", "notes",
]  # fmt: skip
THIRD = ["today", "tomorrow", "asap", "later", "again", "monday", "friday", "soon", "now", "first"]


def log(message: str = "") -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------- the database


def _words(words: list[str]) -> str:
    return "ARRAY[" + ",".join(f"'{w}'" for w in words) + "]"


# One statement adds :n rows for one owner expression; every random() is drawn once a row
# (OFFSET 0 keeps the inner query from being flattened into the outer one).
INSERT_SQL = f"""
INSERT INTO tasks (id, user_id, title, description, completed, completed_at, priority, due_at,
                   tags, created_at, updated_at, deleted_at, version)
SELECT gen_random_uuid(), owner,
       CASE WHEN r_case < 0.5 THEN w1 WHEN r_case < 0.8 THEN initcap(w1) ELSE upper(w1) END
           || ' ' || w2 || CASE WHEN r_third < 0.25 THEN ' ' || w3 ELSE '' END,
       CASE WHEN r_desc < 0.2 THEN 'notes about ' || w2 || ' ' || w3 END,
       r_done < 0.3,
       CASE WHEN r_done < 0.3 THEN created + updated_after END,
       (CASE WHEN r_prio < 0.25 THEN 0 WHEN r_prio < 0.75 THEN 1 ELSE 2 END)::smallint,
       CASE WHEN r_due < 0.3 THEN NULL
            ELSE timestamptz '2024-01-01 00:00:00+00' + due_day * interval '1 day'
                 + CASE WHEN r_due_hour < 0.5 THEN interval '9 hours' ELSE interval '17 hours' END END,
       CASE WHEN r_tag < 0.7 THEN '{{}}'::varchar(50)[]
            WHEN r_tag < 0.9 THEN ARRAY['work']::varchar(50)[]
            ELSE ARRAY['home', 'urgent']::varchar(50)[] END,
       created,
       created + updated_after,
       CASE WHEN r_trash < 0.05 THEN created + updated_after + interval '1 day' END,
       1
FROM (
    SELECT {{owner}} AS owner,
           ({_words(WORDS)})[1 + floor(random() * {len(WORDS)})::int] AS w1,
           ({_words(WORDS)})[1 + floor(random() * {len(WORDS)})::int] AS w2,
           ({_words(THIRD)})[1 + floor(random() * {len(THIRD)})::int] AS w3,
           random() AS r_case, random() AS r_third, random() AS r_desc, random() AS r_done,
           random() AS r_prio, random() AS r_due, floor(random() * 548)::int AS due_day,
           random() AS r_due_hour, random() AS r_tag, random() AS r_trash,
           timestamptz '2024-01-01 00:00:00+00' + floor(random() * 525600)::int * interval '1 minute' AS created,
           CASE WHEN random() < 0.4 THEN interval '0' ELSE floor(random() * 2592000)::int * interval '1 second' END
               AS updated_after
    FROM generate_series(1, :n) AS g
    OFFSET 0
) AS r
"""


@dataclass
class Builder:
    """Grows the tasks table in place; remembers what it holds and what it cost."""

    sql: pg8000.native.Connection
    chunk: int
    noise_fraction: float
    rows_user: int = 0
    rows_noise: int = 0
    seconds: dict[int, tuple[float, float]] = field(default_factory=dict)  # size -> (insert, vacuum)

    def setup(self) -> None:
        self.sql.run("SELECT setseed(0.4242)")
        self.sql.run(
            "INSERT INTO users (id, email) SELECT :u, NULL UNION ALL SELECT :c, NULL UNION ALL "
            "SELECT 'bench-noise-' || k, NULL FROM generate_series(0, :m) AS k",
            u=USER,
            c=CONTROL,
            m=NOISE_USERS - 1,
        )

    def _insert(self, owner_sql: str, count: int) -> None:
        statement = INSERT_SQL.replace("{owner}", owner_sql)
        done = 0
        while done < count:
            n = min(self.chunk, count - done)
            self.sql.run(statement, n=n)  # autocommit: one transaction per chunk
            done += n

    def grow_to(self, size: int) -> None:
        started = time.perf_counter()
        add = size - self.rows_user
        noise = round(size * self.noise_fraction) - self.rows_noise
        self._insert(pg8000.native.literal(USER), add)
        if self.rows_user == 0:
            self._insert(pg8000.native.literal(CONTROL), CONTROL_SIZE)
        self._insert(f"'bench-noise-' || floor(random() * {NOISE_USERS})::int", noise)
        self.rows_user += add
        self.rows_noise += noise
        inserted = time.perf_counter() - started
        started = time.perf_counter()
        self.sql.run("VACUUM ANALYZE tasks")
        self.seconds[size] = (inserted, time.perf_counter() - started)

    def describe(self) -> str:
        (live,), = self.sql.run("SELECT count(*) FROM tasks WHERE user_id = :u AND deleted_at IS NULL", u=USER)
        (stats,) = self.sql.run(
            """
            SELECT count(DISTINCT lower(title)), count(DISTINCT priority),
                   round(100.0 * count(*) FILTER (WHERE due_at IS NULL) / count(*), 1),
                   count(DISTINCT due_at), count(DISTINCT created_at), count(DISTINCT updated_at),
                   round(100.0 * count(*) FILTER (WHERE completed) / count(*), 1),
                   round(100.0 * count(*) FILTER (WHERE deleted_at IS NOT NULL) / count(*), 1)
            FROM tasks WHERE user_id = :u
            """,
            u=USER,
        )
        (sizes,) = self.sql.run(
            "SELECT pg_size_pretty(pg_table_size('tasks')), pg_size_pretty(pg_indexes_size('tasks')),"
            " (SELECT string_agg(indexrelid::regclass::text, ', ' ORDER BY indexrelid::regclass::text)"
            "  FROM pg_index WHERE indrelid = 'tasks'::regclass)"
        )
        return (
            f"{USER}: {self.rows_user:,} tasks ({live:,} live, {stats[7]}% trashed), other users: {self.rows_noise:,};"
            f" distinct lower(title) {stats[0]:,}, priorities {stats[1]}, due_at null {stats[2]}%"
            f" ({stats[3]:,} distinct others), created_at {stats[4]:,} distinct, updated_at {stats[5]:,} distinct,"
            f" completed {stats[6]}%; {CONTROL}: {CONTROL_SIZE:,} tasks;"
            f" table {sizes[0]}, indexes {sizes[1]} ({sizes[2]})"
        )


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    user: str
    sort: str
    depth: str
    event: dict[str, Any]
    after: list[Any] | None  # what the handler will compare with (decoded cursor)
    expected: list[str]  # the 50 ids SQL says the page holds
    handler_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    plan_text: str | None = None


def build_cases(connection: Any, user: str) -> list[Case]:
    """Each page's event, with its cursor made exactly as `list_tasks` makes one."""
    from sqlalchemy import func, select
    from sqlmodel import col

    from shared.local.apigw import build_http_event
    from shared.models import Task
    from shared.pagination import encode_cursor
    from shared.task_listing import TaskFilters, decode_position, sort_key

    filters = TaskFilters()
    live = connection.execute(
        select(func.count()).select_from(Task).where(Task.user_id == user, col(Task.deleted_at).is_(None))
    ).scalar_one()
    cases = []
    for sort in SORTS:
        key, descending = sort_key(sort)
        order = (key.desc(), col(Task.id).desc()) if descending else (key.asc(), col(Task.id).asc())
        listing = select(key.label("v"), Task.id).where(Task.user_id == user, col(Task.deleted_at).is_(None)).order_by(*order)
        # Same binding as shared.tasks.list_tasks (what the handler checks the MAC against).
        binding = {"list": "tasks", "user": user, "sort": sort, "filters": filters.binding()}
        for depth, fraction in depths(sort).items():
            query = {"sort": sort, "limit": str(PAGE)}
            after = None
            if fraction is None:
                rows = connection.execute(listing.limit(PAGE)).all()
            else:
                rows = connection.execute(listing.offset(int(live * fraction)).limit(PAGE + 1)).all()
                start, rows = rows[0], rows[1:]
                cursor = encode_cursor([start.v, start.id], binding)
                query["cursor"] = cursor
                after = decode_position(sort, json.loads(_unb64(cursor.split(".")[0])))
            event = build_http_event(
                method="GET",
                path=f"/api/{user}/tasks",
                route_path="/api/{user_id}/tasks",
                raw_query="&".join(f"{k}={v}" for k, v in query.items()),
                claims={"sub": user},
            )
            cases.append(Case(user, sort, depth, event, after, [str(row.id) for row in rows]))
    return cases


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -------------------------------------------------------------------------- the timings


class Runner:
    def __init__(self, connection: Any) -> None:
        from shared.cli import FakeLambdaContext
        from shared.local.apigw import response_body
        from shared.template import functions

        self.handler = functions()["ListTasks"].load_handler()
        self.context = FakeLambdaContext
        self.body = response_body
        self.connection = connection  # kept open: the `sql` timings
        self.devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self.devnull.close()

    def call(self, case: Case) -> tuple[float, dict[str, Any]]:
        context = self.context("ListTasks")
        with contextlib.redirect_stdout(self.devnull):  # the EMF metrics line of every call
            started = time.perf_counter()
            response = self.handler(case.event, context)
            elapsed = time.perf_counter() - started
        return elapsed * 1000, response

    def connect(self) -> float:
        """A new connection of the project's engine, opened and closed: the floor of a call."""
        engine = self.connection.engine
        started = time.perf_counter()
        engine.connect().close()
        return (time.perf_counter() - started) * 1000

    def statement(self, case: Case) -> Any:
        from shared.task_listing import TaskFilters, page_query

        return page_query(case.user, TaskFilters(), case.sort, case.after, PAGE)

    def sql(self, case: Case) -> tuple[float, list[Any]]:
        statement = self.statement(case)
        started = time.perf_counter()
        rows = self.connection.execute(statement).all()
        return (time.perf_counter() - started) * 1000, rows

    def check(self, case: Case) -> None:
        _, response = self.call(case)
        if response["statusCode"] != 200:
            raise SystemExit(f"{case.sort} {case.depth}: HTTP {response['statusCode']} {self.body(response)[:300]!r}")
        page = json.loads(self.body(response))
        ids = [item["id"] for item in page["items"]]
        if len(ids) != PAGE or ids != case.expected or page["next_cursor"] is None:
            raise SystemExit(
                f"{case.sort} {case.depth}: the handler's page is not SQL's: {len(ids)} items,"
                f" first {ids[:1]} vs {case.expected[:1]}, next_cursor {page['next_cursor'] is not None}"
            )
        _, rows = self.sql(case)
        if [str(row[0]) for row in rows[:PAGE]] != case.expected:
            raise SystemExit(f"{case.sort} {case.depth}: page_query on the kept-open connection disagrees")

    def explain(self, case: Case) -> None:
        statement = self.statement(case)
        compiled = statement.compile(dialect=self.connection.dialect)
        params = compiled.construct_params()
        values = tuple(params[name] for name in compiled.positiontup)
        explain = "EXPLAIN (ANALYZE, BUFFERS{}) " + compiled.string
        for _ in range(3):  # one execution is at the mercy of the machine: keep the fastest
            (document,), = self.connection.exec_driver_sql(explain.format(", FORMAT JSON"), values).all()
            plan = (json.loads(document) if isinstance(document, str) else document)[0]
            if case.plan is None or plan["Execution Time"] < case.plan["Execution Time"]:
                case.plan = plan
        case.plan_text = "\n".join(row[0] for row in self.connection.exec_driver_sql(explain.format(""), values).all())


@dataclass
class Phase:
    """One size: the user's cases, the 1k control user's, and what a bare connect costs."""

    size: int
    cases: dict[tuple[str, str], Case]
    control: dict[tuple[str, str], Case]
    connect_ms: list[float] = field(default_factory=list)


def measure(runner: Runner, phase: Phase, samples: int, shuffle: random.Random) -> None:
    everything = [*phase.cases.values(), *phase.control.values()]
    for case in everything:
        runner.check(case)  # also the warm-up call of each case

    def handler(case: Case) -> float:
        elapsed, response = runner.call(case)
        if response["statusCode"] != 200:
            raise SystemExit(f"{case.user} {case.sort} {case.depth}: HTTP {response['statusCode']} during the samples")
        return elapsed / 1000

    ops: dict[Any, Any] = {"connect": lambda: runner.connect() / 1000}
    for index, case in enumerate(everything):
        ops[(index, "handler")] = lambda case=case: handler(case)
        ops[(index, "sql")] = lambda case=case: runner.sql(case)[0] / 1000
    times = interleaved(ops, samples, shuffle)
    phase.connect_ms = [t * 1000 for t in times["connect"]]
    for index, case in enumerate(everything):
        case.handler_ms = [t * 1000 for t in times[(index, "handler")]]
        case.sql_ms = [t * 1000 for t in times[(index, "sql")]]
    for case in everything:
        runner.explain(case)


# ------------------------------------------------------------------------------- report


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def plan_summary(case: Case) -> str:
    root = case.plan["Plan"]
    chain = []
    node = root
    while True:
        label = node["Node Type"]
        if "Index Name" in node:
            label += f" {'backward ' if node.get('Scan Direction') == 'Backward' else ''}{node['Index Name']}"
        chain.append(label)
        if not node.get("Plans"):
            break
        node = node["Plans"][0]
    nodes = list(_nodes(root))
    sort = any(n["Node Type"] in ("Sort", "Incremental Sort") for n in nodes)
    removed = sum(n.get("Rows Removed by Filter", 0) for n in nodes)
    buffers = root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0)
    scan = next((n for n in nodes if "Index Cond" in n or n["Node Type"] == "Seq Scan"), None)
    condition = f"; Index Cond: {scan['Index Cond']}" if scan is not None and "Index Cond" in scan else ""
    return (
        f"{' > '.join(chain)}; Sort node: {'YES' if sort else 'no'}; {buffers} buffers;"
        f" rows removed by filter {removed}; execution {case.plan['Execution Time']:.3f} ms (best of 3){condition}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def _label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k" if size >= 1000 else str(size)


def report(phases: list[Phase], smoke: bool) -> None:
    first, last = phases[0], phases[-1]
    goals: list[Goal] = []
    small, large = _label(first.size), _label(last.size)
    ctl = f"ctl@{large}"
    log()
    log("Medians in ms. Each size was measured minutes after the previous one, so a machine that got")
    log(f"slower or faster in between moves the {large}/{small} ratio. {ctl} is the {CONTROL} user ({CONTROL_SIZE:,} tasks in")
    log(f"the same table), measured interleaved with the {large} cases in the same rounds: {large}/ctl compares")
    log(f"{large} with 1k tasks at the same moment, free of that drift.")
    for kind in ("handler", "sql"):
        log()
        log(
            "HANDLER: the full ListTasks call (event in, response out, a new connection each time)"
            if kind == "handler"
            else "SQL: the same page_query statement on a kept-open connection (pg8000 + SQLAlchemy row decoding"
            " included; no connect, no HTTP)"
        )
        head = f"{'sort':<12} {'depth':<7}" + "".join(f" {_label(p.size):>8}" for p in phases)
        head += f" {large + '/' + small:>7}  goal<={GOAL} {ctl:>8} {large + '/ctl':>7}  goal<={GOAL}"
        log(head)
        log("-" * len(head))
        met = met_same = 0
        ratios, sames = [], []
        for sort, depth in case_keys():
            values = [median(getattr(p.cases[(sort, depth)], f"{kind}_ms")) for p in phases]
            control = median(getattr(last.control[(sort, depth)], f"{kind}_ms"))
            ratio, same = values[-1] / values[0], values[-1] / control
            met += ratio <= GOAL
            met_same += same <= GOAL
            ratios.append(ratio)
            sames.append(same)
            log(
                f"{sort:<12} {depth:<7}" + "".join(f" {v:8.2f}" for v in values)
                + f" {ratio:7.2f}  {'met' if ratio <= GOAL else 'NOT MET':<9} {control:8.2f} {same:7.2f}"
                + f"  {'met' if same <= GOAL else 'NOT MET'}"
            )
        total = len(case_keys())
        log(f"{kind}: {met} of {total} within {GOAL}x by {large}/{small}; {met_same} of {total} by {large}/ctl")
        goals += [
            Goal(f"{kind} {large}/{small}, worst case", max(ratios), GOAL, note=f"{met} of {total} cases met"),
            Goal(f"{kind} {large}/ctl, worst case", max(sames), GOAL, note=f"{met_same} of {total} cases met"),
        ]

    log()
    log(f"drift check, per size: median over all {len(case_keys())} cases of the control user's handler call, and of a bare")
    log("connect+close of the project engine (both should be equal at every size)")
    for p in phases:
        control_handler = median([median(c.handler_ms) for c in p.control.values()])
        control_sql = median([median(c.sql_ms) for c in p.control.values()])
        log(
            f"  at {_label(p.size):>4}: {CONTROL} handler {control_handler:6.2f} ms, sql {control_sql:5.2f} ms;"
            f" connect+close {median(p.connect_ms):5.2f} ms"
        )

    log()
    log(f"PLANS at {large} (EXPLAIN (ANALYZE, BUFFERS) of the statement the handler runs, after the samples)")
    for sort, depth in case_keys():
        log(f"{sort:<12} {depth:<7} {plan_summary(last.cases[(sort, depth)])}")
    if len(phases) > 1:
        log()
        log(f"(the same at {small}, for comparison)")
        for sort, depth in case_keys():
            log(f"{sort:<12} {depth:<7} {plan_summary(first.cases[(sort, depth)])}")
    slowest = max(last.cases.values(), key=lambda c: median(c.handler_ms))
    log()
    log(f"slowest {large} case by handler median: sort={slowest.sort} {slowest.depth}; its full plan:")
    log(slowest.plan_text or "")
    slowest_sql = max(last.cases.values(), key=lambda c: median(c.sql_ms))
    if slowest_sql is not slowest:
        log()
        log(f"slowest {large} case by SQL median: sort={slowest_sql.sort} {slowest_sql.depth}; its full plan:")
        log(slowest_sql.plan_text or "")
    print_summary("GOALS (a page costs the same at any size)", goals, smoke=smoke)


# --------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=41, help="timed calls per case and size (default 41)")
    parser.add_argument("--sizes", default="1000,100000,1000000", help="the user's task counts, growing")
    parser.add_argument("--noise", type=float, default=0.10, help="other users' tasks, as a fraction of the user's")
    parser.add_argument("--chunk", type=int, default=100_000, help="rows per INSERT statement")
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.samples, args.sizes = 1, "500,1000"
    sizes = sorted(int(s) for s in args.sizes.split(","))
    wall = time.perf_counter()
    with scratch_database("todo_bench_list") as db:
        run(db, sizes, args)
    log()
    log(f"wall time {time.perf_counter() - wall:.1f} s")
    return 0


def run(db: Scratch, sizes: list[int], args: argparse.Namespace) -> None:
    import platform

    from sqlalchemy import text

    from shared.db import get_engine

    sql = db.connect()
    (version,), = sql.run("SHOW server_version")
    settings = dict(sql.run(
        "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN"
        " ('shared_buffers', 'work_mem', 'random_page_cost', 'effective_cache_size', 'jit')"
    ))  # fmt: skip
    log(f"Postgres {version} at {db.server.where} ({', '.join(f'{k}={v}' for k, v in sorted(settings.items()))});")
    log(f"Python {platform.python_version()}, {os.cpu_count()} cores; {args.samples} samples per case, interleaved;")
    log(f"Pages of {PAGE}. page1: no cursor; middle: the page after row live/2 of that sort's order; nulls (due_at")
    log("sorts only): the page after row 0.85*live, inside the tail of tasks without due_at. Cursors are made from")
    log("that row's sort value as the database computes it, signed with list_tasks's binding.")
    log("Table grown in place, all indexes present; VACUUM ANALYZE after each step (what autovacuum converges to).")
    log(f"Schema: migrated by shared.cli.migrate() to revision {schema_revision(sql)} (whatever infra/migrations holds now).")
    builder = Builder(sql, args.chunk, args.noise)
    builder.setup()

    kept = get_engine().connect()  # the handler's own engine; one connection kept for `sql`
    kept.execute(text("SELECT 1"))
    kept.commit()
    runner = Runner(kept)
    shuffle = random.Random(4)
    phases: list[Phase] = []
    try:
        for size in sizes:
            log()
            builder.grow_to(size)
            inserted, vacuumed = builder.seconds[size]
            log(f"== {size:,} tasks: inserted in {inserted:.1f} s, VACUUM ANALYZE {vacuumed:.1f} s")
            log(builder.describe())
            phase = Phase(
                size,
                {(c.sort, c.depth): c for c in build_cases(kept, USER)},
                {(c.sort, c.depth): c for c in build_cases(kept, CONTROL)},
            )
            kept.rollback()
            started = time.perf_counter()
            measure(runner, phase, args.samples, shuffle)
            kept.rollback()
            log(
                f"checked and measured {len(phase.cases) + len(phase.control)} cases x {args.samples} samples"
                f" in {time.perf_counter() - started:.1f} s"
            )
            phases.append(phase)
    finally:
        runner.close()
        kept.close()
        sql.close()
    report(phases, args.smoke)


if __name__ == "__main__":
    sys.exit(main_exit(main))
