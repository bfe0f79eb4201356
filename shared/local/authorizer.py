"""The API Gateway HTTP API JWT authorizer, emulated for the local gateway.

What AWS checks, in its order, and nothing more lenient:
- the identity source (`Authorization` header) holds the token, alone or after `Bearer `;
- the token is a compact JWS whose header says `alg: RS256` (RSA only) and names a `kid`
  found in the issuer's JWKS; the signature verifies with that key;
- `iss` equals the configured issuer; `aud` contains the audience (`client_id` is checked
  only when `aud` is absent); `exp` is after now; `nbf` and `iat`, when present, are not
  after now. No leeway.
Any failure raises `TokenRejected` (the gateway answers `401 {"message":"Unauthorized"}`);
its text is for the server log only.

By default the local issuer (keys.py) is trusted. `JWT_ISSUER` / `JWT_AUDIENCE` /
`JWT_JWKS_URL` (or serve's options) point it at any other issuer; without a JWKS URL the
issuer's OpenID discovery document names it, as AWS does. A fetched JWKS is cached and
fetched again on an unknown `kid` (at most every `refetch_interval` seconds) or after
`max_age` seconds.

Development tooling only: no Lambda function imports this module.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from shared.local import keys
from shared.local.settings import local_settings

log = logging.getLogger("todo_api.local.authorizer")

ALGORITHM = "RS256"
MAX_TOKEN_LENGTH = 16 * 1024


class TokenRejected(Exception):
    """The token is missing or not acceptable; the message says why (logs only)."""


class JwksUnavailable(TokenRejected):
    """The issuer's keys could not be fetched."""


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "http" and loopback:
        return  # a provider running on this machine (AWS itself would insist on https)
    raise ValueError(f"{url!r}: the JWKS must be served over https")


def _fetch_json(url: str, timeout: float = 5.0) -> Any:
    _check_url(url)
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "todo-api-local"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
        return json.loads(response.read(1024 * 1024))


