"""GET /tasks at 1k, 100k and 1M tasks of one user: does a page cost the same at any size?

    .venv/bin/python bench/list.py [--samples 41] [--sizes 1000,100000,1000000]
    .venv/bin/python bench/list.py --smoke     # 500 and 1,000 tasks, 1 sample: every path, seconds

Issues 4 and 11. What it does, in order:

1. Creates a database of its own on 127.0.0.1:5432 (or, when nothing listens there, on a
   throwaway embedded Postgres), migrates it with the project's own `migrate()`, and drops
   it at the end, also on Ctrl-C, SIGTERM or an error (bench/_support.py).
2. Grows ONE table in steps: the benchmark user's tasks to 1k, measure, to 100k, measure,
   to 1M, measure; plus 10% as many tasks of 100 other users (owner filtering matters;
   at least the 39,000 among which the control's tasks lie, see 3).
   Rows are made in SQL (`INSERT ... SELECT ... FROM generate_series`, 100k a statement)
   into the table with all of its indexes, with ties everywhere a real list has them: two-
   or three-word titles from a 40-word list in three casings (lower(title) ties, ~17.6k
   distinct), priority 25/50/25% over its 3 values, 30% without due_at and the others on
   1,096 distinct instants, created_at at minute resolution over a year, updated_at equal
   to it for 40%, 30% completed, 5% in the trash, 30% tagged (`work`, `home`+`urgent`).
   created_at is NOT correlated with the physical row order (the worst case for heap
   locality). After each step: `VACUUM ANALYZE` of tasks and task_tags, what autovacuum
   converges to (and what keeps task_tags' scans index-only).
3. The two filters that cannot be a plain sort index: `q` (ILIKE, through its SECURITY
   DEFINER function, migration 0005) and `tag` (the `task_tags` side table, migration 0007),
   with values chosen to be selective, as a search or a tag a user actually filters by is.
   Each is planted when the rows are inserted, so they lie spread over the table's pages
   (no locality to help the lookups), trashed tasks and other users' tasks included (the
   filters must hold to the owner and skip the trash), all sorted by the default
   `-created_at`:
     q=quokka    a word in none of the titles' vocabulary, in the descriptions of ~200
                 tasks of each of the two users at every size (planted as the tag is,
                 below; 0.3% of the other users' tasks). The same answer for both users is
                 what isolates the cost of a user's size: judged.
     tag=lisbon  a trip's tag on ~300 tasks of each of the two users at every size (at
                 each step the old ones keep it in proportion, the new ones get it with
                 the share that makes up the rest; 0.3% of the other users' tasks), so
                 the big user and the control have the same number of matches and only
                 the table around them grows.
     q=wombat    another word, in 0.2% of EVERY user's tasks (1 in 500): ~2 of the
                 control's, ~1,900 live ones of the big user at 1M. Reported, NOT judged:
                 its 1M answer is ~1,000 times the control's, and `q` reads all of a
                 search's matches (docs/decisions/0007), so its ratio measures the size of
                 the answer, which no index makes cost the same, not the size of the table.
   The control's 1,000 tasks are inserted one in 40 rows among other users' (those rows
   count as the noise of the first steps), not as a block: a real user's tasks lie one a
   heap page, written between everyone else's, as the big user's matches do at 1M; a block
   would put the control's 300 tagged tasks on ~30 pages and hand it a locality no real
   user has.
4. For each size and each case, pages of 50: page 1, and the deep page that starts at the
   middle of the list (its cursor is made from the row at OFFSET live/2 of that case's
   order, its sort value rendered by the database, and signed with `list_tasks`'s own
   binding); for the two due_at sorts also a page in the tail of tasks without due_at
   (row 0.85*live, a cursor holding 'infinity' / '-infinity'). For q and tag the middle
   is of their matches. Every page is first checked against SQL run as the table's owner
   (the same ids in the same order, a next cursor exactly when rows remain), then timed
   N times, interleaved in a shuffled order each round so that machine drift hits all
   alike:
     handler  the real ListTasks Lambda handler, event in, response out (its own new
              connection, FastAPI, Mangum, Powertools), as API Gateway would call it;
     sql      the same `page_query` statement as the handler's flight sends it, on a
              kept-open connection as todo_app with the user's app.user_id (shared.db's
              own pipelined executor: one write, one Sync; no connect, no HTTP).
   The same pages of a second user with 1,000 tasks (`bench-control`, inserted in the first
   step) are timed in the same rounds: sizes are measured minutes apart, and a shared
   machine drifts; 1M against that user at the same moment is the drift-free ratio.
5. Prints the medians, 1M/1k and 1M/ctl for every case against the goal (<= 1.3), and the
   plan of every case (`EXPLAIN (ANALYZE, BUFFERS)`) taken AS THE FUNCTION RUNS IT: through
   `shared.db.flight`, role todo_app, app.user_id the case's user, so row-level security
   binds it exactly as it binds ListTasks. Each plan is judged: a sort reads its own index
   with no Sort node and, past page 1, the cursor's row comparison in the Index Cond; q
   goes through `caller_task_ids_matching` (and, inside, the per-user trigram GIN index:
   the function's body planned as its owner todo_search, with its parameters unknown, as a
   SQL function plans it); tag reads `task_tags_pkey` with an index-only scan. Full plans follow for the slowest
   case and for every case that misses a goal.

Handlers log at WARNING (POWERTOOLS_LOG_LEVEL) and their per-call EMF metrics line, which
Powertools prints on stdout, goes to /dev/null: it is still produced, as in Lambda.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
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
NOISE = "user_id LIKE 'bench-noise-%'"
PAGE = 50
GOAL = 1.3
SORTS = [
    "created_at", "-created_at", "updated_at", "-updated_at", "due_at", "-due_at", "priority", "-priority", "title", "-title",
    "position", "-position",
]  # fmt: skip
# Subtasks (issue 16): one task of each of the two users has CHILDREN subtasks at every size
# (the same sibling group, a bigger table around it); parent_id=none is every top-level task.
PARENT_TITLE, CHILDREN, SUBTASK_SHARE = "bench parent", 150, 0.05
ONE_PARENT = "<the user's bench parent>"  # resolved per user when the cases are built
Q_WORD, Q_FIXED = "quokka", 200  # live tasks of the big user and of the control, at every size
Q_SHARE_WORD, Q_SHARE = "wombat", 0.002  # of every user's tasks: reported, not judged (matches grow)
TAG, TAGGED = "lisbon", 300  # live tasks of the big user and of the control, at every size
NOISE_TAG_SHARE = NOISE_WORD_SHARE = 0.003
# The control's tasks are inserted one in SPREAD among other users' rows (more than a heap
# page holds), so that each lies on its own page as a real user's tasks do: see `grow_to`.
SPREAD = 40
SEARCH_SORT = "-created_at"  # the default sort, for q and tag


@dataclass(frozen=True)
class Spec:
    """One kind of page: a sort, and the filter (a query parameter) if any."""

    name: str
    sort: str
    filters: tuple[tuple[str, str], ...] = ()
    judged: bool = True  # False: printed, kept out of the goals
    indexes: tuple[str, ...] = ()  # a filtered sort: the indexes meant to serve it (default: the sort's own)
    small_sort: bool = False  # at most 200 rows (one parent's subtasks): a Sort of them is fine by design

    @property
    def search(self) -> bool:
        return any(name in FUNCTION or name == "tag" for name, _ in self.filters)


SPECS = [Spec(sort, sort) for sort in SORTS] + [
    Spec(f"q={Q_WORD}", SEARCH_SORT, (("q", Q_WORD),)),
    Spec(f"tag={TAG}", SEARCH_SORT, (("tag", TAG),)),
    Spec(f"q={Q_SHARE_WORD}", SEARCH_SORT, (("q", Q_SHARE_WORD),), judged=False),
    # A task's subtasks in their order, and the top level in its order (the sibling index; for
    # the top level, where nearly every task is, the planner may take the position index and
    # drop the few subtasks it meets).
    Spec("parent=one", "position", (("parent_id", ONE_PARENT),), indexes=("ix_tasks_user_parent_position",), small_sort=True),
    Spec("parent=none", "position", (("parent_id", "none"),), indexes=("ix_tasks_user_parent_position", "ix_tasks_user_position")),
]
BY_NAME = {spec.name: spec for spec in SPECS}
# Where a page starts, as a fraction of the case's list (None: page 1). `nulls` is in the
# due_at sorts' tail of tasks without due_at (the last 30%): its cursor holds ±infinity.
DEPTHS = {"page1": None, "middle": 0.5}
NULLS_DEPTH = {"nulls": 0.85}

# Written independently of shared/task_listing.py (the page checks compare the two): each
# sort's key as an expression of the table's own columns, and the index meant to serve it.
KEY_SQL = {
    "created_at": ("created_at", "created_at"),
    "updated_at": ("updated_at", "updated_at"),
    "priority": ("priority", "priority"),
    "title": ("lower(title)", "lower(title)"),
    "due_at": ("coalesce(due_at, 'infinity'::timestamptz)", "coalesce(due_at, '-infinity'::timestamptz)"),
    "position": ('position COLLATE "C"', 'position COLLATE "C"'),
}
INDEX = {
    "created_at": "ix_tasks_user_created", "updated_at": "ix_tasks_user_updated", "priority": "ix_tasks_user_priority",
    "title": "ix_tasks_user_title", "due_at": "ix_tasks_user_due_asc", "-due_at": "ix_tasks_user_due_desc",
    "position": "ix_tasks_user_position",
}  # fmt: skip
FILTER_SQL = {
    "q": "(title || ' ' || coalesce(description, '')) ILIKE '%' || :q || '%'",
    "tag": "tags @> ARRAY[:tag]::varchar(50)[]",
    "parent_id": "parent_id = CAST(:parent_id AS uuid)",
    "parent_id=none": "parent_id IS NULL",
}
FUNCTION = {"q": "caller_task_ids_matching"}  # q's SECURITY DEFINER function (0005)
GIN_INDEX = {"q": "ix_tasks_user_search"}  # ... and the index inside it
TAG_INDEX = "task_tags_pkey"  # tag: the side table's primary key, an index-only scan (0007)


def depths(spec: Spec) -> dict[str, float | None]:
    return {**DEPTHS, **NULLS_DEPTH} if spec.sort.lstrip("-") == "due_at" else DEPTHS


def case_keys() -> list[tuple[str, str]]:
    return [(spec.name, depth) for spec in SPECS for depth in depths(spec)]


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
                   tags, created_at, updated_at, deleted_at, version, position)
SELECT gen_random_uuid(), owner,
       CASE WHEN r_case < 0.5 THEN w1 WHEN r_case < 0.8 THEN initcap(w1) ELSE upper(w1) END
           || ' ' || w2 || CASE WHEN r_third < 0.25 THEN ' ' || w3 ELSE '' END,
       nullif(concat_ws(' ', CASE WHEN r_desc < 0.2 THEN 'notes about ' || w2 || ' ' || w3 END,
                        CASE WHEN r_word < {{word_share}} THEN 'saw a ' || '{Q_WORD}' || ' on the way' END,
                        CASE WHEN r_word2 < {Q_SHARE} THEN 'a ' || '{Q_SHARE_WORD}' || ' crossed' END), ''),
       r_done < 0.3,
       CASE WHEN r_done < 0.3 THEN created + updated_after END,
       (CASE WHEN r_prio < 0.25 THEN 0 WHEN r_prio < 0.75 THEN 1 ELSE 2 END)::smallint,
       CASE WHEN r_due < 0.3 THEN NULL
            ELSE timestamptz '2024-01-01 00:00:00+00' + due_day * interval '1 day'
                 + CASE WHEN r_due_hour < 0.5 THEN interval '9 hours' ELSE interval '17 hours' END END,
       CASE WHEN r_tag < 0.7 THEN '{{}}'::varchar(50)[]
            WHEN r_tag < 0.9 THEN ARRAY['work']::varchar(50)[]
            ELSE ARRAY['home', 'urgent']::varchar(50)[] END
           || CASE WHEN r_tagged < {{tag_share}} THEN ARRAY['{TAG}']::varchar(50)[] ELSE '{{}}'::varchar(50)[] END,
       created,
       created + updated_after,
       CASE WHEN r_trash < 0.05 THEN created + updated_after + interval '1 day' END,
       1,
       position_of_rank(floor(random() * 1e9)::bigint)  -- a manual order unrelated to the other sorts
FROM (
    SELECT {{owner}} AS owner,
           ({_words(WORDS)})[1 + floor(random() * {len(WORDS)})::int] AS w1,
           ({_words(WORDS)})[1 + floor(random() * {len(WORDS)})::int] AS w2,
           ({_words(THIRD)})[1 + floor(random() * {len(THIRD)})::int] AS w3,
           random() AS r_case, random() AS r_third, random() AS r_desc, random() AS r_done,
           random() AS r_prio, random() AS r_due, floor(random() * 548)::int AS due_day,
           random() AS r_due_hour, random() AS r_tag, random() AS r_trash, random() AS r_word, random() AS r_word2, random() AS r_tagged,
           timestamptz '2024-01-01 00:00:00+00' + floor(random() * 525600)::int * interval '1 minute' AS created,
           CASE WHEN random() < 0.4 THEN interval '0' ELSE floor(random() * 2592000)::int * interval '1 second' END
               AS updated_after
    FROM generate_series(1, :n) AS g
    OFFSET 0
) AS r
"""
HAS_WORD = f"search_text ILIKE '%{Q_WORD}%'"
HAS_SHARE_WORD = f"search_text ILIKE '%{Q_SHARE_WORD}%'"
HAS_TAG = f"tags @> ARRAY['{TAG}']::varchar(50)[]"


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
        for owner in (USER, CONTROL):  # the sibling group of parent=one: the same at every size
            self.sql.run(
                "INSERT INTO tasks (id, user_id, title, position, created_at, updated_at)"
                " VALUES (gen_random_uuid(), :u, :t, 'a0', now(), now())",
                u=owner,
                t=PARENT_TITLE,
            )
            self.sql.run(
                "INSERT INTO tasks (id, user_id, title, parent_id, position, created_at, updated_at)"
                " SELECT gen_random_uuid(), :u, 'step ' || i, (SELECT id FROM tasks WHERE user_id = CAST(:u AS varchar) AND title = :t),"
                "        position_of_rank(floor(random() * 1e9)::bigint), now() - i * interval '1 minute', now()"
                " FROM generate_series(1, :n) AS i",
                u=owner,
                t=PARENT_TITLE,
                n=CHILDREN,
            )

    def _subtasks(self) -> None:
        """SUBTASK_SHARE of the big user's other tasks become subtasks of 1 in 1,000 of its tasks
        (a few levels of real lists), so parent=none has subtasks to skip at every size."""
        owner = pg8000.native.literal(USER)
        self.sql.run(
            f"""
            WITH parents AS (
                SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM tasks
                WHERE user_id = {owner} AND parent_id IS NULL AND deleted_at IS NULL AND title <> :t AND random() < 0.001
            ), children AS (
                SELECT id FROM tasks WHERE user_id = {owner} AND parent_id IS NULL AND deleted_at IS NULL AND title <> :t
                  AND id NOT IN (SELECT id FROM parents) AND random() < :share
            )
            UPDATE tasks t SET parent_id = (SELECT p.id FROM parents p WHERE p.k = abs(hashtext(t.id::text)) % (SELECT count(*) FROM parents))
            FROM children c WHERE t.id = c.id AND EXISTS (SELECT FROM parents)
            """,
            t=PARENT_TITLE,
            share=SUBTASK_SHARE,
        )

    def _insert(self, owner_sql: str, count: int, tag_share: str, word_share: str) -> None:
        """`count` rows of the owner expression; the shares are SQL expressions (of `owner`)."""
        statement = INSERT_SQL.replace("{owner}", owner_sql).replace("{tag_share}", tag_share)
        statement = statement.replace("{word_share}", word_share)
        done = 0
        while done < count:
            n = min(self.chunk, count - done)
            self.sql.run(statement, n=n)  # autocommit: a transaction per chunk
            done += n

    def _keep_planted(self, share: float) -> None:
        """Before the user grows from `rows_user` to more: keep `share` of its tasks with the
        tag, and of those with the fixed q word (the others lose it)."""
        owner = f"user_id = {pg8000.native.literal(USER)}"
        for has, change in (
            (HAS_TAG, f"tags = array_remove(tags, '{TAG}'::varchar(50))"),
            (HAS_WORD, f"description = replace(description, 'saw a {Q_WORD} on the way', 'saw nothing on the way')"),
        ):
            (found,), = self.sql.run(f"SELECT count(*) FROM tasks WHERE {owner} AND {has}")
            self.sql.run(
                f"UPDATE tasks SET {change} WHERE id IN (SELECT id FROM tasks WHERE {owner} AND {has} ORDER BY random() LIMIT :k)",
                k=found - round(found * share),
            )

    def grow_to(self, size: int) -> None:
        """The user's tasks to `size`; the tag stays on ~TAGGED of them and the q word on
        ~Q_FIXED: some of the old ones keep it, new ones get it at insert time with the share
        that makes up the rest.

        The control's 1,000 tasks (first step) are inserted one in SPREAD among other users'
        rows, not as one block: a real 1k user's tasks were written over months between
        everyone else's and lie one a page, as the big user's matches do at 1M (a block of
        1,000 fills ~30 pages, and its 300 tagged tasks would share them). Those other
        users' rows count towards the noise (which then exceeds 10% until the user passes
        SPREAD * 10k tasks)."""
        started = time.perf_counter()
        add = size - self.rows_user
        noise_owner = f"'bench-noise-' || floor(random() * {NOISE_USERS})::int"
        if self.rows_user:
            self._keep_planted(self.rows_user / size)
        self._insert(pg8000.native.literal(USER), add, f"{TAGGED / size}", f"{Q_FIXED / size}")
        self._subtasks()
        if self.rows_user == 0:
            control = pg8000.native.literal(CONTROL)
            mine = f"owner = {control}"
            self._insert(
                f"CASE WHEN g % {SPREAD} = 0 THEN {control} ELSE {noise_owner} END",
                CONTROL_SIZE * SPREAD,
                f"CASE WHEN {mine} THEN {TAGGED / CONTROL_SIZE} ELSE {NOISE_TAG_SHARE} END",
                f"CASE WHEN {mine} THEN {Q_FIXED / CONTROL_SIZE} ELSE {NOISE_WORD_SHARE} END",
            )
            self.rows_noise += CONTROL_SIZE * (SPREAD - 1)
        noise = max(0, round(size * self.noise_fraction) - self.rows_noise)
        self._insert(noise_owner, noise, f"{NOISE_TAG_SHARE}", f"{NOISE_WORD_SHARE}")
        self.rows_user += add
        self.rows_noise += noise
        inserted = time.perf_counter() - started
        started = time.perf_counter()
        self.sql.run("VACUUM ANALYZE tasks")
        self.sql.run("VACUUM ANALYZE task_tags")
        self.seconds[size] = (inserted, time.perf_counter() - started)

    def _count(self, owners: str, where: str) -> int:
        (found,), = self.sql.run(f"SELECT count(*) FROM tasks WHERE {owners} AND {where}")
        return found

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
        matches = {
            (owner, what): self._count(f"user_id = {pg8000.native.literal(owner)}", f"deleted_at IS NULL AND {has}")
            for owner in (USER, CONTROL)
            for what, has in (("q", HAS_WORD), ("tag", HAS_TAG), ("q2", HAS_SHARE_WORD))
        }
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
            f" live matches of q={Q_WORD} / tag={TAG} / q={Q_SHARE_WORD}: {USER} {matches[(USER, 'q')]:,}"
            f" / {matches[(USER, 'tag')]:,} / {matches[(USER, 'q2')]:,}, {CONTROL} {matches[(CONTROL, 'q')]:,}"
            f" / {matches[(CONTROL, 'tag')]:,} / {matches[(CONTROL, 'q2')]:,};"
            f" table {sizes[0]}, indexes {sizes[1]} ({sizes[2]})"
        )


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    user: str
    spec: Spec
    depth: str
    event: dict[str, Any]
    after: list[Any] | None  # the position the handler will decode from the cursor
    expected: list[str]  # the ids SQL says the page holds
    more: bool  # whether rows remain after it (a next cursor)
    handler_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    plan_text: str | None = None
    inner_plan: dict[str, Any] | None = None  # q/tag: the function's own statement
    values: dict[str, str] = field(default_factory=dict)  # the filters' values for this user

    @property
    def filters(self) -> Any:
        from shared.task_listing import TaskFilters

        return TaskFilters(**self.values)


