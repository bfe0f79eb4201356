"""Fuzzing: schemathesis over the assembled OpenAPI document, through the local gateway.

The gateway (`shared/local/gateway.py`, what `todo-api serve` runs) is built in this process
on the run's test database and a temporary `TODO_API_LOCAL_DIR`, and schemathesis drives it
as an ASGI app: every request goes through route matching, the JWT authorizer, a payload 2.0
event and the real Lambda handler. The document under test is the one the gateway serves at
`/openapi.json` (`shared.openapi.build_openapi()` plus the bearer scheme).

Every phase of `schemathesis run` (coverage, fuzzing, stateful through links inferred from
`Location` headers and from the schemas) and every check schemathesis 4 has are on, plus two
of this project's own (`foreign_objects_are_not_found`, `problem_status_matches`). The test
runs once per user (alice, bob), each with a valid token; `{user_id}` is `me` or the
caller's `sub` most of the time, sometimes the other user's `sub` or the generated value
(403). Task and category ids are often one of the caller's own (so PUT, PATCH, complete,
restore and DELETE reach real rows) and sometimes one of the other user's (which must look
exactly like a missing one: 404). A well-formed `Idempotency-Key` is made unique per case
(reusing a key with another body is 422 by contract, and generators repeat short values).

Deterministic: fixed seed, derandomized Hypothesis, one worker, no example database, and
generation that does not feed on answers, so the coverage and fuzzing phases send the same
requests on every run (ids aside: the server makes them). The stateful phase follows links
through those ids, so its length varies by some dozens of cases between runs. Bounded: the
default run is about 3,000 cases, under a minute and a half on a 2-core machine.

Longer runs, behind environment variables (about 50 cases a second here):

    FUZZ=long .venv/bin/pytest tests/test_fuzz.py         # 1,000 examples per operation: ~27,000 cases, ~10 min
    FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/test_fuzz.py  # any number per operation
    FUZZ_SEED=7 ...                                       # another deterministic run
    FUZZ_REPORT=/tmp/fuzz.txt ...                         # every distinct failure, in full (appended)

The summary (cases per phase, answers per operation, what was accepted and why, every
distinct failure) is printed whether or not pytest captures output.

`POST /mcp` is left out of this run, on purpose: its HTTP contract is JSON-RPC, where a
tool's refusal is a 200 carrying `isError` by the protocol's own rule, so schemathesis'
negative- and positive-data checks would judge MCP, not this API; and the document gives
its body as the generic JSON-RPC envelope, so generated bodies would mostly exercise the
SDK's parser. The tools themselves take the REST routes' own models and data functions,
which this run fuzzes through the routes; tests/functions/test_mcp.py,
tests/functions/test_ownership.py and tests/e2e/test_mcp_client.py hold the tools to the
same rules. `GET /.well-known/oauth-protected-resource` is in the run like every route.

What the run accepts although a check would flag it, each because the contract says so and
schemathesis cannot know it (see `_ACCEPTED` below; every one is counted and printed):
- an opaque cursor the server did not issue is 400 (schema-valid strings are not cursors);
- a `category_id` that is not one of the caller's categories is 422; so is a `parent_id` or a
  move's `after` that the tree's rules refuse (not a live task of the caller's, a cycle,
  too deep, 200 subtasks, not a child of that parent);
- a method no route has is the gateway's own `404 {"message":"Not Found"}`, as API Gateway's
  HTTP API answers it (schemathesis expects 405);
- a task read after its DELETE is there again if it was restored from the trash since
  (schemathesis' `use_after_free` does not know the restore route);
- a schema-valid request may meet a stale `If-Match`: 412 is accepted like 409.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.engine import events

from shared.local import keys
from shared.local.authorizer import AuthorizerConfig, JwtAuthorizer
from shared.local.gateway import Gateway
from shared.local.settings import LOCAL_DIR_ENV
from shared.settings import get_settings
from tests.lambda_api import LambdaApi

# With metrics off (see `local_dir`), Powertools warns each time its buffer of 100 fills.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

SEED = int(os.environ.get("FUZZ_SEED", "20250601"))
_DEFAULT_EXAMPLES = 1000 if os.environ.get("FUZZ") == "long" else 40
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", _DEFAULT_EXAMPLES))
STATEFUL_STEPS = 20 if EXAMPLES >= 1000 else 8
MIN_CASES = 1000  # across both users, in the default run
REPORT_PATH = os.environ.get("FUZZ_REPORT")

# Every check schemathesis 4.32 registers, by name; the run fails if that list changes, so
# an upgrade that adds a check shows up here instead of being silently left out or in.
ALL_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
)
OWN_CHECKS = ("foreign_objects_are_not_found", "problem_status_matches")
# Generous: a handler takes milliseconds; this only catches a hang short of the gateway's
# own timeout (which answers 500 and fails `not_a_server_error` anyway).
MAX_RESPONSE_TIME = 5.0

# A well-formed request can still meet state it does not know: 409 (conflict) is in
# schemathesis' default list, 412 (stale If-Match) is the same kind of answer.
POSITIVE_EXPECTED = ["2xx", "3xx", 401, 403, 404, 409, 412, 429, "5xx"]
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]{1,255}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


# -- the two users and what they own ---------------------------------------------------------


@dataclass
class User:
    name: str
    sub: str
    token: str = ""
    tasks: list[str] = field(default_factory=list)
    trashed: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


def _seed(api: LambdaApi, user: User) -> None:
    """A few rows each, so generated ids can point at real objects (and the other user's)."""
    for index in range(2):
        category = api.create_category(user.sub, f"seed {index}", color="#336699")
        user.categories.append(category["id"])
    for index in range(4):
        fields: dict[str, Any] = {"title": f"seed task {index}", "tags": ["seed"]}
        if index % 2:
            fields["category_id"] = user.categories[0]
        user.tasks.append(api.create_task(user.sub, **fields)["id"])
    for index in range(2):
        task = api.create_task(user.sub, title=f"seed trashed {index}")
        assert api.delete(f"/api/{user.sub}/tasks/{task['id']}", user=user.sub).status == 204
        user.trashed.append(task["id"])


class _WarningsAndAbove(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@pytest.fixture(scope="module")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("fuzz-local")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LOCAL_DIR_ENV, str(path))
        for name in ("JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL", "CORS_ALLOW_ORIGINS"):
            mp.delenv(name, raising=False)
        # The issuer this gateway trusts, as `serve` gives it to the functions (the protected
        # resource metadata names it).
        mp.setenv("JWT_ISSUER", keys.LOCAL_ISSUER)
        get_settings.cache_clear()
        # Thousands of requests: no metric line and no INFO log line for each (errors still
        # log). A filter, not a level: Powertools sets the level again on every invocation.
        mp.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        service_logger = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "todo-api"))
        quiet = _WarningsAndAbove()
        service_logger.addFilter(quiet)
        try:
            yield path
        finally:
            service_logger.removeFilter(quiet)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def gateway(database_url: str, local_dir: Path) -> Iterator[Gateway]:
    """What `todo-api serve` builds, minus uvicorn: local issuer trusted, CORS off."""
    config = AuthorizerConfig(keys.LOCAL_ISSUER, [keys.LOCAL_AUDIENCE], None, local=True)
    app = Gateway(authorizer=JwtAuthorizer.from_config(config), cors=None, jwks=keys.public_jwks())
    yield app
    app.close()


