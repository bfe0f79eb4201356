"""The artifacts of `sam build` work as Lambda will run them.

Every function in .aws-sam/build/ is imported in a fresh interpreter of the functions'
runtime (python3.13) that sees only its own directory and the SharedLayer's python/, as
/var/task and /opt/python on Lambda: not the repo, not the test environment. Then its
handler answers one event. HTTP functions get a payload 2.0 event: GET /health with the
database, GET /.well-known/oauth-protected-resource (no database), every other route
without claims (401 problem+json: the import, the layer and the error path, no data).
Scheduled functions get their example event from events/ (the EventBridge scheduled
event) and run for real against the test run's own database.

Needs `infra/sam.sh build` first (CI runs it before the tests, for x86_64); skipped
otherwise, and the runs are skipped when the build is for another architecture than this
machine's (the template's default, arm64, on an x86_64 machine: build with
`--parameter-overrides Architecture=x86_64` to run them here).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from shared.template import REPO_ROOT, Function, Route, functions, load_template
from tests.conftest import migrated_database, server_url

BUILD_DIR = REPO_ROOT / ".aws-sam" / "build"
LAYER_DIR = BUILD_DIR / "SharedLayer" / "python"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# shared/ tooling that the layer leaves out (no function imports it).
DEV_ONLY = ("local", "cli.py", "template.py", "openapi.py")

pytestmark = [
    pytest.mark.sam,
    pytest.mark.skipif(
        not BUILD_DIR.is_dir(), reason="no .aws-sam/build: run `infra/sam.sh build` first (CI does)"
    ),
]


def build_architecture() -> str | None:
    """What the layer was built for (infra/layer/Makefile writes it), None when unknown."""
    marker = BUILD_DIR / "SharedLayer" / "architecture"
    return marker.read_text().strip() if marker.is_file() else None


def runs_here() -> bool:
    return {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine()) == build_architecture()


def runtime() -> str:
    return load_template()["Globals"]["Function"]["Runtime"]  # "python3.13"


def runtime_python() -> str | None:
    """An interpreter of the functions' runtime: pyenv's own binary (its shim only works
    when the version is active), else whatever is on PATH."""
    name = runtime()
    version = name.removeprefix("python")
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(
        pyenv_root.glob(f"versions/{version}.*/bin/{name}"),
        key=lambda p: [int(part) for part in p.parts[-3].split(".") if part.isdigit()],
    )
    for candidate in [*reversed(candidates), shutil.which(name)]:
        if candidate and _is_version(str(candidate), version):
            return str(candidate)
    return None


def _is_version(python: str, version: str) -> bool:
    check = f"import sys; sys.exit(sys.version_info[:2] != ({version.replace('.', ', ')}))"
    try:
        return subprocess.run([python, "-c", check], capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


def http_event(route: Route, *, claims: dict[str, str] | None = None) -> dict[str, Any]:
    """A payload 2.0 event as the HTTP API sends it for `route` (path parameters filled in)."""
    values = {"user_id": "me"}
    path_parameters = {
        name: values.get(name, "00000000-0000-4000-8000-000000000001")
        for name in re.findall(r"\{([^}]+)\}", route.path)
    }
    raw_path = re.sub(r"\{([^}]+)\}", lambda m: path_parameters[m.group(1)], route.path)
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "api1234567",
        "domainName": "api1234567.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "api1234567",
        "http": {
            "method": route.method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "test-sam-build",
        },
        "requestId": "test-request-id",
        "routeKey": f"{route.method} {route.path}",
        "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000",
        "timeEpoch": 1767225600000,
    }
    if claims is not None:
        request_context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{route.method} {route.path}",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {
            "accept": "application/json",
            "host": request_context["domainName"],
            "user-agent": "test-sam-build",
            "x-forwarded-proto": "https",
        },
        "requestContext": request_context,
        "isBase64Encoded": False,
    }
    if path_parameters:
        event["pathParameters"] = path_parameters
    return event


# Runs in the child: imports `app` as Lambda would, calls the handler once, and reports what
# it got and where every imported module came from.
CHILD = r"""
import json, sys, sysconfig

result_path, event_json, function_name = sys.argv[1], sys.argv[2], sys.argv[3]


class Context:
    function_name = function_name
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    memory_limit_in_mb = 1024
    aws_request_id = "test-request-id"
    log_group_name = f"/aws/lambda/{function_name}"
    log_stream_name = "test"

    @staticmethod
    def get_remaining_time_in_millis():
        return 10_000


import app
import shared

response = app.handler(json.loads(event_json), Context())
stdlib = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
origins = {
    name: getattr(module, "__file__", None)
    for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None)
}
with open(result_path, "w") as out:
    json.dump({"response": response, "shared": shared.__file__, "stdlib": sorted(stdlib), "modules": origins}, out)
