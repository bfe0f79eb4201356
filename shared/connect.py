"""Opening one verified connection: the URL as libpq and Neon write it, TLS, SCRAM, retries.

TLS starts the libpq way (an SSLRequest, the server's 'S', then the handshake), or with
`sslnegotiation=direct` (libpq 17) the handshake at once, ALPN `postgresql`: one round trip
less, for PostgreSQL 17+ and Neon's proxy. GSSAPI encryption is never attempted.

What is expensive and safe to keep is kept per process: the parsed URL, the TLS context and
the SCRAM salted password. The connection itself never outlives the request that opened it
(shared/db.py, docs/decisions/0004).
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_address
from typing import Any

import pg8000
from sqlalchemy.engine import make_url

from shared.errors import DatabaseUnavailable

# libpq sslmode -> what we do. `require` is upgraded to a verified connection: Neon (and
# every managed Postgres) presents a certificate that the system's CAs verify.
_VERIFIED_MODES = {"require", "verify-ca", "verify-full"}
# Every URL parameter we understand, with the values we take (None: any value). Anything
# else is refused at parse time, naming it, rather than silently ignored.
_KNOWN_PARAMS: dict[str, frozenset[str] | None] = {
    "sslmode": frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}),
    "sslrootcert": None,
    "sslnegotiation": frozenset({"postgres", "direct"}),  # libpq 17; `postgres` (the SSLRequest) is the default
    "channel_binding": frozenset({"disable", "prefer", "require"}),
    "gssencmode": frozenset({"disable", "prefer", "require"}),  # never attempted: `require` is refused below
    "application_name": None,
    "options": None,
    "host": None,
    "connect_timeout": None,
}
# ALPN protocol of direct TLS (PostgreSQL 17+ refuses a direct handshake without it).
ALPN_POSTGRESQL = "postgresql"
# SQLSTATEs worth another connect attempt: the server is starting, shutting down or full.
_RETRYABLE_SQLSTATES = {"57P03", "57P01", "53300", "08006", "08001", "08004"}
_MAX_CONNECT_ATTEMPTS = 4


def _cache_scram_salted_password() -> None:
    """Every SCRAM login derives SaltedPassword = PBKDF2(password, salt, iterations): 4096
    HMAC-SHA-256 rounds, ~1.5 ms of CPU on each connect. Salt and iteration count are the
    server's stored verifier, the same on every connect, and RFC 5802 (section 5.1) lets a
    client cache the result. scramp (pg8000's SCRAM) derives it with its function `hi`:
    it is wrapped in a small cache keyed on all its inputs (hash, password, salt, count).
    Same proof on the wire; a changed password or salt is simply another key."""
    try:
        from scramp import core as scram
    except ImportError:  # pragma: no cover - pg8000 depends on scramp
        return
    derive = getattr(scram, "hi", None)
    if not callable(derive) or hasattr(derive, "cached"):
        return

    @lru_cache(maxsize=8)
    def cached(hf: Any, password: bytes, salt: bytes, iterations: int) -> bytes:
        return derive(hf, password, salt, iterations)

    def hi(hf: Any, password: Any, salt: Any, iterations: Any) -> bytes:
        return cached(hf, bytes(password), bytes(salt), int(iterations))

    hi.cached = cached  # type: ignore[attr-defined]
    scram.hi = hi


_cache_scram_salted_password()


class ConfigurationError(ValueError):
    """The database URL cannot be used as given (said at first use, naming the problem)."""


class ChannelBindingError(ConfigurationError):
    """The URL asks for channel binding and the server did not do it: refused, like libpq."""


class DirectTlsRefused(ConfigurationError):
    """`sslnegotiation=direct`, and the server does not take TLS without an SSLRequest.

    PostgreSQL before 17 reads the TLS ClientHello as a startup packet and hangs up; a
    server (or pooler) that completes the handshake without ALPN `postgresql` does not
    speak direct TLS either. Retrying cannot fix either: the URL must change.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"sslnegotiation=direct: the server does not accept direct TLS ({detail}); it needs "
            "PostgreSQL 17+ or Neon. Remove sslnegotiation=direct from DATABASE_URL for this server."
        )


@dataclass(frozen=True)
class ConnectParams:
    user: str
    password: str | None
    host: str
    port: int
    database: str
    unix_sock: str | None = None
    tls: str = "disable"  # "disable" | "verify-full" | "verify-ca" | "opportunistic"
    direct_tls: bool = False  # sslnegotiation=direct: TLS (ALPN postgresql) at once, no SSLRequest
    rootcert: str | None = None
    application_name: str = "todo-api"
    startup_params: dict[str, str] = field(default_factory=dict)
    require_channel_binding: bool = False
    connect_timeout: float | None = None  # libpq's `connect_timeout`, when the URL sets one