@pytest.fixture(scope="module")
def users(database_url: str, local_dir: Path) -> dict[str, User]:
    api = LambdaApi()
    # Fixed subs (the run's database is its own): the same seed sends the same requests.
    people = {name: User(name, f"fuzz-{name}") for name in ("alice", "bob")}
    for user in people.values():
        _seed(api, user)
        user.token = keys.mint_token(user.sub, email=f"{user.name}@example.com", ttl=6 * 3600, audience=keys.LOCAL_AUDIENCE)
    return people


# -- steering generated values towards real behaviour ----------------------------------------


def _bucket(*parts: Any) -> int:
    """0..99, a stable function of the generated values (never Python's salted `hash`)."""
    return zlib.crc32(json.dumps(parts, default=repr, sort_keys=True).encode()) % 100


@dataclass
class Steering:
    caller: User
    other: User
    keys_issued: int = 0
    foreign: Counter[str] = field(default_factory=Counter)
    # task id -> "trashed" or "restored", from the answers seen so far (`after_call`)
    trash: dict[str, str] = field(default_factory=dict)

    def after_call(self, case: Any, response: Any) -> None:
        task_id = (case.path_parameters or {}).get("task_id")
        label = case.operation.label
        if task_id is None or (case.path_parameters or {}).get("user_id") not in ("me", self.caller.sub):
            return
        if label == "DELETE /api/{user_id}/tasks/{task_id}" and response.status_code == 204:
            self.trash[str(task_id)] = "trashed"
        elif label == "POST /api/{user_id}/trash/{task_id}/restore" and response.status_code == 200:
            self.trash[str(task_id)] = "restored"

    def user_id(self, label: str, generated: Any) -> Any:
        b = _bucket("user_id", label, generated)
        if b < 55:
            return "me"
        if b < 85:
            return self.caller.sub
        if b < 93:
            return self.other.sub  # 403
        return generated  # 403 unless it happens to be `me` or the caller

    def object_id(self, kind: str, label: str, generated: Any) -> Any:
        if kind == "task":
            own = self.caller.trashed if "/restore" in label else self.caller.tasks
            theirs = self.other.tasks + self.other.trashed
        else:
            own, theirs = self.caller.categories, self.other.categories
        b = _bucket(kind, label, generated)
        if b < 50:
            return own[b % len(own)]
        if b < 62:
            return theirs[b % len(theirs)]
        return generated

    def idempotency_key(self, generated: Any) -> Any:
        """A valid key made unique: reusing one with another body is 422 by contract, and the
        generator reuses short keys all the time. Malformed keys are left as generated (400)."""
        if isinstance(generated, str) and _VISIBLE_ASCII.match(generated):
            self.keys_issued += 1
            return f"{generated[:240]}.{self.keys_issued}"
        return generated

    def map_case(self, case: Any) -> Any:
        label = case.operation.label
        params = case.path_parameters or {}
        # A stateful step gets its ids (and `me` or the sub) from the previous answer's
        # `Location` or body: those are left alone, so the step acts on what was created.
        meta = case.meta
        stateful = meta is not None and meta.phase.name == "stateful"
        # A malformed id on purpose (negative path) stays: it is what the case is about.
        negative_path = meta is not None and meta.is_negative_at(ParameterLocation.PATH)
        if "user_id" in params and not (stateful and params["user_id"] in ("me", self.caller.sub)):
            params["user_id"] = self.user_id(label, params["user_id"])
        for name, kind in (("task_id", "task"), ("category_id", "category")):
            if name in params and not stateful and not negative_path:
                params[name] = self.object_id(kind, label, params[name])
        headers = case.headers
        if headers is not None:
            for name in list(headers):
                if name.lower() == "idempotency-key":
                    headers[name] = self.idempotency_key(headers[name])
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("category_id"), str) and _UUID.match(body["category_id"]):
            b = _bucket("body.category_id", label, body["category_id"])
            if b < 65:
                body["category_id"] = self.caller.categories[b % len(self.caller.categories)]
            elif b < 75:
                body["category_id"] = self.other.categories[b % len(self.other.categories)]  # 422
        for name in ("parent_id", "after"):  # a subtask's parent, a move's sibling: often real tasks
            if isinstance(body, dict) and isinstance(body.get(name), str) and _UUID.match(body[name]):
                b = _bucket(f"body.{name}", label, body[name])
                if label.endswith("/move") and name == "parent_id" and b < 40:
                    body[name] = None  # to the top level, where the seeded tasks are: `after` one of them is valid
                elif b < 60:
                    body[name] = self.caller.tasks[b % len(self.caller.tasks)]
                elif b < 70:
                    body[name] = self.other.tasks[b % len(self.other.tasks)]  # 422
        if headers is not None:
            # Assigning the container makes schemathesis validate the headers again, so a
            # case is called positive only if its headers do match the document. (4.32's
            # coverage phase offers `''` or `'0'` as a "positive" value for a header whose
            # pattern needs punctuation, such as If-Match's.)
            case.headers = headers
        return case


