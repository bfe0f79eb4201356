"""Soak: many concurrent clients of many users against `todo-api serve`, then the database audited.

    .venv/bin/python bench/soak.py [--duration 180] [--clients 40] [--users 50] [--seed 1]
    .venv/bin/python bench/soak.py --smoke     # 4 s, 6 clients, 3 users: every check, seconds

Issue "Faults, fuzzing, load and the deployed shape". What it does, in order:

1. A database of its own (`todo_soak_<random>`, bench/_support.py) on the Postgres at
   127.0.0.1:5432, or on a throwaway embedded Postgres when nothing listens there; a temporary
   TODO_API_LOCAL_DIR (the local issuer's key). `todo-api serve` is started as a subprocess
   (shared/local/serve_process.py, the launcher tests/e2e uses too) on a free loopback
   port with DATABASE_URL pointing at that database (serve migrates it); its stdout and
   stderr (the gateway's request log line per call, the functions' Powertools lines) go to
   one temporary file. The script waits for `/health`.
2. `--clients` asyncio clients (one httpx.AsyncClient pool, loopback only) run for
   `--duration` seconds. A client acts as one user for a "session" of 20..80 operations,
   then moves to another user drawn at random from `--users`, so several clients often
   share a user at once. All clients of a user share that user's tally (one event loop:
   each tally update is atomic), so nothing has to be merged afterwards and a race between
   two clients of one user is visible to both.
   The mix: create (a third with an Idempotency-Key and an immediate retry of the very same
   request, some of those sent twice at once: the retry must be replayed, never a second
   row), list with paging (several sorts and filters, 1..4 pages), get, PATCH and PUT with
   If-Match from the last known ETag (some PATCHes without), complete (toggle or set, some
   with If-Match, some with an Idempotency-Key and a retry), delete (If-Match), the trash
   list, restore (some with an Idempotency-Key and a retry), and a few probes of another
   user's tasks and path, which must answer 404 / 403.
3. While it runs, every id in every response is checked against the ids the user created
   (an id of another user is a LEAK); every task body is applied to the tally by version
   (the highest version seen is the latest state: a body with the same version but other
   content is an anomaly). A 412 is expected when another client of the same user raced:
   the client re-reads and goes on. A 412 or 404 that no concurrent write of that task can
   explain (no other write in flight or started meanwhile) is an anomaly.
4. At the end (clients stopped, every response in), the tasks table is read with SQL and
   held against every user's tally: each created task exists (a DELETE only sets
   deleted_at) with the tally's version, title, completed and trash state; no row exists
   that no client created (PHANTOM), no version is ahead of the tally (a write no client
   saw succeed) or behind it (LOST); the live / trash count per user agrees; each
   idempotent create left exactly one row (one per creation marker in `description`) and
   one idempotency record naming that row.
5. serve is stopped (SIGTERM, then SIGKILL) and the database dropped: also after Ctrl-C,
   SIGTERM or an error.

It prints requests (total, per route, per second), client-side latency p50/p95/p99 per
route, the gateway's own latency per function (from its log), CPU used by serve, this
script and the whole machine, the 5xx, 429/503, 412, leaks, lost / phantom / duplicate
writes and anomalies, with the server log lines around every 5xx. Exit status 1 when any
5xx, leak, lost, phantom or duplicate write, anomaly or transport error was seen, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._support import SMOKE_NOTE, Scratch, add_smoke_flag, main_exit, scratch_database  # noqa: E402
from shared.local.serve_process import ServeFailed, ServeProcess, clean_env  # noqa: E402

START_TIMEOUT = 60.0
KEEPALIVE_EXPIRY = 2.0  # seconds; below uvicorn's timeout_keep_alive (5 s), which serve keeps
REQUEST_TIMEOUT = 30.0  # the functions' own timeout is 10 s (template.yaml): the gateway answers first
SESSION_OPS = (20, 80)
MAX_LIVE = 120  # per user: above it creates get rarer and deletes likelier
PRIORITIES = ("low", "medium", "high")
LIST_SORTS = ("-created_at", "created_at", "-updated_at", "title", "-priority", "due_at")
TAGS = ("home", "work", "soak", "errand", "later")


def log(message: str = "") -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------- infrastructure


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def postmaster_pid(db: Scratch) -> int | None:
    """The Postgres server's main process: the parent of our own backend."""
    try:
        connection = db.connect()
        try:
            backend = connection.run("SELECT pg_backend_pid()")[0][0]
        finally:
            connection.close()
        fields = _proc_stat(backend)
        return int(fields[1]) if fields else None
    except Exception:  # noqa: BLE001 - a figure we can go without (another host, no /proc)
        return None


