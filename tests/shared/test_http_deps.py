"""`CallerDep` on a route whose path has no `{user_id}`: the caller comes from the event, and a
missing identity is a 401 problem, not a 500 (it used to rely on state only user-scoped
paths set)."""

from __future__ import annotations

import json

from shared.auth import Caller
from shared.local.lambda_context import FakeLambdaContext
from shared.http.app import create_app
from shared.http.deps import CallerDep
from shared.http.lambda_entry import lambda_handler
from shared.local.apigw import build_http_event, response_body

app = create_app("WhoAmI")


@app.get("/whoami")
def whoami(caller: CallerDep) -> dict[str, str]:
    assert isinstance(caller, Caller)
    return {"sub": caller.user_id}


handler = lambda_handler(app)


def call(claims: dict[str, str] | None) -> tuple[int, dict]:
    event = build_http_event(method="GET", path="/whoami", route_path="/whoami", raw_query="", headers={}, body=None, claims=claims)
    response = handler(event, FakeLambdaContext("WhoAmI"))
    return response["statusCode"], json.loads(response_body(response))


def test_a_route_without_user_id_in_its_path_reads_the_caller_from_the_event():
    assert call({"sub": "alice"}) == (200, {"sub": "alice"})


def test_without_an_identity_it_is_a_401_problem():
    status, problem = call(None)
    assert (status, problem["code"]) == (401, "unauthorized")