"""


def invoke_built(
    function: Function, event: dict[str, Any], database_url: str, tmp_path: Path, **extra_env: str
) -> dict[str, Any]:
    if not runs_here():
        pytest.skip(f"the build is for {build_architecture()}, this machine is {platform.machine()}: "
                    "infra/sam.sh build --parameter-overrides Architecture=x86_64 to run it here")
    python = runtime_python()
    if python is None:
        pytest.skip(f"no {runtime()} interpreter to run the built functions with")
    function_dir = BUILD_DIR / function.logical_id
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    env = {name: value for name, value in variables.items() if isinstance(value, str)}  # drops !Ref / !If
    env.update(
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": f"{function_dir}{os.pathsep}{LAYER_DIR}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
            **extra_env,
        }
    )
    result_path = tmp_path / f"{function.logical_id}.json"
    # -s: no user site, -S: no site-packages of the interpreter, -P: no cwd/script dir on
    # sys.path; the environment is built from scratch (the test run's is not inherited).
    completed = subprocess.run(
        [python, "-s", "-S", "-P", "-c", CHILD, str(result_path), json.dumps(event), function.logical_id],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, f"{function.logical_id} failed:\n{completed.stderr[-4000:]}"
    return json.loads(result_path.read_text())


def decoded_body(response: dict[str, Any]) -> Any:
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return json.loads(raw)


def assert_imports_only_from_build(result: dict[str, Any], function_dir: Path) -> None:
    layer = str(LAYER_DIR.resolve())
    shared_file = str(Path(result["shared"]).resolve())
    assert shared_file.startswith(layer + os.sep), f"shared came from {shared_file}, not the layer"
    allowed = (layer + os.sep, str(function_dir.resolve()) + os.sep, *(path + os.sep for path in result["stdlib"]))
    strays = {
        name: origin
        for name, origin in result["modules"].items()
        if not str(Path(origin).resolve()).startswith(allowed)
    }
    assert not strays, f"modules imported from outside the build: {strays}"


def _cases() -> list[Any]:
    if not BUILD_DIR.is_dir():
        return []
    cases = []
    for logical_id, function in sorted(functions().items()):
        if not (BUILD_DIR / logical_id / "app.py").is_file():
            continue
        for route in function.routes:
            cases.append(pytest.param(function, route, id=f"{logical_id}-{route.method}"))
    return cases


def _scheduled_cases() -> list[Any]:
    if not BUILD_DIR.is_dir():
        return []
    return [
        pytest.param(function, id=logical_id)
        for logical_id, function in sorted(functions().items())
        if function.schedules and not function.routes and (BUILD_DIR / logical_id / "app.py").is_file()
    ]


def test_every_function_is_http_or_scheduled() -> None:
    """Each kind has its case below; a function of another kind needs one of its own."""
    odd = [f.logical_id for f in functions().values() if bool(f.routes) == bool(f.schedules)]
    assert not odd, f"neither (or both) HTTP and scheduled: {odd}"


def test_every_function_is_built() -> None:
    built = {path.parent.name for path in BUILD_DIR.glob("*/app.py")}
    assert built == set(functions()), "rebuild: .aws-sam/build does not match template.yaml"


def test_layer_holds_shared_without_dev_tooling() -> None:
    shared_dir = LAYER_DIR / "shared"
    assert (shared_dir / "__init__.py").is_file()
    assert not [name for name in DEV_ONLY if (shared_dir / name).exists()]
    repo_modules = {p.relative_to(REPO_ROOT / "shared") for p in (REPO_ROOT / "shared").rglob("*.py")}
    layer_modules = {p.relative_to(shared_dir) for p in shared_dir.rglob("*.py")}
    missing = {m for m in repo_modules - layer_modules if m.parts[0] not in DEV_ONLY}
    assert not missing, f"stale layer, rebuild: {sorted(map(str, missing))}"


def test_layer_bytecode_needs_no_source_check() -> None:
    """Every module has a python3.13 .pyc compiled with --invalidation-mode unchecked-hash."""
    tag = "cpython-" + runtime().removeprefix("python").replace(".", "")
    unchecked, problems = 0, []
    for source in LAYER_DIR.rglob("*.py"):
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        if not pyc.is_file():
            problems.append(f"no {pyc.name} for {source.relative_to(LAYER_DIR)}")
            continue
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        if flags != 0b01:  # bit 0: hash-based, bit 1: check_source
            problems.append(f"{pyc.relative_to(LAYER_DIR)} flags {flags:#b}")
        unchecked += 1
    assert unchecked and not problems, problems[:20]
    others = [p for p in LAYER_DIR.rglob("*.pyc") if f".{tag}." not in p.name]
    assert not others, f"bytecode of other Python versions: {others[:5]}"


@pytest.mark.parametrize(("function", "route"), _cases())
def test_built_function_answers(function: Function, route: Route, tmp_path: Path) -> None:
    database_url = os.environ.get("TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    function_dir = BUILD_DIR / function.logical_id
    if function.logical_id == "Health":
        result = invoke_built(function, http_event(route), database_url, tmp_path)
        response = result["response"]
        assert response["statusCode"] == 200, f"{response} (is Postgres up at {database_url}? set TEST_DATABASE_URL)"
        assert decoded_body(response) == {"status": "ok", "database": "ok"}
    elif function.logical_id == "ProtectedResource":  # no database; the issuer as the template passes it
        issuer = "https://issuer.example.test/"
        result = invoke_built(function, http_event(route), database_url, tmp_path, JWT_ISSUER=issuer)
        response = result["response"]
        assert response["statusCode"] == 200, response
        document = decoded_body(response)
        assert (document["resource"], document["authorization_servers"]) == (
            "https://api1234567.execute-api.us-east-1.amazonaws.com/mcp", [issuer]
        )
    else:
        assert not route.public, f"{function.logical_id}: a new public route needs its own case here"
        result = invoke_built(function, http_event(route, claims=None), database_url, tmp_path)
        response = result["response"]
        assert response["statusCode"] == 401, response
        headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
        assert headers.get("content-type", "").startswith("application/problem+json"), headers
        assert decoded_body(response)["status"] == 401
    assert_imports_only_from_build(result, function_dir)


@pytest.mark.parametrize("function", _scheduled_cases())
def test_built_scheduled_function_runs(
    function: Function, database_url: str, sql: Any, tmp_path: Path, postgres_server: dict[str, object]
) -> None:
    """Runs for real on the test run's own migrated database (never on `postgres`)."""
    assert function.logical_id in ("Cleanup", "Reminders", "PublishChanges"), f"{function.logical_id}: a new scheduled function needs its own case here"
    if function.logical_id == "Reminders":
        _built_reminders_run(function, sql, tmp_path, database_url)
        return
    if function.logical_id == "PublishChanges":
        # On a database of its own: the run's database holds every change the suite made, all
        # unpublished, and one run publishes them all.
        with migrated_database(postgres_server, "todo_sam_publish") as name:
            own = pg8000.native.Connection(**postgres_server, database=name)
            try:
                _built_publish_run(function, own, tmp_path, server_url(postgres_server, name))
            finally:
                own.close()
        return
    user = f"sam-build-{uuid.uuid4().hex[:8]}"
    sql.run("INSERT INTO users (id) VALUES (:user)", user=user)
    sql.run(
        "INSERT INTO tasks (id, user_id, title, deleted_at) VALUES (gen_random_uuid(), :user, 'old', now() - interval '31 days')",
        user=user,
    )
    live = sql.run(
        "INSERT INTO tasks (id, user_id, title) VALUES (gen_random_uuid(), :user, 'live') RETURNING id", user=user
    )[0][0]
    sql.run(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, response_body, expires_at) "
        "VALUES (:user, 'k', repeat('0', 64), 201, '{}', now() - interval '1 second')",
        user=user,
    )
    event = json.loads((REPO_ROOT / "events" / f"{function.logical_id}.json").read_text())

    result = invoke_built(function, event, database_url, tmp_path)

    response = result["response"]
    assert set(response) == {"tasks_deleted", "idempotency_keys_deleted", "finished"}, response
    assert response["tasks_deleted"] >= 1 and response["idempotency_keys_deleted"] >= 1 and response["finished"] is True
    assert sql.run("SELECT id FROM tasks WHERE user_id = :user", user=user) == [[live]]
    assert sql.run("SELECT count(*) FROM idempotency_keys WHERE user_id = :user", user=user) == [[0]]
    assert_imports_only_from_build(result, BUILD_DIR / function.logical_id)