# -- checks of the project's own --------------------------------------------------------------

_ACTIVE: list[Steering] = []  # the run in progress, for the checks below


def _caller_of(case: Any) -> Steering | None:
    return _ACTIVE[-1] if _ACTIVE else None


@schemathesis.check
def foreign_objects_are_not_found(ctx: Any, response: Any, case: Any) -> bool | None:
    """Another user's task or category gets exactly what a missing one gets.

    On one's own path: 404, or an error that comes before any data is read; never 2xx, and
    never 409 or 412, which would tell that it exists. As a body's `category_id`: never
    accepted (2xx); any refusal is fine, since the same refusal meets a missing category
    (a stale `If-Match` on one's own task is 412 either way). No answer names it."""
    steering = _caller_of(case)
    params = case.path_parameters or {}
    if steering is None or params.get("user_id") not in ("me", steering.caller.sub):
        return None
    theirs = set(steering.other.tasks + steering.other.trashed + steering.other.categories)
    target = params.get("task_id") or params.get("category_id")
    in_path = isinstance(target, str) and target in theirs
    if not in_path:
        fields = ("category_id", "parent_id", "after")
        found = [case.body.get(name) for name in fields] if isinstance(case.body, dict) else []
        target = next((value for value in found if isinstance(value, str) and value in theirs), None)
        if target is None:
            return None
    steering.foreign[case.operation.label] += 1
    refused = (400, 401, 404, 413, 415, 422) if in_path else range(400, 600)
    if response.status_code not in refused:
        where = "path" if in_path else "body"
        raise AssertionError(
            f"{case.operation.label} with another user's object {target} in the {where} answered "
            f"{response.status_code}, not what a missing one gets: {response.content[:300]!r}"
        )
    body = _problem(response) if response.status_code >= 400 else {}
    body.pop("instance", None)  # the request's own path
    if target in json.dumps(body):
        raise AssertionError(f"the answer names another user's object {target}: {response.content[:300]!r}")
    return None