def build_cases(sql: pg8000.native.Connection, user: str) -> list[Case]:
    """Each page's event, with its cursor made exactly as `list_tasks` makes one; its
    expected ids from SQL as the table's owner (row-level security does not bind it)."""
    from shared.local.apigw import build_http_event
    from shared.pagination import encode_cursor
    from shared.task_listing import TaskFilters

    cases = []
    for spec in SPECS:
        name = spec.sort.lstrip("-")
        descending = spec.sort.startswith("-")
        key = KEY_SQL[name][1 if descending else 0]
        direction = "DESC" if descending else "ASC"
        values = dict(spec.filters)
        if values.get("parent_id") == ONE_PARENT:
            (values["parent_id"],), = sql.run("SELECT id::text FROM tasks WHERE user_id = :u AND title = :t", u=user, t=PARENT_TITLE)
        conditions = [FILTER_SQL["parent_id=none" if f == "parent_id" and v == "none" else f] for f, v in values.items()]
        where = " AND ".join(["user_id = :u", "deleted_at IS NULL", *conditions])
        sql_values = {k: v for k, v in values.items() if not (k == "parent_id" and v == "none")}
        (live,), = sql.run(f"SELECT count(*) FROM tasks WHERE {where}", u=user, **sql_values)
        listing = f"SELECT ({key})::text, id::text FROM tasks WHERE {where} ORDER BY {key} {direction}, id {direction}"
        # Same binding as shared.tasks.list_tasks (what the handler checks the MAC against).
        binding = {"list": "tasks", "user": user, "sort": spec.sort, "filters": TaskFilters(**values).binding()}
        for depth, fraction in depths(spec).items():
            query = {"sort": spec.sort, "limit": str(PAGE), **values}
            after = None
            if fraction is None or live == 0:
                rows = sql.run(f"{listing} LIMIT :n", u=user, n=PAGE + 1, **sql_values)
            else:
                start = max(0, min(int(live * fraction), live - 2))  # a tiny list still has a row after it
                rows = sql.run(f"{listing} OFFSET :o LIMIT :n", u=user, o=start, n=PAGE + 2, **sql_values)
                after, rows = list(rows[0]), rows[1:]
                query["cursor"] = encode_cursor(after, binding)
            event = build_http_event(
                method="GET",
                path=f"/api/{user}/tasks",
                route_path="/api/{user_id}/tasks",
                raw_query="&".join(f"{k}={v}" for k, v in query.items()),
                claims={"sub": user},
            )
            cases.append(Case(user, spec, depth, event, after, [row[1] for row in rows[:PAGE]], len(rows) > PAGE, values=values))
    return cases


