"""The scheduled reminders at size: one run drains the due reminders among a million tasks;
throughput, whether memory stays flat as the backlog grows, and the plan of a batch.

    .venv/bin/python bench/reminders.py [--due 10000 100000] [--tasks 1000000] [--users 50]
    .venv/bin/python bench/reminders.py --smoke      # 100 and 400 due among 20,000: every path, seconds

Creates its own database (bench/_support.py), migrates it with the project's migrations, and
for each backlog D:

1. fills it in SQL: --tasks tasks over --users users, of which D are due reminders
   (remind_at within the last 12 hours, open, live), the rest a realistic mix that the
   partial index must NOT hold: reminders already sent, reminders in the future, completed
   or trashed tasks with a past remind_at, and tasks without one; VACUUM ANALYZE, CHECKPOINT;
2. takes the plan of one batch's statement exactly as the job runs it (role
   todo_reminders, in a flight): it must read ix_tasks_due_reminders, no Seq Scan, no Sort;
3. runs ONE `shared.reminders.run_reminders` (no time limit, the shipped BATCH_SIZE) in a
   FRESH Python subprocess, with a publisher that accepts every entry at once (an in-process
   stand-in for EventBridge, so the figure is the job's own cost: the database, the events'
   building and JSON, the marks; a real PutEvents adds its network time per chunk), which
   reports its wall time and ru_maxrss before and after the run;
4. checks that exactly the D due reminders were published, once each, and are marked sent,
   and that nothing else was touched.

Prints a table and the ratios (memory at the largest / smallest backlog: goal <= 1.2;
throughput: goal, it does not fall). Drops the database at the end, also on Ctrl-C/SIGTERM.
Exit status 1 when a check failed. Every figure is from this run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._support import Checks, Goal, Scratch, add_smoke_flag, main_exit, print_summary, scratch_database  # noqa: E402


# ---------------------------------------------------------------------------- the child: one run


def child() -> None:
    """One reminders run in this fresh process; one JSON line on stdout, the rest on stderr."""
    import logging
    import resource
    from contextlib import redirect_stdout

    with redirect_stdout(sys.stderr):
        from shared import events, reminders
        from shared.observability import logger, metrics

        logging.getLogger(logger.name).setLevel(logging.WARNING)  # no line per event

        class Accepting:
            """EventBridge that accepts every entry at once; keeps only a count and a checksum."""

            def __init__(self) -> None:
                self.calls = 0
                self.entries = 0
                self.task_ids: set[str] = set()

            def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
                self.calls += 1
                self.entries += len(Entries)
                for entry in Entries:
                    self.task_ids.add(json.loads(entry["Detail"])["task_id"][:8])  # a prefix: a check, small
                return {"FailedEntryCount": 0, "Entries": [{"EventId": "x"} for _ in Entries]}

        bus = Accepting()
        publisher = events.EventBridgePublisher("bench", bus)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        result = reminders.run_reminders(publisher=publisher)
        seconds = time.perf_counter() - started
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        metrics.clear_metrics()
    print(
        json.dumps(
            {
                "result": result,
                "seconds": seconds,
                "rss_before_kib": rss_before,
                "rss_peak_kib": rss_peak,
                "calls": bus.calls,
                "entries": bus.entries,
                "batch_size": reminders.BATCH_SIZE,
            }
        )
    )


# ---------------------------------------------------------------------------- the parent


def seed(db: Scratch, due: int, tasks: int, users: int) -> float:
    """`due` due reminders among `tasks` tasks; indexes dropped for the load and rebuilt."""
    started = time.perf_counter()
    sql = db.connect()
    try:
        sql.run("TRUNCATE task_tags, tasks, categories, idempotency_keys, change_log, users")
        sql.run("INSERT INTO users (id) SELECT 'bench-user-' || u FROM generate_series(1, :users) u", users=users)
        indexes = sql.run(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'tasks' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'tasks'::regclass)"
        )
        for name, _ in indexes:
            sql.run(f'DROP INDEX "{name}"')
        # Row i: due when i % k == 0 (spread through the table), else one of five kinds that
        # are not due: sent, future, completed, trashed (each with a past remind_at), none.
        sql.run(
            """
            INSERT INTO tasks (id, user_id, title, created_at, updated_at, remind_at, reminded_at, completed, completed_at, deleted_at)
            SELECT gen_random_uuid(), 'bench-user-' || (1 + i % :users), 'task ' || i, now() - interval '30 days', now() - interval '30 days',
                   CASE WHEN due OR kind IN (0, 2, 3) THEN now() - random() * interval '12 hours'
                        WHEN kind = 1 THEN now() + interval '1 day' + random() * interval '30 days' END,
                   CASE WHEN NOT due AND kind = 0 THEN now() - interval '2 days' END,
                   NOT due AND kind = 2,
                   CASE WHEN NOT due AND kind = 2 THEN now() END,
                   CASE WHEN NOT due AND kind = 3 THEN now() END
            FROM (SELECT i, i % (:tasks / :due) = 0 AND i / (:tasks / :due) <= :due AS due, (i / 7) % 5 AS kind
                  FROM generate_series(1, :tasks) i) s
            """,
            users=users,
            tasks=tasks,
            due=due,
        )
        sql.run("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            sql.run(definition)
        sql.run("VACUUM ANALYZE tasks")
        sql.run("CHECKPOINT")
    finally:
        sql.close()
    return time.perf_counter() - started


def counts(db: Scratch) -> dict[str, int]:
    sql = db.connect()
    try:
        (row,) = sql.run(
            """
            SELECT count(*) FILTER (WHERE remind_at <= now() AND reminded_at IS NULL AND NOT completed AND deleted_at IS NULL),
                   count(*) FILTER (WHERE reminded_at > now() - interval '1 day'),
                   count(*)
            FROM tasks
            """
        )
        return {"due": row[0], "marked_by_run": row[1], "tasks": row[2]}
    finally:
        sql.close()


def plan(db: Scratch) -> str:
    code = (
        "import sys, json; sys.path.insert(0, '.'); "
        "from shared import db, reminders; "
        "q = reminders._TAKE(cutoff=None, floor=None, failed=[], max_late_hours=24, n=reminders.BATCH_SIZE); "
        "(r,) = db.flight(db.Query('EXPLAIN (ANALYZE, BUFFERS) ' + q.text, q.params), role=reminders.ROLE); "
        "print(chr(10).join(row['QUERY PLAN'] for row in r.rows))"
    )
    env = {**os.environ, "DATABASE_URL": db.url}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"EXPLAIN failed:\n{done.stderr[-3000:]}")
    return done.stdout


def run_child(db: Scratch) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": db.url}
    env.pop("REMINDER_MAX_LATE_HOURS", None)
    env.pop("EVENT_BUS_NAME", None)
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child"], env=env, capture_output=True, text=True, timeout=1800
    )
    if completed.returncode != 0:
        raise SystemExit(f"the reminders run failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(db: Scratch, due: int, tasks: int, users: int, checks: Checks) -> dict[str, Any]:
    seeded = seed(db, due, tasks, users)
    before = counts(db)
    the_plan = plan(db)
    run = run_child(db)
    after = counts(db)
    result = run["result"]
    label = f"{due:,} due"
    checks(before["due"] == due, f"{label}: seeded exactly the due reminders ({before['due']:,})")
    checks(result == {"sent": due, "skipped_late": 0, "finished": True}, f"{label}: result {json.dumps(result)}")
    checks(run["entries"] == due, f"{label}: published once each ({run['entries']:,} entries)")
    checks(after["due"] == 0 and after["marked_by_run"] == due, f"{label}: nothing due left, exactly the due ones marked {json.dumps(after)}")
    checks("ix_tasks_due_reminders" in the_plan, f"{label}: the batch reads ix_tasks_due_reminders")
    checks("Seq Scan" not in the_plan and "Sort" not in the_plan, f"{label}: no Seq Scan, no Sort in the batch's plan")
    row = {"due": due, **run, "rows_per_s": due / run["seconds"], "plan": the_plan}
    print(f"-- {due:,} due reminders among {tasks:,} tasks (seeded in {seeded:.1f} s)")
    print(f"   result        {json.dumps(result)}")
    print(f"   run time      {run['seconds']:.2f} s, {run['calls']:,} PutEvents calls of <= 10, batches of {run['batch_size']}")
    print(f"   throughput    {row['rows_per_s']:,.0f} reminders sent / s")
    print(f"   peak RSS      {run['rss_peak_kib'] / 1024:.1f} MiB (before the run {run['rss_before_kib'] / 1024:.1f} MiB)")
    print("   plan of one batch (EXPLAIN ANALYZE, as todo_reminders):")
    for line in the_plan.strip().splitlines():
        print(f"     {line}")
    print()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--due", type=int, nargs="+", default=[10_000, 100_000], help="due reminders per run")
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks in the table")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.child:
        child()
        return 0
    if args.smoke:
        args.due, args.tasks, args.users = [100, 400], 20_000, 5

    checks = Checks()
    rows = []
    with scratch_database("todo_bench_reminders") as db:
        sql = db.connect()
        server_version = sql.run("SHOW server_version")[0][0]
        sql.close()
        print(f"reminders benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs, Postgres {server_version} "
              f"({db.server.where}), {args.tasks:,} tasks over {args.users} users\n")
        for due in args.due:
            rows.append(measure(db, due, args.tasks, args.users, checks))

    print(f"{'due':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13} {'growth MiB':>11}")
    for row in rows:
        print(f"{row['due']:>10,} {row['seconds']:>8.2f} {row['rows_per_s']:>10,.0f} {row['rss_peak_kib'] / 1024:>13.1f} "
              f"{(row['rss_peak_kib'] - row['rss_before_kib']) / 1024:>11.1f}")
    goals = []
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        label = f"{large['due']:,} vs {small['due']:,} due:"
        goals = [
            Goal(f"{label} peak memory", large["rss_peak_kib"] / small["rss_peak_kib"], 1.2),
            Goal(f"{label} throughput", large["rows_per_s"] / small["rows_per_s"], 1.0, at_least=True),
        ]
    print_summary("GOALS (largest backlog against the smallest)", goals, smoke=args.smoke)
    return checks.exit_status()


if __name__ == "__main__":
    sys.exit(main_exit(main))