@schemathesis.check
def problem_status_matches(ctx: Any, response: Any, case: Any) -> bool | None:
    """A problem+json body says the status it was sent with."""
    if not (response.headers.get("content-type") or [""])[0].startswith("application/problem+json"):
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"a problem+json body that is not JSON: {response.content[:200]!r}") from None
    if not isinstance(body, dict) or body.get("status") != response.status_code:
        raise AssertionError(f"problem says status {body!r:.200}, sent with {response.status_code}")
    return None


# -- what the contract makes a check flag, accepted narrowly -----------------------------------


def _problem(response: Any) -> dict[str, Any]:
    try:
        value = json.loads(response.content or b"null")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# Each rule gets a failure schemathesis is about to report (its class names the check:
# `RejectedPositiveData` is positive_data_acceptance's, `UnsupportedMethodResponse`
# unsupported_method's) and says whether the contract explains it.


def _opaque_cursor(failure: str, case: Any, response: Any) -> bool:
    problem = _problem(response)
    return (
        failure == "RejectedPositiveData"
        and response.status_code == 400
        and "cursor" in (case.query or {})
        and problem.get("code") == "bad_request"
        and "cursor" in str(problem.get("detail", ""))
    )


def _not_your_category(failure: str, case: Any, response: Any) -> bool:
    errors = _problem(response).get("errors") or []
    return (
        failure == "RejectedPositiveData"
        and response.status_code == 422
        and len(errors) == 1
        and errors[0].get("loc") == ["body", "category_id"]
        and errors[0].get("msg") == "is not one of your categories"
    )


# Rules the contract gives that a JSON Schema cannot say: the RRULE grammar and what each
# part may hold, the tz database's list of zone names, and the rules across two fields
# (`recurrence` needs `due_at`; `remind_at` not after `due_at`; in a PATCH, with the stored task).
_RULE_FIELDS = {("body", "recurrence"), ("body", "timezone"), ("body", "remind_at")}


def _recurrence_rule(failure: str, case: Any, response: Any) -> bool:
    errors = _problem(response).get("errors") or []
    return (
        failure == "RejectedPositiveData"
        and response.status_code == 422
        and len(errors) >= 1
        and all(tuple(error.get("loc") or ()) in _RULE_FIELDS for error in errors)
    )


# The tree's rules (parent_id: a live task of the caller's, no cycle, depth, 200 children;
# a move's `after`: a live child of that parent) depend on the stored tasks.
_TREE_FIELDS = {("body", "parent_id"), ("body", "after")}


def _tree_rule(failure: str, case: Any, response: Any) -> bool:
    errors = _problem(response).get("errors") or []
    return (
        failure == "RejectedPositiveData"
        and response.status_code == 422
        and len(errors) == 1
        and tuple(errors[0].get("loc") or ()) in _TREE_FIELDS
    )


def _restored_from_trash(failure: str, case: Any, response: Any) -> bool:
    """DELETE moves a task to the trash and restore brings it back (a route schemathesis does
    not know re-creates it): a task restored since its last DELETE is there again."""
    steering = _caller_of(case)
    task_id = (case.path_parameters or {}).get("task_id")
    return (
        failure == "UseAfterFree"
        and steering is not None
        and task_id is not None
        and steering.trash.get(str(task_id)) == "restored"
    )


def _gateway_unknown_method(failure: str, case: Any, response: Any) -> bool:
    return (
        failure == "UnsupportedMethodResponse"
        and response.status_code == 404
        and json.loads(response.content or b"null") == {"message": "Not Found"}
    )


