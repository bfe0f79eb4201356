"""What the HTTP layer relies on inside FastAPI, Starlette and pydantic: each test here fails
when a release changes it, instead of the layer silently losing what it was for.

- `ContractRoute` parses the body itself (the contract's rules and order) and leaves the
  value in Starlette's `Request._json`, the cache `Request.json()` answers from, which is
  what FastAPI calls. Parsed once, the contract's verdict is the only one: a second parse,
  deeper in the stack, can fail on a body nested just under the depth ours accepts
  (measured: 964 levels answered 200 parsed once, 500 parsed again).
- `speedups.pydantic_v1_unimported`: FastAPI imports pydantic.v1 to build a route only to
  ask whether an annotation is a pydantic.v1 model (some 25-45 ms, 23 modules and ~1 MB
  of a cold start) and answers "no" when that import fails.
- `speedups.run_on_event_loop`: FastAPI runs an `async def` endpoint on the loop's own thread
  and reads its parameters through `__wrapped__`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from typing import Any

import pytest
from starlette.requests import Request

from shared.http import route
from shared.http.app import create_app
from shared.template import REPO_ROOT


def run(coroutine: Any) -> Any:
    """On a loop of its own: `asyncio.run` would leave this thread without the current loop
    that `lambda_entry` set once per thread, and every later handler call would fail."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def call(app: Any, method: str, path: str, body: bytes = b"", query: bytes = b"") -> tuple[int, Any]:
    """One request straight into the ASGI app, on this thread."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
        "headers": [(b"content-type", b"application/json")], "server": ("test", 80), "client": ("127.0.0.1", 1),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


# ------------------------------------------------------------- the pre-parsed body


def test_starlette_request_json_answers_from__json_without_reading_the_body():
    async def receive() -> dict[str, Any]:
        raise AssertionError(
            "Starlette's Request.json() no longer answers from `_json`: ContractRoute's pre-parsed "
            "body is parsed a second time (see shared/http/route.py)"
        )

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    request._json = cached = {"from": "the cache"}
    assert run(request.json()) is cached


def test_the_endpoint_receives_the_body_contract_route_parsed(monkeypatch):
    contract_parse = route.parse_json_object

    def parse_and_mark(body: bytes, content_type: str | None) -> dict[str, Any]:
        return {**contract_parse(body, content_type), "parsed_by": "ContractRoute"}

    monkeypatch.setattr(route, "parse_json_object", parse_and_mark)
    app = create_app("Echo")

    @app.post("/echo")
    def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    status, received = call(app, "POST", "/echo", b'{"title": "milk"}')
    assert (status, received) == (200, {"title": "milk", "parsed_by": "ContractRoute"}), (
        "FastAPI no longer takes the body from Request.json(): ContractRoute's parse is done twice"
    )


# ------------------------------------------------------------- pydantic.v1, unimported

# In a fresh interpreter (this one may have pydantic.v1 loaded already): a function's app
# built through ContractRoute, then the same route through FastAPI's own APIRoute.
_BUILD_BOTH_WAYS = """
import json, sys
from fastapi import FastAPI
import functions.create_task.app as function
report = {"after_contract_route": "pydantic.v1" in sys.modules,
          "left_blocked": "pydantic.v1" in sys.modules and sys.modules["pydantic.v1"] is None}
plain = FastAPI()
plain.post("/api/{user_id}/tasks", response_model=function.TaskPublic)(function.create_task)
report["after_api_route"] = "pydantic.v1" in sys.modules
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def built_both_ways() -> dict[str, bool]:
    done = subprocess.run([sys.executable, "-c", _BUILD_BOTH_WAYS], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_building_a_function_leaves_pydantic_v1_unimported_and_importable(built_both_ways):
    assert not built_both_ways["after_contract_route"], "something imports pydantic.v1 while a function is built"
    assert not built_both_ways["left_blocked"], "pydantic_v1_unimported left `import pydantic.v1` failing"


def test_fastapi_still_imports_pydantic_v1_to_build_a_route(built_both_ways):
    assert built_both_ways["after_api_route"], (
        "FastAPI no longer imports pydantic.v1 to build a route: "
        "shared.http.speedups.pydantic_v1_unimported buys nothing, delete it"
    )


_V1_MODEL_REFUSED = """
import pydantic.v1
from shared.http.app import create_app
class Old(pydantic.v1.BaseModel):
    name: str
app = create_app("Old")
def old(body: Old) -> None: ...
try:
    app.post("/old")(old)
except Exception as error:
    print("refused:", type(error).__name__, error)
else:
    print("accepted")
"""


def test_once_pydantic_v1_is_loaded_fastapi_still_refuses_its_models():
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", _V1_MODEL_REFUSED], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:") and "pydantic.v1" in done.stdout, done.stdout


# ------------------------------------------------------------- sync endpoints inline


def test_a_plain_def_endpoint_runs_on_the_loop_thread_with_its_parameters_checked():
    app = create_app("Thread")

    @app.get("/thread")
    def thread(n: int) -> dict[str, int]:
        return {"thread": threading.get_ident(), "n": n}

    assert call(app, "GET", "/thread", query=b"n=7") == (200, {"thread": threading.get_ident(), "n": 7}), (
        "FastAPI runs run_on_event_loop's wrapper in its threadpool (or lost its parameters)"
    )
    assert call(app, "GET", "/thread", query=b"n=x")[0] == 422
