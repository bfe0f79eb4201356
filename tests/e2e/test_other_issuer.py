"""`serve --issuer/--audience` trusts another provider's keys (found by OIDC discovery) instead
of the local issuer's, as the template's JwtIssuer/JwtAudience do in AWS."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from shared.local.authorizer import JwtAuthorizer, RemoteJwks, TokenRejected
from tests.e2e.conftest import Serve, bearer, clean_env, make_local_dir, mint

AUDIENCE = "https://api.example/tasks"


class Provider:
    """A tiny OpenID provider on loopback: discovery document and JWKS."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, auto_kid=True)]
        self.jwks_requests = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/.well-known/openid-configuration":
                    body: Any = {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}jwks.json"}
                elif self.path == "/jwks.json":
                    provider.jwks_requests += 1
                    body = {"keys": [k.as_dict(private=False) for k in provider.keys]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.http.server_address[1]}/"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def token(self, sub: str, key: RSAKey | None = None, **changes: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, **changes}
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.http.shutdown()


@pytest.fixture(scope="module")
def foreign_serve(provider: Provider, e2e_database: dict[str, Any]) -> Iterator[Serve]:
    import shutil

    db = e2e_database
    url = f"postgresql://{db['user']}@{db['host']}:{db['port']}/{db['database']}"
    local_dir = make_local_dir()
    env = clean_env(local_dir, DATABASE_URL=url, JWT_ISSUER=provider.issuer, JWT_AUDIENCE=AUDIENCE)
    serve = Serve(env=env, log_dir=local_dir)
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()
        shutil.rmtree(local_dir, ignore_errors=True)


def test_tokens_of_the_configured_issuer_are_accepted(foreign_serve: Serve, provider: Provider, alice: str):
    reply = httpx.post(f"{foreign_serve.url}/api/me/tasks", headers=bearer(provider.token(alice)), json={"title": "t"})
    assert reply.status_code == 201, reply.text
    # client_id stands in for a missing aud
    token = jwt.encode(
        {"alg": "RS256", "kid": provider.keys[0].kid},
        {"iss": provider.issuer, "client_id": AUDIENCE, "sub": alice, "exp": int(time.time()) + 60},
        provider.keys[0],
    )
    assert httpx.get(f"{foreign_serve.url}/api/me/tasks", headers=bearer(token)).status_code == 200


def test_the_local_issuer_is_no_longer_trusted(foreign_serve: Serve, provider: Provider, local_dir: Path):
    reply = httpx.get(f"{foreign_serve.url}/api/me/tasks", headers=bearer(mint("someone")))
    assert (reply.status_code, reply.json()) == (401, {"message": "Unauthorized"})
    assert httpx.get(f"{foreign_serve.url}/.well-known/jwks.json").status_code == 404
    wrong_audience = provider.token("someone", aud="another-api")
    assert httpx.get(f"{foreign_serve.url}/api/me/tasks", headers=bearer(wrong_audience)).status_code == 401


def test_a_rotated_key_is_fetched_once_and_not_on_every_unknown_kid(provider: Provider):
    jwks = RemoteJwks(issuer=provider.issuer, refetch_interval=60)
    authorizer = JwtAuthorizer(provider.issuer, AUDIENCE, jwks)
    old = provider.keys[0]
    assert authorizer.verify(provider.token("u", old))["sub"] == "u"
    fetched = provider.jwks_requests

    # The provider rotates: a token with the new kid makes the gateway fetch the keys again.
    new = RSAKey.generate_key(2048, auto_kid=True)
    provider.keys.append(new)
    jwks._fetched_at -= 61  # the refetch interval has passed
    assert authorizer.verify(provider.token("u", new))["sub"] == "u"
    assert provider.jwks_requests == fetched + 1

    # An unknown kid again right away is refused without another fetch.
    stranger = RSAKey.generate_key(2048, auto_kid=True)
    with pytest.raises(TokenRejected):
        authorizer.verify(provider.token("u", stranger))
    assert provider.jwks_requests == fetched + 1


def test_static_key_sets_reject_keys_of_other_types():
    from joserfc.jwk import OctKey

    from shared.local.authorizer import StaticJwks

    secret = OctKey.generate_key(256, parameters={"kid": "k"})
    assert StaticJwks(KeySet([secret])).key_for("k") is None