class RemoteJwks:
    """A JWKS fetched over HTTPS (directly, or via the issuer's OpenID discovery)."""

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        refetch_interval: float = 60.0,
        max_age: float = 2 * 3600.0,  # API Gateway may cache the keys for two hours
        fetch: Callable[[str], Any] = _fetch_json,
    ) -> None:
        if not jwks_url and not issuer:
            raise ValueError("a JWKS URL or an issuer to discover it from is needed")
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self._fetch = fetch
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _url(self) -> str:
        if not self.jwks_url:
            assert self.issuer is not None
            document = self._fetch(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            url = document.get("jwks_uri") if isinstance(document, dict) else None
            if not isinstance(url, str):
                raise ValueError("the issuer's OpenID configuration has no jwks_uri")
            self.jwks_url = url
        return self.jwks_url

    def _refresh(self) -> None:
        self._fetched_at = time.monotonic()  # failures count too: no hammering the provider
        try:
            self._keys = KeySet.import_key_set(self._fetch(self._url()))
        except Exception as error:  # noqa: BLE001 - any fetch or parse failure
            raise JwksUnavailable(f"cannot load the issuer's JWKS: {error}") from error
        log.info("loaded the JWKS from %s (%d keys)", self.jwks_url, len(self._keys.keys))

    def key_for(self, kid: str) -> RSAKey | None:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if self._keys is None or age > self.max_age:
                self._refresh()
            key = _rsa_key(self._keys, kid)
            if key is None and time.monotonic() - self._fetched_at >= self.refetch_interval:
                self._refresh()  # the provider may have rotated its keys
                key = _rsa_key(self._keys, kid)
            return key


class StaticJwks:
    """A fixed key set (the local issuer's)."""

    def __init__(self, key_set: KeySet) -> None:
        self._keys = key_set

    def key_for(self, kid: str) -> RSAKey | None:
        return _rsa_key(self._keys, kid)


def _rsa_key(key_set: KeySet | None, kid: str) -> RSAKey | None:
    if key_set is None:
        return None
    for key in key_set.keys:
        if key.kid == kid and isinstance(key, RSAKey) and key.get("use") in (None, "sig"):
            return key
    return None


@dataclass(frozen=True)
class AuthorizerConfig:
    issuer: str
    audience: list[str]
    jwks_url: str | None
    local: bool  # the local issuer, whose keys are in keys.py

    @classmethod
    def resolve(
        cls, issuer: str | None = None, audience: str | None = None, jwks_url: str | None = None
    ) -> AuthorizerConfig:
        """Options first, then `JWT_ISSUER` / `JWT_AUDIENCE` / `JWT_JWKS_URL`, then local."""
        settings = local_settings()
        issuer = issuer or settings.jwt_issuer
        audience = audience or settings.jwt_audience
        jwks_url = jwks_url or settings.jwt_jwks_url
        if issuer is None or issuer == keys.LOCAL_ISSUER:
            if jwks_url:
                raise ValueError("a JWKS URL needs the issuer it belongs to (--issuer or JWT_ISSUER)")
            return cls(keys.LOCAL_ISSUER, [audience or keys.LOCAL_AUDIENCE], None, local=True)
        if audience is None:
            raise ValueError(f"issuer {issuer!r} needs an audience too (--audience or JWT_AUDIENCE)")
        if jwks_url:
            _check_url(jwks_url)
        else:
            _check_url(issuer.rstrip("/") + "/.well-known/openid-configuration")
        return cls(issuer, [audience], jwks_url, local=False)


class JwtAuthorizer:
    def __init__(
        self,
        issuer: str,
        audience: list[str] | str,
        jwks: StaticJwks | RemoteJwks,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = [audience] if isinstance(audience, str) else list(audience)
        self.jwks = jwks
        self.clock = clock

    @classmethod
    def from_config(cls, config: AuthorizerConfig) -> JwtAuthorizer:
        if config.local:
            jwks: StaticJwks | RemoteJwks = StaticJwks(keys.public_key_set())
        else:
            jwks = RemoteJwks(jwks_url=config.jwks_url, issuer=config.issuer)
        return cls(config.issuer, config.audience, jwks)

    @staticmethod
    def token_from_header(value: str | None) -> str:
        """The identity source holds the token alone, or prefixed with `Bearer `."""
        if value is None or not value.strip():
            raise TokenRejected("no Authorization header")
        value = value.strip()
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            value = rest.strip()
        if not value or " " in value:
            raise TokenRejected("the Authorization header is not `Bearer <token>`")
        return value

    def authorize(self, authorization: str | None) -> dict[str, Any]:
        """The verified claims of the request's token; raises `TokenRejected`."""
        return self.verify(self.token_from_header(authorization))

    def verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected("token too long")
        parts = token.split(".")
        if len(parts) != 3 or not all(parts[:2]):
            raise TokenRejected("malformed token: not a compact JWS")
        try:
            header = _b64url_json(parts[0])
        except (ValueError, UnicodeError) as error:
            raise TokenRejected(f"malformed token header: {error}") from None
        if not isinstance(header, dict):
            raise TokenRejected("malformed token header")
        if header.get("alg") != ALGORITHM:
            raise TokenRejected(f"algorithm {header.get('alg')!r} is not accepted (RS256 only)")
        if header.get("crit") is not None:
            raise TokenRejected("critical header parameters are not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token header has no kid")
        key = self.jwks.key_for(kid)
        if key is None:
            raise TokenRejected(f"no key with kid {kid!r} in the issuer's JWKS")
        try:
            signature = jws.deserialize_compact(token, key, algorithms=[ALGORITHM])
        except JoseError as error:
            raise TokenRejected(f"bad signature: {error.error}") from None
        except (ValueError, TypeError) as error:
            raise TokenRejected(f"malformed token: {error}") from None
        try:
            claims = json.loads(signature.payload)
        except (ValueError, UnicodeDecodeError):
            raise TokenRejected("the token payload is not JSON") from None
        if not isinstance(claims, dict):
            raise TokenRejected("the token payload is not a JSON object")
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        if claims.get("iss") != self.issuer:
            raise TokenRejected(f"issuer {claims.get('iss')!r} is not {self.issuer!r}")
        if "aud" in claims:
            aud = claims["aud"]
            audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self.audience for a in audiences):
                raise TokenRejected(f"audience {aud!r} is not {self.audience!r}")
        elif claims.get("client_id") not in self.audience:
            raise TokenRejected("no aud, and client_id is not the audience")
        now = self.clock()
        exp = claims.get("exp")
        if not _is_number(exp):
            raise TokenRejected("no numeric exp claim")
        if now >= exp:
            raise TokenRejected("the token has expired")
        for name in ("nbf", "iat"):
            if name in claims:
                value = claims[name]
                if not _is_number(value):
                    raise TokenRejected(f"{name} is not numeric")
                if value > now:
                    raise TokenRejected(f"{name} is in the future")


def scopes_of(claims: dict[str, Any]) -> list[str] | None:
    """`scope` (space separated) or `scp` (list or string) as the event's `scopes`."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [str(v) for v in value]
    return None