def postgres_cpu(postmaster: int | None) -> float | None:
    """CPU seconds of the Postgres server so far: the postmaster, its exited backends (it reaps
    them: their time is its children's time) and its live processes. Its other databases'
    work (neighbours on a shared server) is included."""
    if postmaster is None:
        return None
    fields = _proc_stat(postmaster)
    if fields is None:
        return None
    ticks = sum(int(v) for v in fields[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(postmaster):
            child = _proc_stat(int(entry.name))
            if child is not None and child[1] == str(postmaster):
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------- the tallies


@dataclass
class TaskState:
    """What the clients of one user last confirmed about one task (highest version wins)."""

    id: str
    marker: str  # the description: set at create, resent by PUT, never changed
    version: int
    title: str
    completed: bool
    deleted: bool = False
    touched: int = 0  # writes started on it, by any client of the user
    inflight: int = 0  # writes on it awaiting their response
    uncertain: bool = False  # a write's outcome is unknown (transport error)


@dataclass
class UserState:
    sub: str
    token: str
    tasks: dict[str, TaskState] = field(default_factory=dict)
    live: dict[str, None] = field(default_factory=dict)  # ordered sets of ids
    trash: dict[str, None] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # every task id in any response to this user
    uncertain_markers: set[str] = field(default_factory=set)  # creates whose outcome is unknown
    active_clients: int = 0

    def set_deleted(self, task: TaskState, deleted: bool) -> None:
        task.deleted = deleted
        (self.trash if deleted else self.live)[task.id] = None
        (self.live if deleted else self.trash).pop(task.id, None)


@dataclass(frozen=True)
class Snapshot:
    """A task's tally just before a request: was it quiet (no write in flight)?"""

    touched: int
    inflight: int
    version: int
    deleted: bool
    title: str
    completed: bool


@dataclass
class RouteStats:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


@dataclass
class Stats:
    routes: dict[str, RouteStats] = field(default_factory=lambda: defaultdict(RouteStats))
    server_errors: list[dict[str, Any]] = field(default_factory=list)  # every 5xx
    throttled: list[dict[str, Any]] = field(default_factory=list)  # 429 and 503
    transport: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # a status the operation never expects
    leaks: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    anomaly_kinds: Counter = field(default_factory=Counter)
    duplicates: list[str] = field(default_factory=list)  # seen by clients
    precondition: Counter = field(default_factory=Counter)  # 412s per route
    idempotency: Counter = field(default_factory=Counter)
    ops: Counter = field(default_factory=Counter)
    shared_ops: int = 0
    requests: int = 0

    def anomaly(self, kind: str, message: str) -> None:
        self.anomaly_kinds[kind] += 1
        if len(self.anomalies) < 200:
            self.anomalies.append(f"{kind}: {message}")


# ------------------------------------------------------------------------------ the load


@dataclass(frozen=True)
class Idem:
    user: str
    key: str
    task_id: str
    marker: str


class Soak:
    def __init__(self, base_url: str, users: list[UserState], args: argparse.Namespace) -> None:
        self.base_url = base_url
        self.users = users
        self.args = args
        self.stats = Stats()
        self.owner: dict[str, UserState] = {}  # task id -> the user whose client created it
        self.idempotent_creates: list[Idem] = []
        self.http: httpx.AsyncClient | None = None
        self.started = 0.0
        self.deadline = 0.0
        self.elapsed = 0.0
        self.lags: list[float] = []

    # -- plumbing -----------------------------------------------------------------------

    async def run(self) -> None:
        # uvicorn closes a connection idle for 5 s; a pool that keeps it as long sends requests
        # into that close (ReadError, the request never seen by serve): expire ours sooner.
        limits = httpx.Limits(
            max_connections=self.args.clients * 2 + 8,
            max_keepalive_connections=self.args.clients * 2 + 8,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT, limits=limits) as http:
            self.http = http
            self.started = time.perf_counter()
            self.deadline = self.started + self.args.duration
            clients = [asyncio.create_task(self.client(i)) for i in range(self.args.clients)]
            progress = asyncio.create_task(self.progress())
            lag = asyncio.create_task(self.loop_lag())
            try:
                await asyncio.gather(*clients)
            finally:
                self.elapsed = time.perf_counter() - self.started
                progress.cancel()
                lag.cancel()
                for task in clients:
                    task.cancel()
                await asyncio.gather(progress, lag, *clients, return_exceptions=True)

    async def loop_lag(self) -> None:
        """How late this script's own event loop wakes up: the part of the client-side
        latencies that is the client's, not the server's."""
        while True:
            planned = time.perf_counter() + 0.1
            await asyncio.sleep(0.1)
            self.lags.append(max(0.0, time.perf_counter() - planned))

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(30)
            s = self.stats
            elapsed = time.perf_counter() - self.started
            log(
                f"  {elapsed:5.0f} s  {s.requests} requests ({s.requests / elapsed:.0f}/s)  "
                f"5xx {len(s.server_errors)}  leaks {len(s.leaks)}  412 {sum(s.precondition.values())}  "
                f"anomalies {sum(s.anomaly_kinds.values())}  transport errors {len(s.transport)}"
            )

    async def request(
        self,
        route: str,
        method: str,
        path: str,
        user: UserState,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response | None:
        assert self.http is not None
        sent = {"authorization": f"Bearer {user.token}", **(headers or {})}
        started = time.perf_counter()
        try:
            response = await self.http.request(
                method, path, json=body, headers=sent, params=params
            ) if body is not None else await self.http.request(method, path, headers=sent, params=params)
        except httpx.HTTPError as error:
            self.stats.transport.append(
                f"{route}: {method} {path} at {started - self.started:.1f} s after {time.perf_counter() - started:.2f} s: "
                f"{type(error).__name__}: {error}"
            )
            return None
        elapsed = time.perf_counter() - started
        self.stats.requests += 1
        route_stats = self.stats.routes[route]
        route_stats.latencies.append(elapsed)
        route_stats.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.stats.server_errors.append(
                {
                    "route": route,
                    "request": f"{method} {path}",
                    "status": response.status_code,
                    "request_id": response.headers.get("apigw-requestid", "?"),
                    "at": started - self.started,
                    "body": response.text[:300],
                }
            )
        if response.status_code in (429, 503):
            self.stats.throttled.append({"route": route, "status": response.status_code, "retry_after": response.headers.get("retry-after")})
        if response.status_code == 412:
            self.stats.precondition[route] += 1
        return response

    def unexpected(self, route: str, response: httpx.Response, user: UserState) -> None:
        if response.status_code >= 500:
            return  # counted as 5xx already
        if len(self.stats.unexpected) < 200:
            self.stats.unexpected.append(
                f"{route} as {user.sub}: {response.status_code} {response.text[:200]}"
            )
        else:
            self.stats.unexpected.append("...")

    @staticmethod
    def prefix(user: UserState, rng: random.Random) -> str:
        return "/api/me" if rng.random() < 0.3 else f"/api/{user.sub}"

    @staticmethod
    def snap(task: TaskState) -> Snapshot:
        return Snapshot(task.touched, task.inflight, task.version, task.deleted, task.title, task.completed)

    @staticmethod
    def quiet(task: TaskState, snap: Snapshot, own_writes: int = 0) -> bool:
        """No write of this task (but ours) overlapped the request: the tally was the truth."""
        return (
            not task.uncertain
            and snap.inflight == 0
            and task.inflight == 0
            and task.touched == snap.touched + own_writes
        )

    @staticmethod
    def begin_write(task: TaskState) -> None:
        task.touched += 1
        task.inflight += 1

    # -- what responses say ---------------------------------------------------------------

    def observe(self, user: UserState, item: dict[str, Any], *, deleted: bool, where: str) -> None:
        """One task body in a response to `user`: its owner, then the tally by version."""
        task_id = str(item.get("id"))
        user.seen.add(task_id)
        owner = self.owner.get(task_id)
        if owner is not None and owner is not user:
            self.stats.leaks.append(f"{where}: {user.sub} was shown task {task_id} of {owner.sub}")
            return
        task = user.tasks.get(task_id)
        if task is None:
            return  # created by another client of this user whose response is not in yet: judged at the end
        if item.get("description") != task.marker:
            self.stats.anomaly("description changed", f"{where}: task {task_id} has {item.get('description')!r}")
        version, title, completed = item.get("version"), item.get("title"), item.get("completed")
        if not isinstance(version, int):
            self.stats.anomaly("malformed body", f"{where}: {item}")
            return
        if version > task.version:
            task.version, task.title, task.completed = version, title, completed
            if task.deleted != deleted:
                user.set_deleted(task, deleted)
        elif version == task.version and (title, completed, deleted) != (task.title, task.completed, task.deleted):
            self.stats.anomaly(
                "same version, other content",
                f"{where}: task {task_id} v{version}: response (title={title!r}, completed={completed}, trashed={deleted}) "
                f"but tally (title={task.title!r}, completed={task.completed}, trashed={task.deleted})",
            )

    def check_etag(self, route: str, response: httpx.Response, item: dict[str, Any]) -> None:
        etag = response.headers.get("etag")
        if etag != f'"{item.get("version")}"':
            self.stats.anomaly("etag", f"{route}: ETag {etag!r} for a body of version {item.get('version')}")

    def register(self, user: UserState, response: httpx.Response, marker: str, route: str) -> TaskState | None:
        """A 201 of a create: the task joins the user's tally (replays find it there)."""
        item = response.json()
        task_id = str(item["id"])
        self.check_etag(route, response, item)
        if not response.headers.get("location", "").endswith(f"/tasks/{task_id}"):
            self.stats.anomaly("location", f"{route}: Location {response.headers.get('location')!r} for {task_id}")
        if item.get("description") != marker:
            self.stats.anomaly("create body", f"{route}: {task_id} came back with description {item.get('description')!r}")
        existing = user.tasks.get(task_id)
        if existing is not None:
            self.observe(user, item, deleted=False, where=route)
            return existing
        owner = self.owner.get(task_id)
        if owner is not None and owner is not user:
            self.stats.leaks.append(f"{route}: {user.sub} got task {task_id} of {owner.sub} as its create")
            return None
        task = TaskState(task_id, marker, item["version"], item["title"], item["completed"])
        user.tasks[task_id] = task
        user.live[task_id] = None
        self.owner[task_id] = user
        return task

    # -- the clients ----------------------------------------------------------------------

    async def client(self, number: int) -> None:
        rng = random.Random(self.args.seed * 100_003 + number)
        while time.perf_counter() < self.deadline:
            user = rng.choice(self.users)
            user.active_clients += 1
            try:
                for _ in range(rng.randint(*SESSION_OPS)):
                    if time.perf_counter() >= self.deadline:
                        break
                    if user.active_clients > 1:
                        self.stats.shared_ops += 1
                    await self.operation(user, rng)
                    if self.args.think_ms > 0:
                        await asyncio.sleep(rng.expovariate(1000.0 / self.args.think_ms))
            finally:
                user.active_clients -= 1

    async def operation(self, user: UserState, rng: random.Random) -> None:
        live, trash = len(user.live), len(user.trash)
        weights = {
            "create": 18 if live < MAX_LIVE else 3,
            "list": 14,
            "get": 14,
            "patch": 13,
            "put": 7,
            "complete": 10,
            "delete": 8 if live < MAX_LIVE else 20,
            "trash": 5,
            "restore": 7,
            "probe": 3,
        }
        if live == 0:
            weights.update(get=0, patch=0, put=0, complete=0, delete=0)
            weights["create"] = 60
        if trash == 0:
            weights["restore"] = 0
        name = rng.choices(list(weights), list(weights.values()))[0]
        self.stats.ops[name] += 1
        await getattr(self, f"op_{name}")(user, rng)

    @staticmethod
    def new_title(user: UserState, rng: random.Random) -> str:
        words = ("buy", "call", "write", "fix", "plan", "read", "send", "clean", "book", "check")
        return f"{rng.choice(words)} {rng.choice(words)} {uuid.UUID(int=rng.getrandbits(128)).hex[:10]}"

    # create ------------------------------------------------------------------------------

    async def op_create(self, user: UserState, rng: random.Random) -> None:
        marker = f"soak {user.sub} {uuid.UUID(int=rng.getrandbits(128)).hex}"
        body: dict[str, Any] = {"title": self.new_title(user, rng), "description": marker, "priority": rng.choice(PRIORITIES)}
        if rng.random() < 0.3:
            body["tags"] = rng.sample(TAGS, rng.randint(1, 3))
        path = f"{self.prefix(user, rng)}/tasks"
        mode = rng.random()
        if mode >= 1 / 3:
            response = await self.request("POST /tasks", "POST", path, user, body=body)
            if response is None:
                user.uncertain_markers.add(marker)
            elif response.status_code == 201:
                self.register(user, response, marker, "POST /tasks")
            else:
                self.unexpected("POST /tasks", response, user)
            return
        key = f"soak-{uuid.UUID(int=rng.getrandbits(128))}"
        headers = {"idempotency-key": key}
        concurrent = mode < 1 / 12
        if concurrent:
            first, second = await asyncio.gather(
                self.request("POST /tasks (key)", "POST", path, user, body=body, headers=headers),
                self.request("POST /tasks (key, retry at once)", "POST", path, user, body=body, headers=headers),
            )
            self.stats.idempotency["create, sent twice at once"] += 1
        else:
            first = await self.request("POST /tasks (key)", "POST", path, user, body=body, headers=headers)
            second = await self.request("POST /tasks (key, retry)", "POST", path, user, body=body, headers=headers)
            self.stats.idempotency["create, retried"] += 1
        await self.judge_idempotent_create(user, marker, key, first, second, concurrent)

    async def judge_idempotent_create(
        self,
        user: UserState,
        marker: str,
        key: str,
        first: httpx.Response | None,
        second: httpx.Response | None,
        concurrent: bool,
    ) -> None:
        route = "POST /tasks (key)"
        answered = [r for r in (first, second) if r is not None]
        if len(answered) < 2:
            user.uncertain_markers.add(marker)
        for response in answered:
            if response.status_code not in (201, 409):
                self.unexpected(route, response, user)
        created = [r for r in answered if r.status_code == 201]
        conflicts = [r for r in answered if r.status_code == 409]
        if conflicts:
            self.stats.idempotency["409 (first still in flight)"] += len(conflicts)
        if not created:
            if not conflicts:
                user.uncertain_markers.add(marker)
            return
        ids = {str(r.json()["id"]) for r in created}
        tasks = [self.register(user, r, marker, route) for r in created]
        if len(ids) > 1:
            self.stats.duplicates.append(f"{user.sub} key {key}: two creates answered with {sorted(ids)}")
        task = tasks[0]
        if task is not None:
            self.idempotent_creates.append(Idem(user.sub, key, task.id, marker))
        replayed = [r.headers.get("idempotent-replayed") == "true" for r in created]
        if len(created) == 2:
            if sorted(replayed) != [False, True]:
                self.stats.anomaly(
                    "replay header", f"{route}: key {key} ({'at once' if concurrent else 'retry'}): Idempotent-Replayed {replayed}"
                )
            elif created[0].json() != created[1].json():
                self.stats.anomaly("replay body", f"{route}: key {key}: the replay's body differs from the first answer")
            else:
                self.stats.idempotency["create replayed correctly"] += 1
        elif not concurrent and first is not None and second is not None and second.status_code == 409:
            self.stats.anomaly("replay 409", f"{route}: key {key}: a sequential retry answered 409")

    # reads -------------------------------------------------------------------------------

    async def op_get(self, user: UserState, rng: random.Random) -> None:
        pool = user.trash if user.trash and rng.random() < 0.15 else user.live
        task = user.tasks[rng.choice(list(pool))]
        snap = self.snap(task)
        response = await self.request("GET /tasks/{id}", "GET", f"{self.prefix(user, rng)}/tasks/{task.id}", user)
        if response is None:
            return
        if response.status_code == 200:
            item = response.json()
            self.check_etag("GET /tasks/{id}", response, item)
            if str(item.get("id")) != task.id:
                self.stats.leaks.append(f"GET /tasks/{task.id} as {user.sub} answered task {item.get('id')}")
                return
            self.observe(user, item, deleted=False, where="GET /tasks/{id}")
            if snap.deleted and self.quiet(task, snap):
                self.stats.anomaly("trashed task visible", f"GET /tasks/{task.id} of {user.sub}: 200 for a task in the trash")
        elif response.status_code == 404:
            if not snap.deleted and self.quiet(task, snap):
                self.stats.anomaly("live task 404", f"GET /tasks/{task.id} of {user.sub}: 404 with no write in flight")
        else:
            self.unexpected("GET /tasks/{id}", response, user)

    async def op_list(self, user: UserState, rng: random.Random) -> None:
        sort = rng.choice(LIST_SORTS)
        params: dict[str, Any] = {"limit": rng.randint(5, 30)}
        if sort != "-created_at" or rng.random() < 0.5:
            params["sort"] = sort
        status = rng.choice(("all", None, None, "pending", "completed"))
        if status is not None:
            params["status"] = status
        path = f"{self.prefix(user, rng)}/tasks"
        in_walk: set[str] = set()
        for _ in range(rng.randint(1, 4)):
            response = await self.request("GET /tasks", "GET", path, user, params=params)
            if response is None:
                return
            if response.status_code != 200:
                self.unexpected("GET /tasks", response, user)
                return
            page = response.json()
            for item in page["items"]:
                self.observe(user, item, deleted=False, where="GET /tasks")
                if status == "completed" and item.get("completed") is not True or status == "pending" and item.get("completed") is not False:
                    self.stats.anomaly("filter", f"GET /tasks?status={status} of {user.sub} listed {item.get('id')} completed={item.get('completed')}")
                # created_at never changes: a keyset walk over it can never show a task twice
                if sort.lstrip("-") == "created_at" and item["id"] in in_walk:
                    self.stats.anomaly("paging", f"GET /tasks sort={sort} of {user.sub}: {item['id']} on two pages of one walk")
                in_walk.add(item["id"])
            if len(page["items"]) > params["limit"]:
                self.stats.anomaly("paging", f"GET /tasks of {user.sub}: {len(page['items'])} items for limit {params['limit']}")
            if not page.get("next_cursor"):
                return
            params = {**params, "cursor": page["next_cursor"]}

    async def op_trash(self, user: UserState, rng: random.Random) -> None:
        params: dict[str, Any] = {"limit": rng.randint(5, 30)}
        path = f"{self.prefix(user, rng)}/trash"
        in_walk: set[str] = set()
        for _ in range(rng.randint(1, 3)):
            response = await self.request("GET /trash", "GET", path, user, params=params)
            if response is None:
                return
            if response.status_code != 200:
                self.unexpected("GET /trash", response, user)
                return
            page = response.json()
            for item in page["items"]:
                if "deleted_at" not in item:
                    self.stats.anomaly("trash item", f"GET /trash of {user.sub}: {item.get('id')} has no deleted_at")
                self.observe(user, item, deleted=True, where="GET /trash")
                in_walk.add(item["id"])
            if not page.get("next_cursor"):
                return
            params = {**params, "cursor": page["next_cursor"]}

    async def reread(self, user: UserState, task: TaskState, rng: random.Random) -> None:
        """After a 412: the current state, then go on."""
        response = await self.request("GET /tasks/{id} (after 412)", "GET", f"{self.prefix(user, rng)}/tasks/{task.id}", user)
        if response is not None and response.status_code == 200:
            item = response.json()
            self.check_etag("GET /tasks/{id} (after 412)", response, item)
            self.observe(user, item, deleted=False, where="GET /tasks/{id} (after 412)")
        elif response is not None and response.status_code != 404:
            self.unexpected("GET /tasks/{id} (after 412)", response, user)

    # writes ------------------------------------------------------------------------------

    async def write(
        self,
        route: str,
        method: str,
        user: UserState,
        task: TaskState,
        rng: random.Random,
        *,
        suffix: str = "",
        body: Any = None,
        if_match: bool = True,
    ) -> tuple[httpx.Response | None, Snapshot]:
        """One write of a live task with the bookkeeping every write needs."""
        snap = self.snap(task)
        headers = {"if-match": f'"{snap.version}"'} if if_match else {}
        self.begin_write(task)
        try:
            response = await self.request(
                route, method, f"{self.prefix(user, rng)}/tasks/{task.id}{suffix}", user, body=body, headers=headers
            )
        finally:
            task.inflight -= 1
        if response is None:
            task.uncertain = True
        elif response.status_code == 412:
            if if_match and self.quiet(task, snap, own_writes=1):
                self.stats.anomaly("412 without a race", f"{route} {task.id} of {user.sub}: If-Match \"{snap.version}\" refused")
            await self.reread(user, task, rng)
        elif response.status_code == 404:
            if not snap.deleted and self.quiet(task, snap, own_writes=1):
                self.stats.anomaly("live task 404", f"{route} {task.id} of {user.sub}: 404 with no other write in flight")
        elif response.status_code >= 300:
            self.unexpected(route, response, user)
        return response, snap

    def written(self, route: str, user: UserState, response: httpx.Response, snap: Snapshot, if_match: bool) -> dict[str, Any]:
        item = response.json()
        self.check_etag(route, response, item)
        if if_match and item.get("version") not in (snap.version, snap.version + 1):
            self.stats.anomaly("version", f"{route} with If-Match \"{snap.version}\" answered version {item.get('version')}")
        self.observe(user, item, deleted=False, where=route)
        return item

    async def op_patch(self, user: UserState, rng: random.Random) -> None:
        task = user.tasks[rng.choice(list(user.live))]
        body: dict[str, Any] = {"title": self.new_title(user, rng)}
        if rng.random() < 0.4:
            body["priority"] = rng.choice(PRIORITIES)
        if rng.random() < 0.2:
            body["tags"] = rng.sample(TAGS, rng.randint(0, 3))
        if_match = rng.random() < 0.8
        response, snap = await self.write("PATCH /tasks/{id}", "PATCH", user, task, rng, body=body, if_match=if_match)
        if response is not None and response.status_code == 200:
            item = self.written("PATCH /tasks/{id}", user, response, snap, if_match)
            if item.get("title") != body["title"]:
                self.stats.anomaly("write not applied", f"PATCH {task.id}: sent title {body['title']!r}, got {item.get('title')!r}")

    async def op_put(self, user: UserState, rng: random.Random) -> None:
        task = user.tasks[rng.choice(list(user.live))]
        body = {
            "title": self.new_title(user, rng),
            "description": task.marker,
            "priority": rng.choice(PRIORITIES),
            "tags": rng.sample(TAGS, rng.randint(0, 2)),
        }
        response, snap = await self.write("PUT /tasks/{id}", "PUT", user, task, rng, body=body)
        if response is not None and response.status_code == 200:
            item = self.written("PUT /tasks/{id}", user, response, snap, True)
            if item.get("title") != body["title"] or item.get("completed") is not False:
                self.stats.anomaly("write not applied", f"PUT {task.id}: got title {item.get('title')!r} completed {item.get('completed')}")

    async def op_complete(self, user: UserState, rng: random.Random) -> None:
        task = user.tasks[rng.choice(list(user.live))]
        body = None if rng.random() < 0.6 else {"completed": rng.random() < 0.5}
        path = f"{self.prefix(user, rng)}/tasks/{task.id}/complete"
        route = "PATCH /tasks/{id}/complete"
        if rng.random() >= 0.3:
            if_match = rng.random() < 0.3
            response, snap = await self.write(route, "PATCH", user, task, rng, suffix="/complete", body=body, if_match=if_match)
            if response is not None and response.status_code == 200:
                item = self.written(route, user, response, snap, if_match)
                if body is not None and item.get("completed") is not body["completed"]:
                    self.stats.anomaly("write not applied", f"complete {task.id}: sent {body}, got completed {item.get('completed')}")
            return
        # With an Idempotency-Key, and the same request again at once: one toggle, not two.
        key = f"soak-{uuid.UUID(int=rng.getrandbits(128))}"
        headers = {"idempotency-key": key}
        self.begin_write(task)
        try:
            first = await self.request(f"{route} (key)", "PATCH", path, user, body=body, headers=headers)
            second = await self.request(f"{route} (key, retry)", "PATCH", path, user, body=body, headers=headers)
        finally:
            task.inflight -= 1
        self.stats.idempotency["complete, retried"] += 1
        self.judge_idempotent_write(f"{route} (key)", user, task, key, first, second)

    def judge_idempotent_write(
        self, route: str, user: UserState, task: TaskState, key: str, first: httpx.Response | None, second: httpx.Response | None
    ) -> None:
        if first is None or second is None:
            task.uncertain = True
        for response in (first, second):
            if response is not None and response.status_code not in (200, 404):
                self.unexpected(route, response, user)
        if first is not None and second is not None and first.status_code == 200:
            if second.status_code != 200 or second.headers.get("idempotent-replayed") != "true" or second.json() != first.json():
                self.stats.anomaly(
                    "replay", f"{route} key {key}: retry answered {second.status_code} replayed={second.headers.get('idempotent-replayed')}"
                )
            else:
                self.stats.idempotency[f"{'restore' if 'restore' in route else 'complete'} replayed correctly"] += 1
            if first.headers.get("idempotent-replayed") == "true":
                self.stats.anomaly("replay", f"{route} key {key}: the first request was a replay")
        for response in (first, second):
            if response is not None and response.status_code == 200:
                item = response.json()
                self.check_etag(route, response, item)
                self.observe(user, item, deleted=False, where=route)

    async def op_delete(self, user: UserState, rng: random.Random) -> None:
        task = user.tasks[rng.choice(list(user.live))]
        response, snap = await self.write("DELETE /tasks/{id}", "DELETE", user, task, rng)
        if response is not None and response.status_code == 204:
            # If-Match held: the row was at snap.version and is now snap.version + 1, trashed.
            if snap.version + 1 > task.version:
                task.version, task.title, task.completed = snap.version + 1, snap.title, snap.completed
                user.set_deleted(task, True)
            elif snap.version + 1 == task.version and not task.deleted:
                self.stats.anomaly("same version, other content", f"DELETE {task.id}: v{task.version} is known live")

    async def op_restore(self, user: UserState, rng: random.Random) -> None:
        task = user.tasks[rng.choice(list(user.trash))]
        path = f"{self.prefix(user, rng)}/trash/{task.id}/restore"
        route = "POST /trash/{id}/restore"
        snap = self.snap(task)
        self.begin_write(task)
        try:
            if rng.random() < 0.4:
                key = f"soak-{uuid.UUID(int=rng.getrandbits(128))}"
                headers = {"idempotency-key": key}
                first = await self.request(f"{route} (key)", "POST", path, user, headers=headers)
                second = await self.request(f"{route} (key, retry)", "POST", path, user, headers=headers)
                self.stats.idempotency["restore, retried"] += 1
            else:
                key, first, second = None, await self.request(route, "POST", path, user), None
        finally:
            task.inflight -= 1
        if key is not None:
            self.judge_idempotent_write(f"{route} (key)", user, task, key, first, second)
        elif first is None:
            task.uncertain = True
        elif first.status_code == 200:
            item = first.json()
            self.check_etag(route, first, item)
            self.observe(user, item, deleted=False, where=route)
        elif first.status_code != 404:
            self.unexpected(route, first, user)
        if first is not None and first.status_code == 404 and snap.deleted and self.quiet(task, snap, own_writes=1):
            self.stats.anomaly("trashed task 404", f"restore {task.id} of {user.sub}: 404 with no other write in flight")

    # isolation ---------------------------------------------------------------------------

    async def op_probe(self, user: UserState, rng: random.Random) -> None:
        """Another user's task through our token (404), or another user's path (403)."""
        others = [u for u in self.users if u is not user and u.tasks]
        if not others:
            return
        other = rng.choice(others)
        if rng.random() < 0.25:
            response = await self.request("probe: other user's path", "GET", f"/api/{other.sub}/tasks", user)
            if response is not None and response.status_code != 403:
                if response.status_code < 300:
                    self.stats.leaks.append(f"{user.sub} listed /api/{other.sub}/tasks: {response.status_code}")
                else:
                    self.unexpected("probe: other user's path", response, user)
            return
        victim = other.tasks[rng.choice(list(other.tasks))]
        base = f"{self.prefix(user, rng)}"
        method, path, body = rng.choice(
            (
                ("GET", f"{base}/tasks/{victim.id}", None),
                ("PATCH", f"{base}/tasks/{victim.id}", {"title": "not yours"}),
                ("PUT", f"{base}/tasks/{victim.id}", {"title": "not yours", "description": victim.marker}),
                ("DELETE", f"{base}/tasks/{victim.id}", None),
                ("PATCH", f"{base}/tasks/{victim.id}/complete", None),
                ("POST", f"{base}/trash/{victim.id}/restore", None),
            )
        )
        response = await self.request("probe: other user's task", method, path, user, body=body)
        if response is None:
            return
        if response.status_code < 300:
            self.stats.leaks.append(f"{user.sub}: {method} {path} (a task of {other.sub}) answered {response.status_code}")
        elif response.status_code != 404:
            self.unexpected(f"probe: {method} other user's task", response, user)


# ----------------------------------------------------------------------------- the audit


@dataclass
class Audit:
    lost: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    unverifiable: int = 0  # tasks with a write of unknown outcome
    unconfirmed_creates: int = 0
    users_matching: int = 0
    live_rows: int = 0
    trash_rows: int = 0
    idempotent_ok: int = 0


def audit(soak: Soak, db: Scratch) -> Audit:
    """The database against every user's tally."""
    result = Audit()
    connection = db.connect()
    try:
        rows = connection.run(
            "SELECT id::text, user_id, title, description, completed, version, deleted_at IS NOT NULL FROM tasks"
        )
        keys = connection.run("SELECT user_id, key, status_code, response_body FROM idempotency_keys")
        duplicate_markers = connection.run(
            "SELECT description, count(*) FROM tasks GROUP BY description HAVING count(*) > 1"
        )
        users_in_db = {r[0] for r in connection.run("SELECT id FROM users")}
    finally:
        connection.close()

    by_id = {r[0]: r for r in rows}
    by_user: dict[str, list[list[Any]]] = defaultdict(list)
    for row in rows:
        by_user[row[1]].append(row)
    result.live_rows = sum(1 for r in rows if not r[6])
    result.trash_rows = sum(1 for r in rows if r[6])
    subs = {u.sub for u in soak.users}

    for user in soak.users:
        problems_before = len(result.lost) + len(result.phantom) + len(result.leaks)
        for task in user.tasks.values():
            row = by_id.get(task.id)
            if row is None:
                result.lost.append(f"{user.sub}: task {task.id} was created (201) and is not in the table")
                continue
            _, owner, title, description, completed, version, deleted = row
            if owner != user.sub:
                result.leaks.append(f"task {task.id} created by {user.sub} belongs to {owner} in the table")
                continue
            if description != task.marker:
                result.lost.append(f"{user.sub}: task {task.id} description {description!r}, created as {task.marker!r}")
            if task.uncertain:
                result.unverifiable += 1
                continue
            if version < task.version:
                result.lost.append(f"{user.sub}: task {task.id} is at version {version} in the table, v{task.version} was confirmed")
            elif version > task.version:
                result.phantom.append(
                    f"{user.sub}: task {task.id} is at version {version} in the table; no client saw past v{task.version}"
                )
            elif (title, completed, deleted) != (task.title, task.completed, task.deleted):
                result.lost.append(
                    f"{user.sub}: task {task.id} v{version}: table (title={title!r}, completed={completed}, trashed={deleted}) "
                    f"!= confirmed (title={task.title!r}, completed={task.completed}, trashed={task.deleted})"
                )
        for row in by_user.get(user.sub, []):
            if row[0] not in user.tasks:
                if row[3] in user.uncertain_markers:
                    result.unconfirmed_creates += 1
                else:
                    result.phantom.append(f"{user.sub}: row {row[0]} ({row[3]!r}) that no client of the user created")
        # seen by a client of this user but not created by it: a leak unless it is ours after all
        for task_id in user.seen - user.tasks.keys():
            row = by_id.get(task_id)
            if row is None or row[1] != user.sub:
                result.leaks.append(f"{user.sub} was shown task {task_id}, owned by {row[1] if row else 'nobody'}")
            elif row[3] not in user.uncertain_markers:
                result.phantom.append(f"{user.sub} was shown its own task {task_id} that no client created")
        tally_live = sum(1 for t in user.tasks.values() if not t.deleted)
        tally_trash = len(user.tasks) - tally_live
        db_rows = by_user.get(user.sub, [])
        db_live = sum(1 for r in db_rows if not r[6])
        db_trash = len(db_rows) - db_live
        exact = not any(t.uncertain for t in user.tasks.values()) and not user.uncertain_markers
        if (tally_live, tally_trash) != (db_live, db_trash) and exact:
            result.lost.append(
                f"{user.sub}: table has {db_live} live + {db_trash} trashed, tally {tally_live} live + {tally_trash} trashed"
            )
        if len(result.lost) + len(result.phantom) + len(result.leaks) == problems_before and (
            (tally_live, tally_trash) == (db_live, db_trash) or not exact
        ):
            result.users_matching += 1
    for owner, rows_of_owner in by_user.items():
        if owner not in subs:
            result.phantom.append(f"{len(rows_of_owner)} rows of {owner!r}, a user no client was")
    for user_id in users_in_db - subs:
        result.phantom.append(f"users row {user_id!r} that no client was")

    for description, count in duplicate_markers:
        result.duplicates.append(f"{count} rows carry the creation marker {description!r}")
    records = {(r[0], r[1]): (r[2], r[3]) for r in keys}
    for idem in soak.idempotent_creates:
        record = records.get((idem.user, idem.key))
        if record is None:
            result.lost.append(f"{idem.user}: no idempotency record for key {idem.key} (task {idem.task_id})")
            continue
        status, body = record
        try:
            recorded = str(json.loads(body)["id"])
        except (ValueError, KeyError, TypeError):
            recorded = None
        if status != 201 or recorded != idem.task_id:
            result.duplicates.append(f"{idem.user} key {idem.key}: record {status} names {recorded}, the clients got {idem.task_id}")
        elif idem.task_id in by_id:
            result.idempotent_ok += 1
    return result


# ---------------------------------------------------------------------------- the report


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


_GATEWAY_LINE = re.compile(r"todo_api\.gateway: (\S+) (\S+) -> (\S+)(?: \(.*\))? (\d{3}) \((\d+) ms\) (\S+)\s*$")


def server_log_summary(path: Path) -> tuple[dict[str, list[float]], Counter, list[str]]:
    """The gateway's own latency per function, its status counts, and error lines."""
    per_function: dict[str, list[float]] = defaultdict(list)
    statuses: Counter = Counter()
    errors: list[str] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return per_function, statuses, errors
    for line in text.splitlines():
        found = _GATEWAY_LINE.search(line)
        if found:
            per_function[found.group(3)].append(float(found.group(5)))
            statuses[found.group(4)] += 1
        elif " ERROR " in line or "Traceback" in line or '"level":"ERROR"' in line or '"level":"CRITICAL"' in line:
            errors.append(line[:400])
    return per_function, statuses, errors


def context_lines(path: Path, request_id: str, before: int = 25, after: int = 3) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for index, line in enumerate(lines):
        if request_id in line and "todo_api.gateway" in line:
            return [line_[:400] for line_ in lines[max(0, index - before) : index + after + 1]]
    return [f"(request id {request_id} not found in the server log)"]


def report(
    soak: Soak,
    result: Audit | None,
    serve: ServeProcess,
    cpu: dict[str, float | None],
    wall_load: float,
    smoke: bool = False,
) -> bool:
    s = soak.stats
    elapsed = soak.elapsed or 1e-9
    log()
    log("=" * 100)
    log(
        f"load: {soak.args.clients} clients, {soak.args.users} users, {elapsed:.1f} s"
        f" (think time {soak.args.think_ms:g} ms), seed {soak.args.seed}"
    )
    log(f"requests served: {s.requests} in {elapsed:.1f} s = {s.requests / elapsed:.1f} requests/s")
    log(f"operations: {sum(s.ops.values())} ({', '.join(f'{k} {v}' for k, v in s.ops.most_common())})")
    log(f"operations while another client worked as the same user: {s.shared_ops} ({100 * s.shared_ops / max(1, sum(s.ops.values())):.0f}%)")
    log()
    log("client-side latency per route (ms; from request sent to response read):")
    log(f"  {'route':<40} {'count':>7} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}  statuses")
    for route, stats in sorted(soak.stats.routes.items(), key=lambda kv: -len(kv[1].latencies)):
        values = sorted(stats.latencies)
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(stats.statuses.items()))
        log(
            f"  {route:<40} {len(values):>7} {len(values) / elapsed:>7.1f} {percentile(values, 50) * 1000:>7.1f}"
            f" {percentile(values, 95) * 1000:>7.1f} {percentile(values, 99) * 1000:>7.1f} {values[-1] * 1000 if values else 0:>7.1f}  {statuses}"
        )
    every = sorted(v for stats in s.routes.values() for v in stats.latencies)
    log(
        f"  {'all':<40} {len(every):>7} {len(every) / elapsed:>7.1f} {percentile(every, 50) * 1000:>7.1f}"
        f" {percentile(every, 95) * 1000:>7.1f} {percentile(every, 99) * 1000:>7.1f} {every[-1] * 1000 if every else 0:>7.1f}"
    )
    lags = sorted(soak.lags)
    log(
        f"  this script's event-loop lag (inside every figure above): p50 {percentile(lags, 50) * 1000:.1f} ms, "
        f"p99 {percentile(lags, 99) * 1000:.1f} ms, max {lags[-1] * 1000 if lags else 0:.1f} ms"
    )
    per_function, server_statuses, server_errors = server_log_summary(serve.stdout_path)
    log()
    log("gateway-side latency per function (ms; its log line: authorizer + handler, queueing for a worker included):")
    log(f"  {'function':<40} {'count':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}")
    for function, values in sorted(per_function.items(), key=lambda kv: -len(kv[1])):
        values.sort()
        log(
            f"  {function:<40} {len(values):>7} {percentile(values, 50):>7.0f} {percentile(values, 95):>7.0f}"
            f" {percentile(values, 99):>7.0f} {values[-1]:>7.0f}"
        )
    log(f"  gateway log lines: {sum(server_statuses.values())} ({' '.join(f'{k}:{v}' for k, v in sorted(server_statuses.items()))})")
    log()
    def cores(name: str) -> str:
        value = cpu.get(name)
        return f"{value / elapsed:.2f}" if value is not None else "?"

    machine = cpu.get("machine")
    log(
        f"CPU during the load (cores busy on average; the machine has {os.cpu_count()}): serve {cores('serve')}, "
        f"this script {cores('client')}, Postgres {cores('postgres')} (its other databases included), "
        f"whole machine {f'{machine:.2f}' if machine is not None else '?'} (neighbours included); "
        f"load average at the end {wall_load:.2f}"
    )
    log()
    five = len(s.server_errors)
    by_status = Counter(e["status"] for e in s.server_errors)
    log(f"5xx: {five}" + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(by_status.items()))})" if five else ""))
    throttled = Counter(t["status"] for t in s.throttled)
    log(f"429/503: {throttled.get(429, 0)} / {throttled.get(503, 0)}")
    log(f"transport errors (no response): {len(s.transport)}")
    log(f"412 (expected when clients of one user race): {sum(s.precondition.values())} ({', '.join(f'{k} {v}' for k, v in s.precondition.most_common()) or 'none'})")
    log(f"idempotency: {', '.join(f'{k} {v}' for k, v in sorted(s.idempotency.items())) or 'none'}")
    log(f"unexpected statuses: {len(s.unexpected)}")
    log(f"anomalies: {sum(s.anomaly_kinds.values())}" + (f" ({', '.join(f'{k} {v}' for k, v in s.anomaly_kinds.most_common())})" if s.anomaly_kinds else ""))
    leaks = s.leaks + (result.leaks if result else [])
    log(f"LEAKS: {len(leaks)}")
    if result is not None:
        log(
            f"database: {result.live_rows + result.trash_rows} tasks ({result.live_rows} live, {result.trash_rows} trashed); "
            f"tallies {sum(len(u.tasks) for u in soak.users)} tasks; users matching {result.users_matching}/{len(soak.users)}"
        )
        log(f"LOST writes: {len(result.lost)}")
        log(f"PHANTOM writes: {len(result.phantom)}")
        duplicates = len(result.duplicates) + len(s.duplicates)
        log(f"DUPLICATE writes: {duplicates} (clients saw {len(s.duplicates)}, table shows {len(result.duplicates)})")
        log(f"idempotent creates checked: {result.idempotent_ok}/{len(soak.idempotent_creates)} one row and one record each")
        if result.unverifiable or result.unconfirmed_creates:
            log(f"not verifiable (a write with no response): {result.unverifiable} tasks, {result.unconfirmed_creates} creates")
    else:
        log("database audit: not run")

    def show(title: str, items: list[str], limit: int = 15) -> None:
        if items:
            log()
            log(f"{title} (first {min(limit, len(items))} of {len(items)}):")
            for item in items[:limit]:
                log(f"  {item}")

    show("LEAKS", leaks)
    if result is not None:
        show("LOST", result.lost)
        show("PHANTOM", result.phantom)
        show("DUPLICATES", s.duplicates + result.duplicates)
    show("anomalies", s.anomalies)
    show("unexpected statuses", s.unexpected)
    show("transport errors", s.transport)
    if s.server_errors:
        log()
        log(f"5xx, with the server log around each (first 5 of {five}; log {serve.stdout_path}):")
        for error in s.server_errors[:5]:
            log(f"--- {error['status']} at {error['at']:.1f} s: {error['request']} ({error['route']}) request id {error['request_id']}")
            log(f"    body: {error['body']}")
            for line in context_lines(serve.stdout_path, error["request_id"]):
                log(f"    | {line}")
    show("server log ERROR / Traceback lines", server_errors, 20)

    failed = bool(
        five
        or leaks
        or s.transport
        or s.anomaly_kinds
        or s.duplicates
        or result is None
        or result.lost
        or result.phantom
        or result.duplicates
    )
    log()
    if smoke:
        log(f"({SMOKE_NOTE}; the checks still count)")
    log(
        "RESULT: "
        + ("FAIL" if failed else "PASS")
        + f": 5xx {five}, leaks {len(leaks)}, lost {len(result.lost) if result else '?'}, "
        f"phantom {len(result.phantom) if result else '?'}, duplicates {(len(result.duplicates) if result else 0) + len(s.duplicates)}, "
        f"anomalies {sum(s.anomaly_kinds.values())}, transport errors {len(s.transport)}"
    )
    return not failed


