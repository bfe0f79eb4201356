"""The change log: a feed page at 1M log entries vs 1k, and what the log costs a write.

    .venv/bin/python bench/changes.py [--samples 31] [--big 1000000] [--small 1000]
    .venv/bin/python bench/changes.py --smoke     # 20k vs 200 entries, 2 samples: every path, seconds

Issue 15. What it does, in order:

1. Two databases of its own (bench/_support.py), both migrated by the project's migrate():
   `with`, as the code is, and `without`, the same schema with the change log's six
   triggers dropped (the only switch, and only here: no runtime flag exists).
2. In both (the same rows): a user `big` with --big log entries and a user `small` with --small, made in
   SQL (`generate_series`, one INSERT): the small user's entries lie one in (big/small)
   rows among the big one's, as a real user's are written between everyone else's. Each
   entry names one of the user's 200 live tasks (a page of 100 entries names 100
   distinct tasks: the page's cost includes reading 100 objects). VACUUM ANALYZE.
3. Feed pages of 100 through the real ListChanges handler (event in, response out, its own
   connection), interleaved: `head` (the cursor 100 entries before the end: what a synced
   client reads) and `deep` (the cursor at entry 10: the oldest of the history), for both
   users; each page is checked first (100 items, the right next cursor). Ratios big/small,
   goal <= 1.3 each. The plan of each page, as the function runs it (role todo_app,
   app.user_id set, EXPLAIN ANALYZE BUFFERS): it must read change_log by its primary key
   with `seq` in the Index Cond, and the buffers it touched are printed.
4. The write path: warm CreateTask through the real handler against `with` and `without`,
   interleaved (the same user, the same body; a task in a category too, whose task_count
   the log records), and the flight alone (the handler's statements on an open
   connection). Ratio with/without, goal <= 1.1 for the handler. The round trips are
   bench/round_trips.py's (ListChanges included, one flight like every route).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from _support import (
    Checks,
    Goal,
    add_smoke_flag,
    interleaved,
    main_exit,
    median_ms,
    p90_ms,
    print_summary,
    scratch_database,
    set_database_url,
)

PAGE = 100
OBJECTS = 200  # live tasks per user that the entries name
TRIGGERS = [(table, name) for table in ("tasks", "categories") for name in ("change_log_inserted", "change_log_updated", "change_log_deleted")]


def log(message: str = "") -> None:
    print(message, flush=True)


def populate(sql: Any, big: int, small: int) -> None:
    """Users, their live tasks, and the log: the small user's entries spread among the big one's."""
    for user in ("big", "small", "writer"):
        sql.run("INSERT INTO users (id) VALUES (:u)", u=user)
        sql.run(
            "INSERT INTO tasks (id, user_id, title) SELECT gen_random_uuid(), :u, 'task ' || i FROM generate_series(1, :n) i",
            u=user, n=OBJECTS,
        )  # fmt: skip
    sql.run("DELETE FROM change_log")  # the rows above logged themselves: the history is made below
    every = max(1, big // small)
    sql.run(
        """
        WITH objects AS (
            SELECT user_id, array_agg(id ORDER BY id) AS ids FROM tasks GROUP BY user_id
        ), rows AS (
            SELECT g, CASE WHEN g % (:every::int + 1) = 0 AND g / (:every::int + 1) <= :small::int THEN 'small' ELSE 'big' END AS user_id
            FROM generate_series(1, :big::int + :small::int) g
        ), numbered AS (
            SELECT g, user_id, row_number() OVER (PARTITION BY user_id ORDER BY g) AS seq FROM rows
        )
        INSERT INTO change_log (user_id, seq, kind, object_id, action, at, published_at)
        SELECT n.user_id, n.seq, 'task', o.ids[1 + (n.seq % :objects::int)], 'updated',
               now() - interval '20 days' + n.g * interval '1 millisecond', now()
        FROM numbered n JOIN objects o ON o.user_id = n.user_id
        ORDER BY n.g
        """,
        every=every, small=small, big=big, objects=OBJECTS,
    )  # fmt: skip
    sql.run("UPDATE users u SET last_change = (SELECT coalesce(max(seq), 0) FROM change_log c WHERE c.user_id = u.id)")
    sql.run("VACUUM ANALYZE change_log")
    sql.run("VACUUM ANALYZE tasks")
    sql.run("VACUUM ANALYZE users")


class Feed:
    def __init__(self) -> None:
        from shared.local.apigw import build_http_event, response_body
        from shared.local.lambda_context import FakeLambdaContext
        from shared.pagination import encode_cursor
        from shared.template import functions

        self.handler = functions()["ListChanges"].load_handler()
        self.context, self.body, self.build, self.encode = FakeLambdaContext, response_body, build_http_event, encode_cursor

    def event(self, user: str, after: int) -> dict[str, Any]:
        cursor = self.encode(["c", after], {"list": "changes", "user": user})
        return self.build(method="GET", path=f"/api/{user}/changes", route_path="/api/{user_id}/changes",
                          raw_query=f"limit={PAGE}&cursor={cursor}", claims={"sub": user})  # fmt: skip

    def call(self, event: dict[str, Any]) -> dict[str, Any]:
        response = self.handler(event, self.context("ListChanges"))
        assert response["statusCode"] == 200, response
        return json.loads(self.body(response))


def explain(user: str, after: int) -> dict[str, Any]:
    """The page's plan as the function runs it: a flight as todo_app with app.user_id = user."""
    from shared import changes, db

    statement = changes._CHANGES_PAGE(user_id=user, after=after, n=PAGE + 1)
    (result,) = db.flight(db.Query(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement.text}", statement.params), user_id=user)
    return result.rows[0]["QUERY PLAN"][0]


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


def feed_part(args: argparse.Namespace, checks: Checks, goals: list[Goal]) -> None:
    feed = Feed()
    sizes = {"big": args.big, "small": args.small}
    cases = {(user, depth): after for user, size in sizes.items() for depth, after in (("head", size - PAGE - 1), ("deep", 10))}
    events = {key: feed.event(key[0], after) for key, after in cases.items()}
    for (user, depth), after in cases.items():
        page = feed.call(events[(user, depth)])
        checks(len(page["items"]) == PAGE and page["has_more"] == (after + PAGE < sizes[user]),
               f"{user} {depth}: {len(page['items'])} items after entry {after}, has_more {page['has_more']}")  # fmt: skip
        plan = explain(user, after)
        scans = [n for n in nodes(plan["Plan"]) if n.get("Relation Name") == "change_log" and n["Node Type"].startswith("Index")]
        by_key = [n for n in scans if n.get("Index Name") == "change_log_pkey" and "seq" in n.get("Index Cond", "")]
        buffers = sum(n.get("Shared Hit Blocks", 0) + n.get("Shared Read Blocks", 0) for n in nodes(plan["Plan"])[:1])
        checks(bool(by_key), f"{user} {depth}: change_log read by its primary key, seq in the Index Cond"
               f" ({', '.join(n['Node Type'] + ' ' + n.get('Index Name', '') for n in scans) or 'no index scan'})")  # fmt: skip
        log(f"     plan {user} {depth}: {plan['Execution Time']:.2f} ms in the server, {buffers} buffers")
    for _ in range(2):  # warm
        for event in events.values():
            feed.call(event)
    times = interleaved({key: (lambda event=event: feed.call(event) and None) for key, event in events.items()}, args.samples)
    log(f"\n  feed pages of {PAGE}, handler (ms, median / p90 of {args.samples}):")
    for key, seconds in times.items():
        log(f"     {key[0]:<6} {key[1]:<5} {median_ms(seconds):7.2f} / {p90_ms(seconds):7.2f}")
    for depth in ("head", "deep"):
        ratio = median_ms(times[("big", depth)]) / median_ms(times[("small", depth)])
        goals.append(Goal(f"feed page {depth}: {args.big:,} entries / {args.small:,}", ratio, 1.3))


def write_part(urls: dict[str, str], args: argparse.Namespace, checks: Checks, goals: list[Goal], sqls: dict[str, Any]) -> None:
    from shared import db
    from shared.local.apigw import build_http_event
    from shared.local.lambda_context import FakeLambdaContext
    from shared.template import functions

    handler = functions()["CreateTask"].load_handler()
    categories = {}
    for name, sql in sqls.items():
        category = str(uuid.uuid4())
        sql.run("INSERT INTO categories (id, user_id, name) VALUES (:id, 'writer', 'bench')", id=category)
        categories[name] = category

    def create(name: str, in_category: bool) -> float:
        body = {"title": f"bench {uuid.uuid4().hex[:8]}", "priority": "high", "tags": ["bench"]}
        if in_category:
            body["category_id"] = categories[name]
        event = build_http_event(method="POST", path="/api/writer/tasks", route_path="/api/{user_id}/tasks", raw_query="",
                                 headers={"content-type": "application/json"}, body=json.dumps(body).encode(),
                                 claims={"sub": "writer", "email": "writer@example.com"})  # fmt: skip
        set_database_url(urls[name])  # untimed: which database this call writes to
        started = time.perf_counter()
        response = handler(event, FakeLambdaContext("CreateTask"))
        elapsed = time.perf_counter() - started
        assert response["statusCode"] == 201, response
        return elapsed

    ops = {(name, in_category): (lambda name=name, c=in_category: create(name, c)) for name in urls for in_category in (False, True)}
    for op in ops.values():  # warm: imports, first connects
        op()
        op()
    times = interleaved(ops, args.samples)
    log(f"\n  CreateTask, warm handler (ms, median / p90 of {args.samples}):")
    for (name, in_category), seconds in times.items():
        log(f"     {name:<8} {'in a category' if in_category else 'no category':<14} {median_ms(seconds):7.2f} / {p90_ms(seconds):7.2f}")
    for in_category in (False, True):
        ratio = median_ms(times[("with", in_category)]) / median_ms(times[("without", in_category)])
        goals.append(Goal(f"CreateTask{' in a category' if in_category else ''}: with the log / without", ratio, 1.1))
    logged = sqls["with"].run("SELECT count(*) FROM change_log WHERE user_id = 'writer'")[0][0]
    unlogged = sqls["without"].run("SELECT count(*) FROM change_log WHERE user_id = 'writer'")[0][0]
    per_case = 2 + args.samples  # warm-ups and samples
    expected = 1 + 2 * per_case + per_case  # the category made above, every task, the category's entry of those in it
    checks(logged == expected and unlogged == 0,
           f"the log holds every create made with it ({logged} entries of {expected}), none without ({unlogged})")  # fmt: skip

    # The flight alone: the statements CreateTask sends, on one open connection per side.
    from shared.auth import Caller
    from shared.tasks import _CREATE
    from shared.users import ensure_user

    def flight_once(name: str) -> float:
        set_database_url(urls[name])
        caller = Caller(user_id="writer", email="writer@example.com")
        insert = _CREATE(id=uuid.uuid4(), user_id="writer", now=datetime.now(timezone.utc), title="flight", description=None, completed=False,
                         priority=1, due_at=None, category_id=None, tags=[], recurrence=None, timezone="UTC",
                         occurrences=None, occurrences_after=None, occurrences_complete=False, remind_at=None,
                         idempotency_key=None)  # fmt: skip
        started = time.perf_counter()
        db.flight(ensure_user(caller), insert, user_id="writer")
        return time.perf_counter() - started

    flights = interleaved({name: (lambda name=name: flight_once(name)) for name in urls}, args.samples)
    ratio = median_ms(flights["with"]) / median_ms(flights["without"])
    log(f"     the flight alone (connect + one round trip): with {median_ms(flights['with']):.2f} ms, without {median_ms(flights['without']):.2f} ms")
    goals.append(Goal("CreateTask's flight alone: with / without", ratio, None, note="reported, not judged"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=31, help="timed calls per case (default 31)")
    parser.add_argument("--big", type=int, default=1_000_000, help="log entries of the big user")
    parser.add_argument("--small", type=int, default=1_000, help="log entries of the small user")
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.samples, args.big, args.small = 2, 20_000, 200
    wall = time.perf_counter()
    checks, goals = Checks(), []
    with scratch_database("todo_bench_changes_without") as without, scratch_database("todo_bench_changes") as with_log:
        sqls = {"with": with_log.connect(), "without": without.connect()}
        try:
            for table, name in TRIGGERS:
                sqls["without"].run(f"DROP TRIGGER {name} ON {table}")
            (version,), = sqls["with"].run("SHOW server_version")
            log(f"Postgres {version} at {with_log.server.where}; {os.cpu_count()} cores; {args.samples} samples per case, interleaved.")
            began = time.perf_counter()
            for sql in sqls.values():  # the same rows in both: only the triggers differ
                populate(sql, args.big, args.small)
            log(f"  made {args.big:,} + {args.small:,} log entries in each database in {time.perf_counter() - began:.1f} s"
                " (one INSERT ... generate_series)")
            set_database_url(with_log.url)
            feed_part(args, checks, goals)
            write_part({"with": with_log.url, "without": without.url}, args, checks, goals, sqls)
        finally:
            for sql in sqls.values():
                sql.close()
    print_summary("bench/changes.py", goals, smoke=args.smoke)
    log(f"\nwall time {time.perf_counter() - wall:.1f} s")
    return checks.exit_status()


if __name__ == "__main__":
    raise SystemExit(main_exit(main))