_ACCEPTED = {
    "opaque cursor not issued by the server: 400": _opaque_cursor,
    "category_id not one of the caller's: 422": _not_your_category,
    "recurrence, timezone or remind_at breaks a rule the schema cannot say: 422": _recurrence_rule,
    "parent_id or after is not a task the tree rules allow there: 422": _tree_rule,
    "method no route has: the gateway's 404": _gateway_unknown_method,
    "task read after DELETE, restored from the trash since": _restored_from_trash,
}


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Finding:
    check: str
    operation: str
    title: str
    message: str
    curl: str
    status: int | None
    response: str
    chain: list[str] = field(default_factory=list)
    count: int = 1

    def render(self, limit: int | None = 1500) -> str:
        before = "".join(f"\n  after: {step}" for step in self.chain)
        text = f"[{self.check}] {self.operation}: {self.title} (x{self.count})\n  {self.message.strip()}\n  {self.curl}{before}\n  -> {self.status} {self.response}"
        return text if limit is None else text[:limit]


@dataclass
class Outcome:
    cases: int = 0
    findings: dict[tuple[Any, ...], Finding] = field(default_factory=dict)
    accepted: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # operation -> status class ("2xx", ...) -> cases: did generation reach real behaviour?
    answers: dict[str, Counter[str]] = field(default_factory=dict)
    foreign: int = 0
    by_phase: Counter[str] = field(default_factory=Counter)
    checks_run: Counter[str] = field(default_factory=Counter)

    def answers_line(self, operation: str) -> str:
        counts = self.answers.get(operation, Counter())
        return " ".join(f"{kind} {counts[kind]}" for kind in ("2xx", "3xx", "4xx", "5xx") if counts[kind])


def _config(wfc_path: Path, caller: str) -> Any:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "max-failures": 100000,
            "continue-on-failure": True,
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                "no-shrink": True,
            },
            # Generation must not feed on answers (ids, timestamps and validation errors differ
            # from run to run): the same seed then sends the same requests. Real ids come from
            # `Steering` and, in the stateful phase, from links.
            "phases": {
                "examples": {"enabled": True, "extra-data-sources": {"responses": False}},
                "coverage": {
                    "enabled": True,
                    "generate-duplicate-query-parameters": True,
                    "extra-data-sources": {"responses": False},
                },
                "fuzzing": {
                    "enabled": True,
                    "extra-data-sources": {"responses": False},
                    "error-feedback": {"enabled": False},
                },
                "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
            },
            "checks": {
                **{name: {"enabled": True} for name in ALL_CHECKS if name != "positive_data_acceptance"},
                "positive_data_acceptance": {"enabled": True, "expected-statuses": POSITIVE_EXPECTED},
                **{name: {"enabled": True} for name in OWN_CHECKS},
                "max_response_time": MAX_RESPONSE_TIME,
            },
            # Both users' tokens; this run calls as `caller`, and `object_level_authorization`
            # replays its reads as the other one.
            "auth": {"wfc": {"path": str(wfc_path), "user": caller, "peers": ["alice", "bob"]}},
        }
    )


def _wfc_document(path: Path, users: dict[str, User]) -> Path:
    document = {
        "auth": [
            {"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {user.token}"}]}
            for name, user in users.items()
        ]
    }
    path.write_text(json.dumps(document))
    return path


def _cause(response: Any) -> tuple[Any, ...]:
    """What tells one failure of a check on an operation from another: the answer's status
    and, for a problem, its code and the first error's place."""
    if response is None:
        return (None,)
    problem = _problem(response)
    errors = problem.get("errors") or [{}]
    return (response.status_code, problem.get("code"), json.dumps(errors[0].get("loc")), problem.get("detail") if not problem.get("errors") else None)