# --------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--clients", type=int, default=40, help="concurrent clients (default 40)")
    parser.add_argument("--users", type=int, default=50, help="users the clients act as (default 50)")
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause between a client's operations (default 0)")
    parser.add_argument("--seed", type=int, default=1, help="the operation mix's random seed (default 1)")
    parser.add_argument("--keep-log", action="store_true", help="keep serve's log even when the run passes")
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.clients, args.users = 4.0, 6, 3
    if args.duration <= 0 or args.clients < 1 or args.users < 1:
        parser.error("--duration, --clients and --users must be positive")

    for name in ("JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL"):
        os.environ.pop(name, None)  # the tokens are the local issuer's, as serve trusts it
    wall = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="todo-soak-"))
    work.chmod(0o755)
    local_dir = work / "local"
    local_dir.mkdir(mode=0o755)
    os.environ["TODO_API_LOCAL_DIR"] = str(local_dir)
    serve: ServeProcess | None = None
    passed = False
    keep = args.keep_log
    try:
        with scratch_database("todo_soak", migrated=False) as db:  # serve migrates it
            serve = ServeProcess(clean_env(local_dir, DATABASE_URL=db.url), log_dir=work, merged=True, own_session=True)
            try:
                started = time.perf_counter()
                serve.start()
                log(
                    f"serve (pid {serve.process.pid if serve.process else '?'}) answers on {serve.url} after "
                    f"{time.perf_counter() - started:.1f} s; database {db.name} on {db.server.where}"
                )
                passed = load_and_audit(serve, db, args)
            finally:
                try:
                    log(f"serve stopped (exit code {serve.stop()})")
                except ServeFailed as error:
                    log(f"serve had to be killed: {error}")
    except KeyboardInterrupt:
        log("interrupted")
        keep = True
        return 130
    finally:
        log_path = serve.stdout_path if serve is not None else None
        if (keep or not passed) and log_path is not None and log_path.exists():
            kept = Path(tempfile.gettempdir()) / f"todo-soak-serve-{time.strftime('%Y%m%d-%H%M%S')}.log"
            shutil.move(str(log_path), kept)
            log(f"serve's log kept at {kept}")
        shutil.rmtree(work, ignore_errors=True)
        log(f"wall time {time.perf_counter() - wall:.1f} s")
    return 0 if passed else 1


