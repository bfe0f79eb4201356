"""Database access: one short-lived connection per invocation, one transaction per request.

Lambda freezes a process between calls and Neon scales to zero, so no connection outlives
the request that opened it (`NullPool`). What is expensive and safe to keep is kept: the
parsed URL, the TLS context and the engine (dialect state). See docs/decisions/0004.
"""

from __future__ import annotations

import random
import re
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_address
from typing import Any

import pg8000
from sqlalchemy import Connection, Engine, create_engine, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from shared.errors import DatabaseUnavailable
from shared.secrets import database_url
from shared.settings import get_settings

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
            startup_params=params.startup_params or None,
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


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The engine holds no connection (NullPool): each checkout is a new, verified one."""
    settings = get_settings()
    parse_database_url(database_url())  # a bad URL is said now, not at some later connect

    def connect() -> pg8000.Connection:
        # Read on every connect: a rotated secret is picked up once its cache expires.
        params = parse_database_url(database_url())
        return connect_with_retry(params, params.connect_timeout or settings.db_connect_timeout)

    engine = create_engine("postgresql+pg8000://", creator=connect, poolclass=NullPool)
    _first_connect_from_startup(engine.dialect)
    return engine


_SERVER_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def _first_connect_from_startup(dialect: Any) -> None:
    """The same dialect state after the engine's first connect, in one query instead of four.

    SQLAlchemy initialises the dialect on an engine's first connect (every cold start) with a
    round trip per question: version(), current_schema(), the transaction isolation level,
    standard_conforming_strings. The server already answered two in the ParameterStatus
    messages every connection receives at startup (server_version and
    standard_conforming_strings are always reported: protocol docs, "ParameterStatus"); the
    other two are asked together. Each answer falls back to SQLAlchemy's own query when the
    startup did not carry it, so the values are those SQLAlchemy would have found.
    """
    find_version = dialect._get_server_version_info
    find_isolation = dialect.get_default_isolation_level
    set_escapes = dialect._set_backslash_escapes
    asked: dict[str, str] = {}

    def startup_value(connection: Connection, name: str) -> str | None:
        raw = getattr(connection.connection, "dbapi_connection", None)
        value = getattr(raw, "parameter_statuses", {}).get(name)
        return value if isinstance(value, str) else None

    def server_version_info(connection: Connection) -> tuple[int, ...]:
        found = _SERVER_VERSION.match(startup_value(connection, "server_version") or "")
        if found is None:
            return find_version(connection)
        return tuple(int(part) for part in found.groups() if part is not None)

    def default_schema_name(connection: Connection) -> str:
        schema, isolation = connection.exec_driver_sql(
            "select current_schema(), current_setting('transaction_isolation')"
        ).one()
        asked["isolation"] = isolation
        return schema

    def default_isolation_level(dbapi_connection: Any) -> str:
        isolation = asked.pop("isolation", None)
        return isolation.upper() if isolation else find_isolation(dbapi_connection)

    def backslash_escapes(connection: Connection) -> None:
        value = startup_value(connection, "standard_conforming_strings")
        if value is None:
            set_escapes(connection)
        else:
            dialect._backslash_escapes = value == "off"

    dialect._get_server_version_info = server_version_info
    dialect._get_default_schema_name = default_schema_name
    dialect.get_default_isolation_level = default_isolation_level
    dialect._set_backslash_escapes = backslash_escapes


def reset() -> None:
    """Forget cached configuration (tests, or after the environment changed)."""
    get_settings.cache_clear()
    get_engine.cache_clear()
    from shared import secrets

    secrets.reset()


def _is_connection_fault(error: exc.DBAPIError) -> bool:
    return error.connection_invalidated or isinstance(error.orig, (pg8000.InterfaceError, OSError))


APP_ROLE = "todo_app"
CLEANUP_ROLE = "todo_cleanup"
_PER_TRANSACTION = text(
    "SELECT set_config('statement_timeout', :timeout, true), set_config('app.user_id', :user_id, true), "
    "set_config('role', :role, true)"
)


@contextmanager
def transaction(user_id: str | None = None, *, role: str = APP_ROLE) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any error.

    It runs as `role` (migration 0004: neither owner nor superuser, so row-level security
    binds it) for the caller `user_id`: the policies show it that caller's rows only.
    These settings are transaction-local (`set_config(..., true)`), so they are safe behind
    Neon's pooler and cannot leak into another request. One round trip for all three.
    """
    settings = get_settings()
    try:
        with Session(get_engine(), expire_on_commit=False) as session, session.begin():
            session.execute(
                _PER_TRANSACTION,
                {"timeout": f"{int(settings.db_statement_timeout * 1000)}ms", "user_id": user_id or "", "role": role},
            )
            yield session
    except exc.DBAPIError as error:
        if _is_connection_fault(error):
            raise DatabaseUnavailable() from error
        if sqlstate(error) == "57014":  # statement_timeout: the database is too busy to answer
            raise DatabaseUnavailable("The database took too long to answer; retry shortly.") from error
        raise


def sqlstate(error: exc.DBAPIError) -> str | None:
    """The SQLSTATE of a database error, and `constraint_name` via `constraint_of`."""
    args = getattr(error.orig, "args", None)
    return args[0].get("C") if args and isinstance(args[0], dict) else None


def constraint_of(error: exc.DBAPIError) -> str | None:
    args = getattr(error.orig, "args", None)
    return args[0].get("n") if args and isinstance(args[0], dict) else None


def ping() -> None:
    with transaction() as session:
        session.execute(text("SELECT 1"))