# -------------------------------------------------------------------------- the timings


class Runner:
    def __init__(self, url: str) -> None:
        from shared.local.lambda_context import FakeLambdaContext
        from shared.connect import connect_with_retry, parse_database_url
        from shared.local.apigw import response_body
        from shared.template import functions

        self.handler = functions()["ListTasks"].load_handler()
        self.context = FakeLambdaContext
        self.body = response_body
        self.open = lambda: connect_with_retry(parse_database_url(url), 10)  # as every flight opens one
        self.kept = self.open()  # kept open: the `sql` timings
        self.devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self.devnull.close()
        self.kept.close()

    def call(self, case: Case) -> tuple[float, dict[str, Any]]:
        context = self.context("ListTasks")
        with contextlib.redirect_stdout(self.devnull):  # the EMF metrics line of every call
            started = time.perf_counter()
            response = self.handler(case.event, context)
            elapsed = time.perf_counter() - started
        return elapsed * 1000, response

    def connect(self) -> float:
        """A new connection as the project opens one, then closed: the floor of a call."""
        started = time.perf_counter()
        self.open().close()
        return (time.perf_counter() - started) * 1000

    def statement(self, case: Case) -> Any:
        from shared.task_listing import page_query

        return page_query(case.user, case.filters, case.spec.sort, case.after, PAGE)

    def sql(self, case: Case) -> tuple[float, list[dict[str, Any]]]:
        """The handler's flight without its connect: the same settings and statement, one
        write and one Sync through shared.db's own executor, on the kept-open connection."""
        from shared import db

        setup = db.Query("SELECT set_config('role', $1, true), set_config('app.user_id', $2, true)", (db.APP_ROLE, case.user))
        statement = self.statement(case)
        started = time.perf_counter()
        _, result = db._exchange(db._wire(self.kept), (setup, statement))
        return (time.perf_counter() - started) * 1000, result.rows

    def check(self, case: Case) -> None:
        what = f"{case.user} {case.spec.name} {case.depth}"
        _, response = self.call(case)
        if response["statusCode"] != 200:
            raise SystemExit(f"{what}: HTTP {response['statusCode']} {self.body(response)[:300]!r}")
        page = json.loads(self.body(response))
        ids = [item["id"] for item in page["items"]]
        if ids != case.expected or (page["next_cursor"] is not None) != case.more:
            raise SystemExit(
                f"{what}: the handler's page is not SQL's: {len(ids)} items vs {len(case.expected)},"
                f" first {ids[:1]} vs {case.expected[:1]}, next_cursor {page['next_cursor'] is not None} vs {case.more}"
            )
        _, rows = self.sql(case)
        if [str(row["id"]) for row in rows[:PAGE]] != case.expected:
            raise SystemExit(f"{what}: page_query on the kept-open connection disagrees")

    def explain(self, case: Case) -> None:
        """The plan as ListTasks gets it: a flight, role todo_app, app.user_id = the case's user."""
        from shared import db

        statement = self.statement(case)

        def plan_of(options: str) -> list[dict[str, Any]]:
            query = db.Query(f"EXPLAIN ({options}) {statement.text}", statement.params)
            return db.flight(query, user_id=case.user)[0].rows

        for _ in range(3):  # one execution is at the mercy of the machine: keep the fastest
            (row,) = plan_of("ANALYZE, BUFFERS, FORMAT JSON")
            document = row["QUERY PLAN"]
            plan = (json.loads(document) if isinstance(document, str) else document)[0]
            if case.plan is None or plan["Execution Time"] < case.plan["Execution Time"]:
                case.plan = plan
        case.plan_text = "\n".join(row["QUERY PLAN"] for row in plan_of("ANALYZE, BUFFERS"))
        if case.spec.search and case.spec.filters[0][0] in FUNCTION:
            case.inner_plan = self.explain_function(case)

    def explain_function(self, case: Case) -> dict[str, Any]:
        """The function's own statement (its body from pg_proc, run as its owner todo_search
        with the caller's app.user_id), planned generically, as a SQL function plans its body:
        its parameters are not known when it is planned."""
        from shared import db

        ((name, _),) = case.spec.filters
        (found,) = db.flight(
            db.Query("SELECT prosrc, proargnames, oidvectortypes(proargtypes) AS types FROM pg_proc WHERE proname = $1",
                     (FUNCTION[name],)),
            user_id=case.user,
        )
        body, arguments, types = found.rows[0]["prosrc"], found.rows[0]["proargnames"], found.rows[0]["types"]
        for number, argument in enumerate(arguments, 1):
            body = re.sub(rf"(?<![.\w]){argument}\b", f"${number}", body)
        values = case.filters.params()[name]
        literals = ", ".join(sql_literal(values[argument]) for argument in arguments)
        *_, explained = db.flight(
            db.Query("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"),
            db.Query(f"PREPARE inner_statement({types}) AS {body}"),
            db.Query(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE inner_statement({literals})"),
            user_id=case.user,
            role="todo_search",
        )
        document = explained.rows[0]["QUERY PLAN"]
        return (json.loads(document) if isinstance(document, str) else document)[0]


def sql_literal(value: Any) -> str:
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(sql_literal(v) for v in value) + "]::text[]"
    return pg8000.native.literal(str(value))


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
            raise SystemExit(f"{case.user} {case.spec.name} {case.depth}: HTTP {response['statusCode']} during the samples")
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


def _shape(node: dict[str, Any]) -> str:
    """The plan's nodes, children in brackets: `Limit > Nested Loop [Function Scan f, Index Scan i]`."""
    label = node["Node Type"]
    if "Index Name" in node:
        label += f" {'backward ' if node.get('Scan Direction') == 'Backward' else ''}{node['Index Name']}"
    elif "Function Name" in node:
        label += f" {node['Function Name']}"
    children = node.get("Plans", [])
    if len(children) == 1:
        return f"{label} > {_shape(children[0])}"
    return label + (f" [{', '.join(_shape(child) for child in children)}]" if children else "")


def plan_verdict(case: Case) -> tuple[bool, str]:
    """Whether the plan is the one the design intends, and what says so."""
    nodes = list(_nodes(case.plan["Plan"]))
    seq = [n for n in nodes if n["Node Type"] == "Seq Scan"]
    sort = any(n["Node Type"] in ("Sort", "Incremental Sort") for n in nodes)
    if case.spec.search and case.spec.filters[0][0] == "tag":
        scan = next((n for n in nodes if n.get("Index Name") == TAG_INDEX), None)
        only = scan is not None and scan["Node Type"] == "Index Only Scan"
        ok = only and not seq
        return ok, (
            f"{TAG_INDEX}: {'index-only scan' if only else 'a scan, not index-only' if scan else 'NO'}"
            f"{'; Seq Scan!' if seq else ''} (a Sort of the matches is by design: {'yes' if sort else 'none'})"
        )
    if case.spec.search:
        ((name, _),) = case.spec.filters
        function = FUNCTION[name] in json.dumps(case.plan)  # a Function Scan, or a ProjectSet with it in a Hash Cond
        inner = list(_nodes(case.inner_plan["Plan"])) if case.inner_plan else []
        gin = any(n.get("Index Name") == GIN_INDEX[name] for n in inner)
        inner_seq = any(n["Node Type"] == "Seq Scan" for n in inner)
        ok = function and gin and not seq and not inner_seq
        return ok, (
            f"function {FUNCTION[name]}: {'yes' if function else 'NO'}; inside it {GIN_INDEX[name]}:"
            f" {'yes' if gin else 'NO'}{'; Seq Scan!' if seq or inner_seq else ''}"
            f" (a Sort of the matches is by design: {'yes' if sort else 'none'})"
        )
    indexes = case.spec.indexes or (INDEX.get(case.spec.sort, INDEX[case.spec.sort.lstrip("-")]),)
    scan = next((n for n in nodes if n.get("Index Name") in indexes), None)
    index = scan["Index Name"] if scan is not None else " or ".join(indexes)
    cursor = case.after is None or (scan is not None and "ROW(" in scan.get("Index Cond", ""))
    ok = scan is not None and cursor and (not sort or case.spec.small_sort) and not seq
    return ok, (
        f"{index}: {'yes' if scan else 'NO'}; cursor in Index Cond: "
        f"{'n/a (page 1)' if case.after is None else 'yes' if cursor else 'NO'}; Sort node: {'YES' if sort else 'no'}"
        f"{'; Seq Scan!' if seq else ''}"
    )


def _buffers(node: dict[str, Any]) -> int:
    """Shared buffers a node touched (hit or read), its children included."""
    return node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)