def load_and_audit(serve: ServeProcess, db: Scratch, args: argparse.Namespace) -> bool:
    """The clients' load against `serve`, then the database audited; whether it all passed."""
    from shared.local import keys

    ttl = int(args.duration) + 3600
    users = [
        UserState(sub, keys.mint_token(sub, ttl=ttl, email=f"{sub}@soak.example"))
        for sub in (f"soak-user-{i:03d}" for i in range(args.users))
    ]
    soak = Soak(serve.url, users, args)
    log(f"running {args.clients} clients over {args.users} users for {args.duration:g} s ...")
    postmaster = postmaster_pid(db)
    serve_cpu0, client_cpu0, machine0 = serve.cpu_seconds(), time.process_time(), _machine_busy()
    pg_cpu0 = postgres_cpu(postmaster)
    try:
        asyncio.run(soak.run())
    finally:
        serve_cpu1, client_cpu1, machine1 = serve.cpu_seconds(), time.process_time(), _machine_busy()
        pg_cpu1 = postgres_cpu(postmaster)
    cpu: dict[str, float | None] = {
        "serve": serve_cpu1 - serve_cpu0 if serve_cpu0 is not None and serve_cpu1 is not None else None,
        "client": client_cpu1 - client_cpu0,
        "postgres": pg_cpu1 - pg_cpu0 if pg_cpu0 is not None and pg_cpu1 is not None else None,
        "machine": (
            (machine1[0] - machine0[0]) / (machine1[1] - machine0[1]) * (os.cpu_count() or 1)
            if machine0 and machine1 and machine1[1] > machine0[1]
            else None
        ),
    }
    log("load done; auditing the database ...")
    result = audit(soak, db)
    return report(soak, result, serve, cpu, os.getloadavg()[0], args.smoke)


if __name__ == "__main__":
    sys.exit(main_exit(main))
