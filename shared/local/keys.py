"""The local token issuer: one RSA key (RS256), made on first use and kept.

`todo-api token` signs with it and `todo-api serve` trusts it (by default), so a developer
gets working tokens with no identity provider. The private key lives in
`<local dir>/issuer-key.json` (a private JWK, mode 0600); the local directory is
`$TODO_API_LOCAL_DIR`, or `.local/` at the repository root (git-ignored).

Development tooling only: no Lambda function imports this module.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from shared.local.settings import local_settings

# Stable values that do not depend on the port serve listens on.
LOCAL_ISSUER = "todo-api-local"
LOCAL_AUDIENCE = "todo-api"
DEFAULT_TTL = 3600
KEY_FILE = "issuer-key.json"
ALGORITHM = "RS256"


def local_dir() -> Path:
    """Where local state lives (keys, the embedded database); created on first use."""
    path = local_settings().local_dir
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    return path


def key_path() -> Path:
    return local_dir() / KEY_FILE


def _write_new_key(path: Path) -> None:
    """Publishes a fresh key atomically: two commands started at once agree on one key."""
    key = RSAKey.generate_key(2048, private=True, auto_kid=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(key.as_dict(private=True), f)
        try:
            os.link(temp, path)  # fails if another process published one first: keep theirs
        except FileExistsError:
            pass
    finally:
        temp.unlink(missing_ok=True)


def signing_key() -> RSAKey:
    """The local issuer's private key (with its `kid`), made on first use."""
    path = key_path()
    if not path.exists():
        _write_new_key(path)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    key = RSAKey.import_key(json.loads(path.read_text()))
    if not key.is_private or key.kid is None:
        raise ValueError(f"{path} is not a private RSA JWK with a kid; delete it to make a new one")
    return key


def public_jwks() -> dict[str, Any]:
    """The JWKS (public part only) that a provider would publish at its `jwks_uri`."""
    public = signing_key().as_dict(private=False)
    return {"keys": [{**public, "use": "sig", "alg": ALGORITHM}]}


def public_key_set() -> KeySet:
    return KeySet.import_key_set(public_jwks())  # type: ignore[arg-type]


def local_audience() -> str:
    """The audience the local issuer mints for; `JWT_AUDIENCE` overrides it (serve too)."""
    settings = local_settings()
    if settings.jwt_issuer and settings.jwt_issuer != LOCAL_ISSUER:
        return LOCAL_AUDIENCE
    return settings.jwt_audience or LOCAL_AUDIENCE


def mint_token(
    sub: str,
    *,
    email: str | None = None,
    ttl: int = DEFAULT_TTL,
    audience: str | None = None,
    extra_claims: dict[str, Any] | None = None,
    now: int | None = None,
) -> str:
    """A token the local gateway accepts. A negative `ttl` gives an already expired one."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": LOCAL_ISSUER,
        "aud": audience or local_audience(),
        "sub": sub,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "jti": uuid.uuid4().hex,
    }
    if email:
        claims["email"] = email
    claims.update(extra_claims or {})
    key = signing_key()
    return jwt.encode({"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}, claims, key, algorithms=[ALGORITHM])
