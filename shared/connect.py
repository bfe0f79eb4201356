"""Opening one verified connection: the URL as libpq and Neon write it, TLS, SCRAM, retries.

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
_KNOWN_PARAMS = {"sslmode", "sslrootcert", "channel_binding", "application_name", "options", "host", "connect_timeout"}
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


@dataclass(frozen=True)
class ConnectParams:
    user: str
    password: str | None
    host: str
    port: int
    database: str
    unix_sock: str | None = None
    tls: str = "disable"  # "disable" | "verify-full" | "verify-ca" | "opportunistic"
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
    unknown = set(query) - _KNOWN_PARAMS
    if unknown:
        raise ConfigurationError(f"DATABASE_URL has unsupported parameters: {sorted(unknown)}")

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
        rootcert=query.get("sslrootcert"),
        application_name=query.get("application_name", "todo-api"),
        startup_params=startup,
        require_channel_binding=query.get("channel_binding") == "require",
        connect_timeout=connect_timeout if connect_timeout and connect_timeout > 0 else None,
    )


@lru_cache(maxsize=4)
def tls_context(mode: str, rootcert: str | None) -> ssl.SSLContext:
    """Built once per process: building a context costs ~25 ms, reusing it nothing."""
    cafile = None if rootcert in (None, "system") else rootcert
    context = ssl.create_default_context(cafile=cafile)
    if mode == "verify-ca":
        context.check_hostname = False
    return context


def _open_socket(params: ConnectParams, timeout: float) -> socket.socket:
    sock = socket.create_connection((params.host, params.port), timeout=timeout)
    # pg8000 never sets it; without it every new connection waits ~40 ms on a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def connect_once(params: ConnectParams, timeout: float) -> pg8000.Connection:
    if params.tls == "disable":
        ssl_context: ssl.SSLContext | bool | None = False
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