def _built_publish_run(function: Function, sql: Any, tmp_path: Path, database_url: str) -> None:
    """A change just written is published (no bus configured: to the log) and marked."""
    user = f"sam-build-{uuid.uuid4().hex[:8]}"
    sql.run("INSERT INTO users (id) VALUES (:user)", user=user)
    sql.run("INSERT INTO tasks (id, user_id, title) VALUES (gen_random_uuid(), :user, 'logged')", user=user)
    event = json.loads((REPO_ROOT / "events" / "PublishChanges.json").read_text())

    result = invoke_built(function, event, database_url, tmp_path)

    response = result["response"]
    assert set(response) == {"published", "finished"} and response["published"] >= 1, response
    assert sql.run("SELECT published_at IS NOT NULL FROM change_log WHERE user_id = :user", user=user) == [[True]]
    assert_imports_only_from_build(result, BUILD_DIR / function.logical_id)


def _built_reminders_run(function: Function, sql: Any, tmp_path: Path, database_url: str) -> None:
    """A reminder due a minute ago is sent once (no bus configured: to the log) and marked."""
    user = f"sam-build-{uuid.uuid4().hex[:8]}"
    sql.run("INSERT INTO users (id) VALUES (:user)", user=user)
    task = sql.run(
        "INSERT INTO tasks (id, user_id, title, due_at, remind_at) VALUES (gen_random_uuid(), :user, 'call', "
        "now() + interval '1 hour', now() - interval '1 minute') RETURNING id",
        user=user,
    )[0][0]
    event = json.loads((REPO_ROOT / "events" / "Reminders.json").read_text())

    result = invoke_built(function, event, database_url, tmp_path)

    response = result["response"]
    assert set(response) == {"sent", "skipped_late", "finished"} and response["sent"] >= 1, response
    assert sql.run("SELECT reminded_at IS NOT NULL FROM tasks WHERE id = :id", id=task) == [[True]]
    assert_imports_only_from_build(result, BUILD_DIR / function.logical_id)
