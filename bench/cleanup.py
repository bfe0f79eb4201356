"""The scheduled cleanup at size: throughput, and whether memory stays flat as the trash grows.

    .venv/bin/python bench/cleanup.py [--sizes 100000 1000000] [--users 50]
    .venv/bin/python bench/cleanup.py --smoke      # 100 and 400 tasks: every path, seconds

Creates its own database (bench/_support.py: on 127.0.0.1:5432, or on a throwaway embedded
Postgres when nothing listens there), migrates it with the project's own migrations, and
for each layout and size N:

1. fills it in SQL (`INSERT ... SELECT generate_series`): N tasks trashed longer ago than
   TRASH_RETENTION_DAYS (spread over a year) interleaved with N live ones, over --users
   users; then VACUUM ANALYZE, as autovacuum would have left a table of that size;
2. runs ONE cleanup (`shared.cleanup.run_cleanup`, no time limit, the shipped BATCH_SIZE)
   to completion in a FRESH Python subprocess, which reports its wall time and its
   `resource.getrusage(RUSAGE_SELF).ru_maxrss` (peak resident set of the whole process,
   interpreter and imports included) before and after the run;
3. checks that exactly the N expired tasks are gone and the N live ones are all there.

Prints a table per size and the ratios (memory 1M/100k: goal <= 1.2; throughput 1M vs
100k: goal, it does not fall). Drops the database at the end, also on Ctrl-C or SIGTERM.
Exit status 1 when a run left the wrong rows. Every figure is from this run.
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
from bench._support import Goal, Scratch, add_smoke_flag, main_exit, print_summary, scratch_database  # noqa: E402


# ---------------------------------------------------------------------------- the child: one run


def child() -> None:
    """One cleanup run in this fresh process; one JSON line on stdout, everything else on stderr."""
    import logging
    import resource
    from contextlib import redirect_stdout

    with redirect_stdout(sys.stderr):  # the logger binds its stream at import; metrics print
        from shared import cleanup
        from shared.observability import logger, metrics

        reports: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                reports.append(record)

        logging.getLogger(logger.name).addHandler(Keep())
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        result = cleanup.run_cleanup()
        seconds = time.perf_counter() - started
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        metrics.flush_metrics()
    report = next(r for r in reports if r.getMessage() == "cleanup")
    print(
        json.dumps(
            {
                "result": result,
                "seconds": seconds,
                "rss_before_kib": rss_before,
                "rss_peak_kib": rss_peak,
                "batches": report.batches,
                "slowest_batch_ms": report.slowest_batch_ms,
                "batch_size": cleanup.BATCH_SIZE,
            }
        )
    )


# ---------------------------------------------------------------------------- the parent


LAYOUTS = {
    # Trash times drawn at random over a year: consecutive batches (taken in trash-time
    # order) land on pages all over the table, as in a table that has lived a while.
    "random": "now() - interval '31 days' - random() * interval '365 days'",
    # Trash times in the order of the rows on disk: the batches walk the table in order,
    # as in a young, append-mostly table.
    "trash-order": "now() - interval '31 days' - (2 * :size - i) * interval '10 seconds'",
}


def seed(db: Scratch, size: int, users: int, layout: str) -> float:
    """`size` expired tasks interleaved with `size` live ones; returns the seconds it took.

    The secondary indexes are dropped for the load and built again after it (the same
    definitions, read from pg_indexes), as a bulk load would: the result is the same table.
    Then VACUUM ANALYZE (what autovacuum would have done) and a CHECKPOINT.
    """
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
        # Odd rows live, even rows trashed longer ago than the default retention (30 days).
        sql.run(
            f"""
            INSERT INTO tasks (id, user_id, title, created_at, updated_at, deleted_at)
            SELECT gen_random_uuid(), 'bench-user-' || (1 + i % :users), 'task ' || i,
                   now() - interval '400 days', now() - interval '400 days',
                   CASE WHEN i % 2 = 0 THEN {LAYOUTS[layout]} END
            FROM generate_series(1, 2 * :size) i
            """,
            users=users,
            size=size,
        )
        sql.run("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            sql.run(definition)
        sql.run("VACUUM ANALYZE tasks")
        # Every size starts from the same state: its pages written out, so that the first
        # change to each after this costs a full-page image in the WAL, as it does for
        # trash that has lain there for a month (otherwise only the big load, which
        # outgrows max_wal_size, would pay for them).
        sql.run("CHECKPOINT")
    finally:
        sql.close()
    return time.perf_counter() - started


def server_counters(db: Scratch) -> dict[str, Any]:
    """What the server did, read before and after a run: blocks found in / read into its
    buffer cache for this database, WAL written (cluster-wide), checkpoints."""
    sql = db.connect()
    try:
        (hit, read), = sql.run("SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()")
        (checkpoints,), = sql.run("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
        (lsn,), = sql.run("SELECT pg_current_wal_lsn()::text")
        (table_bytes,), = sql.run("SELECT pg_table_size('tasks')")
        return {"hit": hit, "read": read, "checkpoints": checkpoints, "lsn": lsn, "table_bytes": table_bytes}
    finally:
        sql.close()


def wal_bytes(db: Scratch, before: str, after: str) -> int:
    sql = db.connect()
    try:
        return int(sql.run("SELECT pg_wal_lsn_diff(CAST(:a AS pg_lsn), CAST(:b AS pg_lsn))", a=after, b=before)[0][0])
    finally:
        sql.close()


def counts(db: Scratch) -> tuple[int, int]:
    sql = db.connect()
    try:
        (live, trashed), = sql.run("SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(deleted_at) FROM tasks")
        return live, trashed
    finally:
        sql.close()


def run_child(db: Scratch) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": db.url}
    env.pop("TRASH_RETENTION_DAYS", None)  # the default, 30 days
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child"], env=env, capture_output=True, text=True, timeout=600
    )
    if completed.returncode != 0:
        raise SystemExit(f"the cleanup run failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="expired tasks per run")
    parser.add_argument("--users", type=int, default=50, help="users the tasks belong to")
    parser.add_argument("--layouts", nargs="+", choices=sorted(LAYOUTS), default=["random", "trash-order"],
                        help="how trash times lie over the table's pages (default: both)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.child:
        child()
        return 0
    if args.smoke:
        args.sizes, args.users = [100, 400], 5

    rows: list[dict[str, Any]] = []
    with scratch_database("todo_bench_cleanup") as db:
        sql = db.connect()
        server_version = sql.run("SHOW server_version")[0][0]
        shared_buffers = sql.run("SHOW shared_buffers")[0][0]
        sql.close()
        print(
            f"cleanup benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs, Postgres {server_version} "
            f"({db.server.where}, shared_buffers {shared_buffers}), {args.users} users;\n"
            "peak memory = ru_maxrss of the fresh subprocess that runs the cleanup (one per size)\n"
        )
        for layout in args.layouts:
            for size in args.sizes:
                rows.append(measure(db, size, args.users, layout))

    print(f"{'layout':<12} {'expired':>10} {'seconds':>8} {'batches':>8} {'rows/s':>10} {'peak RSS MiB':>13} "
          f"{'growth MiB':>11} {'buf miss %':>10} {'WAL MiB':>8}  check")
    for row in rows:
        print(
            f"{row['layout']:<12} {row['size']:>10,} {row['seconds']:>8.2f} {row['batches']:>8} {row['rows_per_s']:>10,.0f} "
            f"{row['rss_peak_kib'] / 1024:>13.1f} {(row['rss_peak_kib'] - row['rss_before_kib']) / 1024:>11.1f} "
            f"{row['miss_pct']:>10.1f} {row['wal_mib']:>8,.0f}  {'OK' if row['ok'] else 'WRONG'}"
        )
    goals = []
    for layout in args.layouts:
        of_layout = [row for row in rows if row["layout"] == layout]
        if len(of_layout) < 2:
            continue
        small, large = of_layout[0], of_layout[-1]
        label = f"{layout}, {large['size']:,} vs {small['size']:,}:"
        goals += [
            Goal(f"{label} peak memory", large["rss_peak_kib"] / small["rss_peak_kib"], 1.2),
            Goal(f"{label} throughput", large["rows_per_s"] / small["rows_per_s"], 1.0, at_least=True),
        ]
    print_summary("GOALS (ratios of the largest size to the smallest)", goals, smoke=args.smoke)
    wrong = [f"{row['layout']} {row['size']:,}" for row in rows if not row["ok"]]
    print(f"\nchecks: {'all OK' if not wrong else 'WRONG at ' + ', '.join(wrong)}")
    return 1 if wrong else 0


def measure(db: Scratch, size: int, users: int, layout: str) -> dict[str, Any]:
    """One size: seed, one cleanup run in a fresh process, what it left and what it cost."""
    seeded = seed(db, size, users, layout)
    before = server_counters(db)
    run = run_child(db)
    after = server_counters(db)
    live, trashed = counts(db)
    result = run["result"]
    expected = {"tasks_deleted": size, "idempotency_keys_deleted": 0, "finished": True}
    ok = result == expected and (live, trashed) == (size, 0)
    hits, reads = after["hit"] - before["hit"], after["read"] - before["read"]
    row = {
        "layout": layout,
        "size": size,
        **run,
        "rows_per_s": result["tasks_deleted"] / run["seconds"],
        "ok": ok,
        "miss_pct": 100 * reads / max(hits + reads, 1),
        "wal_mib": wal_bytes(db, before["lsn"], after["lsn"]) / 2**20,
    }
    print(f"-- {layout}: {size:,} expired tasks among {size:,} live ones "
          f"(table {before['table_bytes'] / 2**20:,.0f} MiB, seeded in {seeded:.1f} s)")
    print(f"   result              {json.dumps(result)}")
    print(f"   left after the run  {live:,} live, {trashed:,} trashed  -> {'OK' if ok else 'WRONG'}")
    print(f"   run time            {run['seconds']:.2f} s in {run['batches']} batches of <= {run['batch_size']:,} "
          f"(slowest {run['slowest_batch_ms']:.0f} ms)")
    print(f"   throughput          {row['rows_per_s']:,.0f} rows deleted / s")
    print(f"   peak RSS            {run['rss_peak_kib'] / 1024:.1f} MiB "
          f"(after imports, before the run: {run['rss_before_kib'] / 1024:.1f} MiB; "
          f"growth during the run: {(run['rss_peak_kib'] - run['rss_before_kib']) / 1024:.1f} MiB)")
    print(f"   server              {hits + reads:,} buffer accesses, {row['miss_pct']:.1f} % not in shared_buffers; "
          f"{row['wal_mib']:,.0f} MiB WAL; {after['checkpoints'] - before['checkpoints']} checkpoint(s)\n")
    return row


if __name__ == "__main__":
    sys.exit(main_exit(main))
