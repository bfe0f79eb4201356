"""Every bad token is the gateway's own 401, and no function ever runs for it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from shared.template import REPO_ROOT
from tests.e2e.conftest import bearer, mint, todo_api_command


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _claims(sub: str, **changes) -> dict:
    now = int(time.time())
    claims = {"iss": "todo-api-local", "aud": "todo-api", "sub": sub, "iat": now, "nbf": now, "exp": now + 300}
    claims.update(changes)
    return claims


def _cli_token(*args: str) -> str:
    result = subprocess.run([*todo_api_command(), "token", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # the token alone
    return lines[0]


def _bad_tokens(sub: str) -> dict[str, str | None]:
    from shared.local.keys import signing_key

    key = signing_key()
    good = mint(sub)
    header, payload, signature = good.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    impostor = RSAKey.generate_key(2048, parameters={"kid": key.kid})  # same kid, another key
    public_pem = key.as_pem(private=False)
    hs_header = _segment({"alg": "HS256", "typ": "JWT", "kid": key.kid})
    hs_payload = _segment(_claims(sub))
    hs_signature = _b64(hmac.new(public_pem, f"{hs_header}.{hs_payload}".encode(), hashlib.sha256).digest())
    return {
        "missing": None,
        "empty bearer": "",
        "malformed": "not-a-jwt",
        "malformed three parts": "a.b.c",
        "bad signature": f"{header}.{payload}.{flipped}",
        "another key, same kid": jwt.encode({"alg": "RS256", "kid": key.kid}, _claims(sub), impostor),
        "no kid": jwt.encode({"alg": "RS256"}, _claims(sub), key),
        "unknown kid": jwt.encode({"alg": "RS256", "kid": "someone-else"}, _claims(sub), key),
        "expired": _cli_token("--sub", sub, "--ttl", "-60"),
        "not yet valid": mint(sub, extra_claims={"nbf": int(time.time()) + 600}),
        "wrong issuer": mint(sub, extra_claims={"iss": "https://evil.example/"}),
        "wrong audience": mint(sub, audience="another-api"),
        "alg none": f"{_segment({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{_segment(_claims(sub))}.",
        "HS256 with the public key as secret": f"{hs_header}.{hs_payload}.{hs_signature}",
    }


@pytest.fixture
def bad_tokens(server, alice: str) -> dict[str, str | None]:
    return _bad_tokens(alice)


def test_the_token_command_prints_a_token_serve_accepts(client: httpx.Client, alice: str):
    token = _cli_token("--sub", alice, "--email", f"{alice}@example.com")
    reply = client.post("/api/me/tasks", headers=bearer(token), json={"title": "via the token command"})
    assert reply.status_code == 201, reply.text
    # the raw token without `Bearer ` is accepted too, as API Gateway does
    assert client.get("/api/me/tasks", headers={"Authorization": token}).status_code == 200


def test_every_token_fault_is_the_gateways_401_and_reaches_no_function(client, server, sql, bad_tokens):
    tasks_before = sql.run("SELECT count(*) FROM tasks")[0][0]
    users_before = sql.run("SELECT count(*) FROM users")[0][0]
    invocations_before = {name: server.count_invocations(name) for name in ("CreateTask", "ListTasks")}

    for name, token in bad_tokens.items():
        headers = {} if token is None else {"Authorization": f"Bearer {token}".strip()}
        for method, path, body in [("POST", "/api/me/tasks", {"title": f"must not exist ({name})"}),
                                   ("GET", "/api/me/tasks", None)]:
            reply = client.request(method, path, headers=headers, json=body)
            assert reply.status_code == 401, (name, method, reply.text)
            assert reply.json() == {"message": "Unauthorized"}, name
            assert reply.headers["content-type"] == "application/json", name
            assert reply.headers["www-authenticate"].startswith("Bearer"), name

    # No function ran: nothing written, no request line from either function.
    assert sql.run("SELECT count(*) FROM tasks")[0][0] == tasks_before
    assert sql.run("SELECT count(*) FROM users")[0][0] == users_before
    assert {name: server.count_invocations(name) for name in invocations_before} == invocations_before
    denied = server.stderr().count("authorizer-denied")
    assert denied >= 2 * len(bad_tokens)


def test_a_good_token_still_works_after_the_faults(client: httpx.Client, server, alice: str):
    before = server.count_invocations("ListTasks")
    assert client.get("/api/me/tasks", headers=bearer(mint(alice))).status_code == 200
    assert server.count_invocations("ListTasks") == before + 1


def test_a_token_without_sub_passes_the_gateway_but_the_function_refuses_it(client: httpx.Client):
    from shared.local.keys import signing_key

    key = signing_key()
    claims = _claims("x")
    del claims["sub"]
    token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
    reply = client.get("/api/me/tasks", headers=bearer(token))
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "unauthorized"