def _is_local(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=4)
def parse_database_url(url: str) -> ConnectParams:
    """Accepts libpq/Neon URLs as they are (`?sslmode=require&channel_binding=require`)."""
    try:
        u = make_url(url)
    except Exception as error:
        raise ConfigurationError("DATABASE_URL is not a valid URL") from error
    if u.drivername not in ("postgres", "postgresql", "postgresql+pg8000"):
        raise ConfigurationError(f"DATABASE_URL scheme {u.drivername!r} is not postgresql")
    query = {k: (v if isinstance(v, str) else v[-1]) for k, v in u.query.items()}
    unknown = set(query) - set(_KNOWN_PARAMS)
    if unknown:
        raise ConfigurationError(f"DATABASE_URL has unsupported parameters: {sorted(unknown)}")
    for name, value in query.items():
        allowed = _KNOWN_PARAMS[name]
        if allowed is not None and value not in allowed:
            raise ConfigurationError(f"{name}={value!r} in DATABASE_URL is not one of {sorted(allowed)}")
    if query.get("gssencmode") == "require":
        raise ConfigurationError("gssencmode=require: GSSAPI encryption is not supported; use TLS (sslmode)")

    host = query.get("host") or u.host or "localhost"
    port = u.port or 5432
    unix_sock = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
    sslmode = query.get("sslmode") or ("disable" if unix_sock or _is_local(host) else "verify-full")
    if sslmode in _VERIFIED_MODES:
        tls = "verify-ca" if sslmode == "verify-ca" else "verify-full"
    elif sslmode in ("prefer", "allow"):
        tls = "opportunistic"
    elif sslmode == "disable":
        tls = "disable"
    else:
        raise ConfigurationError(f"sslmode={sslmode!r} is not a libpq sslmode")
    if query.get("channel_binding") == "require" and tls not in ("verify-full", "verify-ca"):
        raise ConfigurationError("channel_binding=require needs TLS (sslmode=require or stricter)")
    direct_tls = query.get("sslnegotiation") == "direct"
    if direct_tls and tls not in ("verify-full", "verify-ca"):
        given = f"sslmode={sslmode}" + ("" if "sslmode" in query else ", the default for this host")
        raise ConfigurationError(
            f"sslnegotiation=direct requires sslmode=require, verify-ca or verify-full ({given}): "
            "direct TLS cannot fall back to a plain connection"
        )
    if direct_tls and unix_sock:
        raise ConfigurationError("sslnegotiation=direct needs a TCP host: a Unix socket carries no TLS")
    startup = {"options": query["options"]} if "options" in query else {}
    try:
        connect_timeout = float(query["connect_timeout"]) if "connect_timeout" in query else None
    except ValueError:
        raise ConfigurationError("connect_timeout in DATABASE_URL is not a number") from None
    return ConnectParams(
        user=u.username or "postgres",
        password=u.password,
        host=host,
        port=port,
        database=u.database or u.username or "postgres",
        unix_sock=unix_sock,
        tls=tls,
        direct_tls=direct_tls,
        rootcert=query.get("sslrootcert"),
        application_name=query.get("application_name", "todo-api"),
        startup_params=startup,
        require_channel_binding=query.get("channel_binding") == "require",
        connect_timeout=connect_timeout if connect_timeout and connect_timeout > 0 else None,
    )


@lru_cache(maxsize=4)
def tls_context(mode: str, rootcert: str | None, direct: bool = False) -> ssl.SSLContext:
    """Built once per process: building a context costs ~25 ms, reusing it nothing.

    `direct`: the context of `sslnegotiation=direct`, offering ALPN `postgresql`; the
    SSLRequest path's context offers no ALPN (servers before 17 never look at it).
    """
    cafile = None if rootcert in (None, "system") else rootcert
    context = ssl.create_default_context(cafile=cafile)
    if mode == "verify-ca":
        context.check_hostname = False
    if direct:
        context.set_alpn_protocols([ALPN_POSTGRESQL])
    return context


def _open_socket(params: ConnectParams, timeout: float) -> socket.socket:
    sock = socket.create_connection((params.host, params.port), timeout=timeout)
    # pg8000 never sets it; without it every new connection waits ~40 ms on a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


# What a handshake ends with when the other side is not speaking TLS: it hung up (a server
# before 17 closes on the "startup packet" it cannot read) or answered in plain protocol.
_NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "RECORD_TOO_LONG"}


