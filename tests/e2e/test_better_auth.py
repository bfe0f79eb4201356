"""Better Auth (examples/better-auth/) as the API's issuer: a user signs up and in there,
takes the JWT its jwt plugin signs (RS256), and uses the API through
`todo-api serve --issuer <Better Auth> --audience <Better Auth>`, which finds the keys by
OpenID discovery as API Gateway's JWT authorizer does."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.local.serve_process import free_port
from tests.e2e.conftest import bearer, clean_env, make_local_dir, todo_api_command
from tests.e2e.node_examples import NodeProcess, npm_ci
from shared.template import REPO_ROOT


@pytest.fixture(scope="module")
def better_auth() -> Iterator[str]:
    directory = npm_ci("better-auth")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_dir = make_local_dir("better-auth-")
    node = NodeProcess(directory, "server.mjs", {"PORT": str(port), "BETTER_AUTH_URL": url}, log_dir / "node.log")
    try:
        node.wait_for(f"{url}/.well-known/openid-configuration")
        yield url
    finally:
        node.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def api(better_auth: str, e2e_database: dict[str, Any]) -> Iterator[str]:
    """`todo-api serve --issuer <Better Auth> --audience <Better Auth>` on a free port."""
    db = e2e_database
    local_dir = make_local_dir()
    port = free_port()
    env = clean_env(local_dir, DATABASE_URL=f"postgresql://{db['user']}@{db['host']}:{db['port']}/{db['database']}")
    command = [*todo_api_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--issuer", better_auth, "--audience", better_auth]
    with open(local_dir / "serve.log", "wb") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (local_dir / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (local_dir / "serve.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(local_dir, ignore_errors=True)


def sign_up_and_in(better_auth: str, email: str) -> tuple[str, str]:
    """(user id, JWT): sign up, sign in with the password, then GET /api/auth/token."""
    password = "correct horse battery staple"
    with httpx.Client(base_url=better_auth, timeout=15) as browser:  # keeps the session cookie
        up = browser.post("/api/auth/sign-up/email", json={"email": email, "password": password, "name": email})
        assert up.status_code == 200, up.text
        browser.cookies.clear()
        signed_in = browser.post("/api/auth/sign-in/email", json={"email": email, "password": password})
        assert signed_in.status_code == 200, signed_in.text
        assert "better-auth.session_token" in browser.cookies
        token = browser.get("/api/auth/token")
        assert token.status_code == 200, token.text
        return signed_in.json()["user"]["id"], token.json()["token"]


def _segment(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_a_better_auth_user_uses_the_api_with_its_jwt(better_auth: str, api: str):
    alice, token = sign_up_and_in(better_auth, "alice@example.com")
    bob, bob_token = sign_up_and_in(better_auth, "bob@example.com")
    header, claims = (_segment(p) for p in token.split(".")[:2])
    assert header["alg"] == "RS256"  # jwks.keyPairConfig.alg: the default EdDSA AWS would refuse
    assert (claims["iss"], claims["aud"], claims["sub"]) == (better_auth, better_auth, alice)

    created = httpx.post(f"{api}/api/{alice}/tasks", headers=bearer(token), json={"title": "from Better Auth"})
    assert created.status_code == 201, created.text
    listed = httpx.get(f"{api}/api/{alice}/tasks", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    assert [t["id"] for t in listed.json()["items"]] == [created.json()["id"]]
    assert httpx.get(f"{api}/api/me/tasks", headers=bearer(token)).json()["items"] == listed.json()["items"]

    # another user's path: refused; that user sees nothing of alice's
    assert httpx.get(f"{api}/api/{bob}/tasks", headers=bearer(token)).status_code == 403
    assert httpx.get(f"{api}/api/{bob}/tasks", headers=bearer(bob_token)).json()["items"] == []

    # a tampered token (alice's signature over bob's sub): the gateway refuses it
    forged_claims = base64.urlsafe_b64encode(json.dumps({**claims, "sub": bob}).encode()).rstrip(b"=").decode()
    head, _, signature = token.split(".")
    tampered = f"{head}.{forged_claims}.{signature}"
    reply = httpx.get(f"{api}/api/{bob}/tasks", headers=bearer(tampered))
    assert (reply.status_code, reply.json()) == (401, {"message": "Unauthorized"})