def plan_summary(case: Case) -> str:
    root = case.plan["Plan"]
    nodes = list(_nodes(root))
    removed = sum(n.get("Rows Removed by Filter", 0) for n in nodes)
    buffers = _buffers(root)
    scan = next((n for n in nodes if "Index Cond" in n), None)
    condition = f"; Index Cond: {scan['Index Cond']}" if scan is not None and not case.spec.search else ""
    inner = ""
    if case.inner_plan:
        inner_root = case.inner_plan["Plan"]
        index = sum(_buffers(n) for n in _nodes(inner_root) if n["Node Type"] == "Bitmap Index Scan")
        inner = (
            f"; inside: {_shape(inner_root)}, {inner_root.get('Actual Rows', 0):,} ids, {_buffers(inner_root)} buffers"
            f" (index {index}, heap {_buffers(inner_root) - index}), {case.inner_plan['Execution Time']:.3f} ms"
        )
    if case.spec.search:
        lookups = sum(_buffers(n) for n in nodes if n.get("Index Name") == "tasks_pkey")
        tags = sum(_buffers(n) for n in nodes if n.get("Index Name") == TAG_INDEX)
        condition = f"; of which tasks_pkey lookups {lookups}" if lookups else ""
        condition += f", {TAG_INDEX} {tags}" if tags else ""
    ok, verdict = plan_verdict(case)
    return (
        f"[{'ok' if ok else 'NOT AS INTENDED'}] {verdict}\n{'':20} {_shape(root)}; {buffers} buffers;"
        f" rows removed by filter {removed}; execution {case.plan['Execution Time']:.3f} ms (best of 3){condition}{inner}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def _label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k" if size >= 1000 else str(size)


def _met(ratio: float) -> str:
    return "met" if ratio <= GOAL else "NOT MET"


def report(phases: list[Phase], smoke: bool) -> None:
    first, last = phases[0], phases[-1]
    goals: list[Goal] = []
    small, large = _label(first.size), _label(last.size)
    ctl = f"ctl@{large}"
    missed: set[tuple[str, str]] = set()
    log()
    log("Medians in ms. Each size was measured minutes after the previous one, so a machine that got")
    log(f"slower or faster in between moves the {large}/{small} ratio. {ctl} is the {CONTROL} user ({CONTROL_SIZE:,} tasks in")
    log(f"the same table), measured interleaved with the {large} cases in the same rounds: {large}/ctl compares")
    log(f"{large} with 1k tasks at the same moment, free of that drift. `plan@{large}`: is the plan the intended one (below).")
    for kind in ("handler", "sql"):
        log()
        log(
            "HANDLER: the full ListTasks call (event in, response out, a new connection each time)"
            if kind == "handler"
            else "SQL: the handler's flight (settings + page_query) on a kept-open connection, as todo_app for the"
            " user (shared.db's executor and row decoding included; no connect, no HTTP)"
        )
        head = f"{'case':<14} {'depth':<7}" + "".join(f" {_label(p.size):>8}" for p in phases)
        head += f" {large + '/' + small:>7}  goal<={GOAL} {ctl:>8} {large + '/ctl':>7}  goal<={GOAL}  plan@{large}"
        log(head)
        log("-" * len(head))
        for group, keys in (("sorts", [k for k in case_keys() if not BY_NAME[k[0]].search]),
                            ("q and tag", [k for k in case_keys() if BY_NAME[k[0]].search and BY_NAME[k[0]].judged]),
                            ("not judged", [k for k in case_keys() if not BY_NAME[k[0]].judged])):
            ratios, sames = [], []
            for key in keys:
                values = [median(getattr(p.cases[key], f"{kind}_ms")) for p in phases]
                control = median(getattr(last.control[key], f"{kind}_ms"))
                ratio, same = values[-1] / values[0], values[-1] / control
                ratios.append(ratio)
                sames.append(same)
                if (same > GOAL or ratio > GOAL) and BY_NAME[key[0]].judged:
                    missed.add(key)
                plan_ok = plan_verdict(last.cases[key])[0] and plan_verdict(last.control[key])[0]
                log(
                    f"{key[0]:<14} {key[1]:<7}" + "".join(f" {v:8.2f}" for v in values)
                    + f" {ratio:7.2f}  {_met(ratio):<9} {control:8.2f} {same:7.2f}  {_met(same):<9} "
                    + ("ok" if plan_ok else "NOT AS INTENDED")
                )
            met = sum(r <= GOAL for r in ratios)
            met_same = sum(r <= GOAL for r in sames)
            if group == "not judged":
                log(f"{kind}: q={Q_SHARE_WORD} is in {Q_SHARE:.1%} of every user's tasks, so the big user has ~1,000x the"
                    " control's matches: a bigger answer, not a bigger table; shown, not judged")
                continue
            log(f"{kind}, {group}: {met} of {len(keys)} within {GOAL}x by {large}/{small}; {met_same} of {len(keys)} by {large}/ctl")
            goals += [
                Goal(f"{kind} {group} {large}/{small}, worst case", max(ratios), GOAL, note=f"{met} of {len(keys)} cases met"),
                Goal(f"{kind} {group} {large}/ctl, worst case", max(sames), GOAL, note=f"{met_same} of {len(keys)} cases met"),
            ]

    log()
    log(f"drift check, per size: median over all {len(case_keys())} cases of the control user's handler call, and of a bare")
    log("connect+close as the project connects (both should be equal at every size)")
    for p in phases:
        control_handler = median([median(c.handler_ms) for c in p.control.values()])
        control_sql = median([median(c.sql_ms) for c in p.control.values()])
        log(
            f"  at {_label(p.size):>4}: {CONTROL} handler {control_handler:6.2f} ms, sql {control_sql:5.2f} ms;"
            f" connect+close {median(p.connect_ms):5.2f} ms"
        )

    log()
    log(f"PLANS at {large}, as ListTasks runs them (a flight: role todo_app, app.user_id = the user; EXPLAIN (ANALYZE,")
    log("BUFFERS) after the samples). Intended: each sort reads its own index, no Sort node, and past page 1 the cursor's")
    log("row comparison is in the Index Cond; q goes through its function, which reads its per-user GIN index; tag reads")
    log("task_tags_pkey, index-only.")
    plans_ok = 0
    for owner, cases in ((USER, last.cases), (CONTROL, last.control)):
        log(f"-- {owner}")
        for key in case_keys():
            plans_ok += plan_verdict(cases[key])[0]
            log(f"{key[0]:<12} {key[1]:<7} {plan_summary(cases[key])}")
    if len(phases) > 1:
        log()
        log(f"(the same at {small}, {USER}, for comparison)")
        for key in case_keys():
            log(f"{key[0]:<12} {key[1]:<7} {plan_summary(first.cases[key])}")
    slowest = max(last.cases.values(), key=lambda c: median(c.handler_ms))
    full = [slowest] + [last.cases[key] for key in case_keys() if key in missed and last.cases[key] is not slowest]
    for case in full:
        log()
        why = "slowest by handler median" if case is slowest else "a goal missed"
        log(f"{large} {case.spec.name} {case.depth} ({why}); its full plan:")
        log(case.plan_text or "")
        if case.inner_plan:
            log(f"  inside {FUNCTION[case.spec.filters[0][0]]} (generic plan, as todo_search): {_shape(case.inner_plan['Plan'])},"
                f" {case.inner_plan['Plan'].get('Actual Rows', 0):,} ids in {case.inner_plan['Execution Time']:.3f} ms")
    total = 2 * len(case_keys())
    goals.append(Goal(f"plans as intended at {large} (both users)", plans_ok / total, 1.0, at_least=True,
                      note=f"{plans_ok} of {total}"))
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

    sql = db.connect()
    (version,), = sql.run("SHOW server_version")
    settings = dict(sql.run(
        "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN"
        " ('shared_buffers', 'work_mem', 'random_page_cost', 'effective_cache_size', 'jit')"
    ))  # fmt: skip
    log(f"Postgres {version} at {db.server.where} ({', '.join(f'{k}={v}' for k, v in sorted(settings.items()))});")
    log(f"Python {platform.python_version()}, {os.cpu_count()} cores; {args.samples} samples per case, interleaved;")
    log(f"Pages of {PAGE}. page1: no cursor; middle: the page after row live/2 of that case's order; nulls (due_at")
    log("sorts only): the page after row 0.85*live, inside the tail of tasks without due_at. Cursors are made from")
    log("that row's sort value as the database computes it, signed with list_tasks's binding.")
    log(f"q={Q_WORD}: on ~{Q_FIXED} tasks and tag={TAG} on ~{TAGGED} tasks of each of the two users at every size (same")
    log(f"matches, bigger table); q={Q_SHARE_WORD} (not judged) in {Q_SHARE:.1%} of every user's tasks (matches grow with the list);")
    log(f"all planted at insert, sorted {SEARCH_SORT}. {CONTROL}'s tasks lie one in {SPREAD} rows among other users'.")
    log("Table grown in place, all indexes present; VACUUM ANALYZE after each step (what autovacuum converges to).")
    log(f"Schema: migrated by shared.local.migrate.migrate() to revision {schema_revision(sql)} (whatever infra/migrations holds now).")
    builder = Builder(sql, args.chunk, args.noise)
    builder.setup()

    runner = Runner(db.url)
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
                {(c.spec.name, c.depth): c for c in build_cases(sql, USER)},
                {(c.spec.name, c.depth): c for c in build_cases(sql, CONTROL)},
            )
            started = time.perf_counter()
            measure(runner, phase, args.samples, shuffle)
            log(
                f"checked and measured {len(phase.cases) + len(phase.control)} cases x {args.samples} samples"
                f" in {time.perf_counter() - started:.1f} s"
            )
            phases.append(phase)
    finally:
        runner.close()
        sql.close()
    report(phases, args.smoke)


if __name__ == "__main__":
    sys.exit(main_exit(main))