def _open_direct_tls(params: ConnectParams, timeout: float) -> ssl.SSLSocket:
    """`sslnegotiation=direct`: our TCP socket, the TLS handshake at once (ALPN `postgresql`,
    SNI = host, the certificate verified as on the SSLRequest path), no SSLRequest."""
    sock = _open_socket(params, timeout)  # unreachable: raised as is, and retried
    context = tls_context(params.tls, params.rootcert, direct=True)
    try:
        tls = context.wrap_socket(sock, server_hostname=params.host)
    except ssl.SSLCertVerificationError:
        sock.close()
        raise  # a certificate problem, said as on the SSLRequest path
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError) as error:
        sock.close()
        raise DirectTlsRefused("it closed the connection during the TLS handshake") from error
    except ssl.SSLError as error:
        sock.close()
        if error.reason in _NOT_TLS_REASONS:
            raise DirectTlsRefused(f"it did not answer the TLS handshake in TLS: {error.reason}") from error
        raise
    except BaseException:
        sock.close()
        raise
    if tls.selected_alpn_protocol() != ALPN_POSTGRESQL:
        tls.close()
        raise DirectTlsRefused(f"the TLS handshake did not negotiate ALPN {ALPN_POSTGRESQL!r}")
    return tls


def connect_once(params: ConnectParams, timeout: float) -> pg8000.Connection:
    ssl_context: ssl.SSLContext | bool | None
    if params.direct_tls:
        # pg8000 gets the socket already in TLS and sends no SSLRequest (ssl_context=False);
        # it still sees an ssl.SSLSocket, so its SCRAM binds to it (SCRAM-SHA-256-PLUS).
        ssl_context = False
        sock: socket.socket | None = _open_direct_tls(params, timeout)
    else:
        if params.tls == "disable":
            ssl_context = False
        elif params.tls == "opportunistic":
            ssl_context = None
        else:
            ssl_context = tls_context(params.tls, params.rootcert)
        sock = None if params.unix_sock else _open_socket(params, timeout)
    try:
        connection = pg8000.Connection(
            params.user,
            host=params.host,  # kept: pg8000 sends it as the TLS server name (SNI), Neon needs it
            database=params.database,
            port=params.port,
            password=params.password,
            unix_sock=params.unix_sock,
            sock=sock,
            ssl_context=ssl_context,
            timeout=timeout,
            application_name=params.application_name,
            # Rows are decoded as UTF-8 (shared/db.py); the server converts if it stores otherwise.
            startup_params={"client_encoding": "UTF8", **params.startup_params},
        )
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    if params.require_channel_binding and not _channel_bound(connection):
        connection.close()
        raise ChannelBindingError("channel_binding=require, but the server authenticated without channel binding")
    return connection


def _channel_bound(connection: pg8000.Connection) -> bool:
    """pg8000 binds (SCRAM-SHA-256-PLUS) whenever TLS is on and the server offers it."""
    mechanism = getattr(getattr(connection, "auth", None), "mechanism_name", "")
    return mechanism.endswith("-PLUS")


def _retryable(error: Exception) -> bool:
    if isinstance(error, ssl.SSLError):
        return False  # a certificate that does not verify now will not verify in a second
    if isinstance(error, (pg8000.InterfaceError, OSError)):
        return True  # refused, reset, timed out: a waking or restarting server
    if isinstance(error, pg8000.DatabaseError) and error.args and isinstance(error.args[0], dict):
        return error.args[0].get("C") in _RETRYABLE_SQLSTATES
    return False


def connect_with_retry(params: ConnectParams, budget: float) -> pg8000.Connection:
    """Bounded retry with jittered backoff inside a total time budget, then 503."""
    deadline = time.monotonic() + budget
    for attempt in range(_MAX_CONNECT_ATTEMPTS):
        remaining = deadline - time.monotonic()
        try:
            return connect_once(params, timeout=max(remaining, 0.05))
        except Exception as error:  # noqa: BLE001 - classified just below
            if not _retryable(error):
                raise
            pause = min(0.2 * 2**attempt, 1.0) * random.uniform(0.5, 1.0)
            if attempt == _MAX_CONNECT_ATTEMPTS - 1 or time.monotonic() + pause >= deadline:
                raise DatabaseUnavailable() from error
            time.sleep(pause)
    raise AssertionError("unreachable")


def migration_engine() -> Any:
    """A SQLAlchemy engine for Alembic (migrations only; requests use shared/db.py's flights)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from shared.secrets import database_url
    from shared.settings import get_settings

    def connect() -> pg8000.Connection:
        params = parse_database_url(database_url())
        return connect_with_retry(params, params.connect_timeout or get_settings().db_connect_timeout)

    return create_engine("postgresql+pg8000://", creator=connect, poolclass=NullPool)