def _record(outcome: Outcome, recorder: Any) -> None:
    outcome.cases += len(recorder.cases)
    for case_id, node in recorder.cases.items():
        interaction = recorder.interactions.get(case_id)
        if interaction is not None and interaction.response is not None:
            kind = f"{interaction.response.status_code // 100}xx"
            outcome.answers.setdefault(node.value.operation.label, Counter())[kind] += 1
    for case_id, checks in recorder.checks.items():
        for check in checks:
            outcome.checks_run[check.name] += 1
            info = check.failure_info
            if info is None:
                continue
            failure = info.failure
            interaction = recorder.interactions.get(case_id)
            response = interaction.response if interaction is not None else None
            key = (check.name, failure.operation or "-", failure.title, *_cause(response))
            if key in outcome.findings:
                outcome.findings[key].count += 1
                continue
            chain = []
            parent = recorder.find_parent(case_id=case_id)
            while parent is not None and len(chain) < 10:
                answer = recorder.find_response(case_id=parent.id)
                chain.append(
                    f"{parent.method} {parent.formatted_path} -> {answer.status_code if answer else None} "
                    f"{dict(answer.headers) if answer else ''} {(answer.content or b'')[:200]!r}"
                    if answer
                    else f"{parent.method} {parent.formatted_path} -> no answer"
                )
                parent = recorder.find_parent(case_id=parent.id)
            outcome.findings[key] = Finding(
                chain=list(reversed(chain)),
                check=check.name,
                operation=failure.operation or "-",
                title=failure.title,
                message=failure.message,
                curl=info.code_sample,
                status=response.status_code if response is not None else None,
                response=(response.content or b"")[:600].decode("utf-8", "replace") if response is not None else "",
            )


def fuzz(gateway: Gateway, users: dict[str, User], caller: str, wfc_path: Path) -> Outcome:
    other = next(name for name in users if name != caller)
    steering = Steering(users[caller], users[other])
    schema = schemathesis.openapi.from_asgi("/openapi.json", gateway, config=_config(wfc_path, caller)).exclude(path="/mcp")
    outcome = Outcome()

    @schema.hook
    def map_case(context: Any, case: Any) -> Any:
        return steering.map_case(case)

    @schema.hook
    def after_call(context: Any, case: Any, response: Any) -> None:
        steering.after_call(case, response)

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        for reason, accepts in _ACCEPTED.items():
            if accepts(type(failure).__name__, case, response):
                outcome.accepted[reason] += 1
                return False
        return True

    started = time.perf_counter()
    _ACTIVE.append(steering)
    try:
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
                _record(outcome, event.recorder)
                outcome.by_phase[str(getattr(event, "phase", "fuzz"))] += len(event.recorder.cases)
            elif isinstance(event, events.NonFatalError):
                outcome.errors.append(f"{event.label}: {event.value!r}")
            elif isinstance(event, events.FatalError):
                outcome.errors.append(f"fatal: {event.exception!r}")
    finally:
        _ACTIVE.remove(steering)
        outcome.seconds = time.perf_counter() - started
    outcome.foreign = sum(steering.foreign.values())
    return outcome


# -- the test --------------------------------------------------------------------------------

_TOTAL: Counter[str] = Counter()


def test_every_check_is_on() -> None:
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    builtin = set(CHECKS.get_all_names()) - set(OWN_CHECKS)
    assert builtin == set(ALL_CHECKS), "schemathesis' checks changed: update ALL_CHECKS"


@pytest.mark.parametrize("caller", ["alice", "bob"])
def test_fuzz(gateway: Gateway, users: dict[str, User], caller: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = fuzz(gateway, users, caller, _wfc_document(tmp_path / "wfc.json", users))
    _TOTAL[caller] = outcome.cases
    findings = sorted(outcome.findings.values(), key=lambda f: (f.check != "not_a_server_error", f.check, f.operation))
    lines = [
        f"fuzz as {caller}: {outcome.cases} cases in {outcome.seconds:.1f} s "
        f"(seed {SEED}, {EXAMPLES} examples per operation; by phase {dict(outcome.by_phase)})",
        f"  checks run: {', '.join(f'{name} {n}' for name, n in sorted(outcome.checks_run.items()))}",
        f"  another user's task or category asked for by id: {outcome.foreign} cases",
        *(f"  {operation}: {outcome.answers_line(operation)}" for operation in sorted(outcome.answers)),
        *(f"  accepted by contract: {reason}: {n}" for reason, n in sorted(outcome.accepted.items())),
        f"  distinct failures: {len(findings)}",
        *(f"  {finding.render(400)}" for finding in findings),
    ]
    if len(_TOTAL) == 2:
        lines.append(f"fuzz total: {sum(_TOTAL.values())} cases")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    if REPORT_PATH:
        with open(REPORT_PATH, "a") as report:
            report.write("\n\n".join([lines[0], *(finding.render(None) for finding in findings)]) + "\n\n")
    assert not outcome.errors, outcome.errors
    if len(_TOTAL) == 2 and "FUZZ_EXAMPLES" not in os.environ:
        assert sum(_TOTAL.values()) >= MIN_CASES
    assert not findings, "\n\n".join(finding.render() for finding in findings)
