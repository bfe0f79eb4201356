"""One flight per request: a request's statements sent together, one answer read, one transaction.

A Lambda is a network hop from Neon, and every round trip is latency the caller waits for
(docs/decisions/0007). So a data function does not hold a session and talk to the database
statement by statement: it builds its whole request as a list of `Query`s and hands them to
`flight()`, which opens a connection (shared/connect.py), writes every statement as
Parse/Bind/Describe/Execute and then ONE Sync, in one write, reads every answer in one
loop, and closes the connection. The messages up to a Sync are one implicit transaction:
committed at the Sync when all succeeded, rolled back when one failed (the server skips the
rest), so a failing statement in the middle leaves nothing written.

Every flight begins with the request's transaction-local settings (`set_config(..., true)`,
safe behind Neon's transaction pooler): its role (`todo_app`, which row-level security
binds; `todo_cleanup` for the cleanup), the caller's id, `statement_timeout`,
`lock_timeout`, and the per-user limits the insert triggers enforce (`app.max_tasks`,
`app.max_categories`). They hold until the Sync, and not a statement longer.

pg8000 opens and authenticates the connection; the flight speaks the extended query
protocol itself on pg8000's socket (pg8000 has no pipelining), with pg8000's own text
converters for parameters and columns.
"""

from __future__ import annotations

import re
import struct
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pg8000
from pg8000.converters import PG_TYPES, PY_TYPES, make_params, string_in

from shared.connect import ConfigurationError, connect_with_retry, parse_database_url
from shared.errors import DatabaseUnavailable
from shared.secrets import database_url
from shared.settings import get_settings

APP_ROLE = "todo_app"
CLEANUP_ROLE = "todo_cleanup"
# SQLSTATEs that mean "the database is too busy or going away": 503, not 500.
_UNAVAILABLE = {"57014": "The database took too long to answer; retry shortly.", "57P01": None, "57P02": None, "57P03": None}


class Sql:
    """A statement written with `:name` parameters, compiled once to `$n` (at import).

    `::type` casts and quoted literals are left alone. Every parameter is sent as text, so
    the statement says each one's type where the context does not (`:id::uuid`).
    """

    _NAME = re.compile(r"('(?:[^']|'')*')|(?<![:\w]):([A-Za-z_]\w*)")

    def __init__(self, text: str) -> None:
        self.names: list[str] = []

        def number(match: re.Match[str]) -> str:
            literal, name = match.groups()
            if literal is not None:
                return literal
            if name not in self.names:
                self.names.append(name)
            return f"${self.names.index(name) + 1}"

        self.text = self._NAME.sub(number, text)

    def __call__(self, **values: Any) -> Query:
        missing = set(self.names) - set(values)
        if missing:
            raise TypeError(f"missing parameters: {sorted(missing)}")
        return Query(self.text, tuple(values[name] for name in self.names))


@dataclass(frozen=True)
class Query:
    text: str  # `$n` parameters
    params: tuple[Any, ...] = ()


@dataclass
class Result:
    """What one statement of a flight gave back: its rows as dicts, and its row count."""

    columns: list[str]
    rows: list[dict[str, Any]]
    row_count: int = 0

    def first(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None


class QueryFailed(Exception):
    """A statement of the flight failed; the whole flight was rolled back."""

    def __init__(self, index: int, fields: dict[str, str]) -> None:
        super().__init__(fields.get("M", "statement failed"))
        self.index = index  # which query of the flight (0 is the first one the caller gave)
        self.sqlstate = fields.get("C")
        self.constraint = fields.get("n")
        self.fields = fields


_PER_TRANSACTION = Sql(
    "SELECT set_config('statement_timeout', :statement_timeout, true), set_config('lock_timeout', :lock_timeout, true),"
    " set_config('app.user_id', :user_id, true), set_config('role', :role, true),"
    " set_config('app.max_tasks', :max_tasks, true), set_config('app.max_categories', :max_categories, true)"
)


def flight(
    *queries: Query,
    user_id: str | None = None,
    role: str = APP_ROLE,
    lock_timeout_ms: int = 0,
    statement_timeout_ms: int | None = None,
) -> list[Result]:
    """Runs `queries` as one transaction in one round trip; one `Result` per query.

    A failing query raises `QueryFailed` (nothing was written); a database that cannot be
    reached, drops the connection or is too busy raises `DatabaseUnavailable` (503).
    `statement_timeout_ms` overrides DB_STATEMENT_TIMEOUT (a scheduled job's own budget).
    """
    with _connection() as connection:
        return _run(connection, (_settings(user_id, role, lock_timeout_ms, statement_timeout_ms), *queries), ours=1)


class Transaction:
    """Several flights in one explicit transaction on one connection (see `transaction`)."""

    def __init__(self, connection: pg8000.Connection, setup: list[Query]) -> None:
        self._connection, self._pending = connection, setup

    def flight(self, *queries: Query) -> list[Result]:
        pending, self._pending = self._pending, []
        return _run(self._connection, (*pending, *queries), ours=len(pending))


@contextmanager
def transaction(*, user_id: str | None = None, role: str = APP_ROLE) -> Iterator[Transaction]:
    """An explicit transaction over several flights, committed when the block ends.

    Only for work that must wait on something outside the database between two flights
    of one transaction (a scheduled job putting events on EventBridge before it marks them
    sent); a request never needs it. BEGIN and the settings ride in the first flight.
    """
    with _connection() as connection:
        work = Transaction(connection, [_BEGIN, _settings(user_id, role, 0)])
        try:
            yield work
        except BaseException:
            if not work._pending:  # BEGIN was sent: end the transaction before the connection
                _rollback_quietly(connection)
            raise
        if not work._pending:
            _run(connection, (_COMMIT,))


_BEGIN, _COMMIT, _ROLLBACK = Query("BEGIN"), Query("COMMIT"), Query("ROLLBACK")


def _settings(user_id: str | None, role: str, lock_timeout_ms: int, statement_timeout_ms: int | None = None) -> Query:
    settings = get_settings()
    timeout_ms = statement_timeout_ms if statement_timeout_ms is not None else int(settings.db_statement_timeout * 1000)
    return _PER_TRANSACTION(
        statement_timeout=f"{timeout_ms}ms",
        lock_timeout=f"{lock_timeout_ms}ms",
        user_id=user_id or "",
        role=role,
        # The limits the database's insert triggers hold each user to (migration 0009).
        max_tasks=str(settings.max_tasks_per_user),
        max_categories=str(settings.max_categories_per_user),
    )


def _rollback_quietly(connection: pg8000.Connection) -> None:
    try:
        _exchange(_wire(connection), (_ROLLBACK,))
    except Exception:  # noqa: BLE001 - closing the connection rolls back as well
        pass


# Inside `connections_refused()` (priming at init) no connection opens, nor is the URL read.
_refused: ContextVar[bool] = ContextVar("connections_refused", default=False)
# Every connection still open, so that nothing can be left open in a SnapStart snapshot.
_open: weakref.WeakSet[pg8000.Connection] = weakref.WeakSet()


@contextmanager
def connections_refused() -> Iterator[None]:
    """No flight or transaction in this context (and tasks started from it) reaches the
    database: each raises DatabaseUnavailable before reading the URL or its secret."""
    token = _refused.set(True)
    try:
        yield
    finally:
        _refused.reset(token)


def close_open_connections() -> int:
    """Closes any connection still open (none, unless work was interrupted); how many."""
    closed = 0
    for connection in list(_open):
        try:
            connection.close()
        except (pg8000.InterfaceError, OSError):
            pass
        _open.discard(connection)
        closed += 1
    return closed


@contextmanager
def _connection() -> Iterator[pg8000.Connection]:
    """A new connection for this work, closed after it, whatever happened."""
    if _refused.get():
        raise DatabaseUnavailable()
    settings = get_settings()
    params = parse_database_url(database_url())
    connection = connect_with_retry(params, params.connect_timeout or settings.db_connect_timeout)
    _open.add(connection)
    try:
        yield connection
    finally:
        _open.discard(connection)
        try:
            connection.close()
        except (pg8000.InterfaceError, OSError):
            pass  # already gone: nothing of an unfinished flight was committed


def _run(connection: pg8000.Connection, queries: Sequence[Query], *, ours: int = 0) -> list[Result]:
    """One flight on `connection`, its errors mapped. The first `ours` queries are this
    module's (BEGIN, the settings): results and failure indexes count the caller's only."""
    try:
        return _exchange(_wire(connection), queries)[ours:]
    except QueryFailed as failed:
        detail = _UNAVAILABLE.get(failed.sqlstate or "", "")
        if detail != "":
            raise DatabaseUnavailable(*(() if detail is None else (detail,))) from failed
        if failed.index < ours:
            raise  # BEGIN or the settings failed: a broken deployment, never a client's fault
        raise QueryFailed(failed.index - ours, failed.fields) from None
    except (pg8000.InterfaceError, OSError, EOFError) as error:
        raise DatabaseUnavailable() from error


def ping() -> None:
    flight(Query("SELECT 1"))


def reset() -> None:
    """Forget cached configuration (tests, or after the environment changed)."""
    get_settings.cache_clear()
    parse_database_url.cache_clear()
    from shared import secrets

    secrets.reset()


def check_configuration() -> None:
    """Says now, not at some later connect, when the database URL cannot be used."""
    parse_database_url(database_url())


def configured_url_without_secret() -> str | None:
    """DATABASE_URL when it is given as is (fixed for the process's life); None when it is
    a secret to fetch (priming must not read it) or the settings do not load."""
    try:
        url = get_settings().database_url
    except ValueError:  # a bad setting: said by the first request, as without priming
        return None
    return url.get_secret_value() if url is not None else None


def prime_wire() -> None:
    """The encoders of a flight's messages, run once on this module's own statement."""
    _parse_message(_PER_TRANSACTION.text)
    _bind_message(_settings("priming", APP_ROLE, 0, 1000).params)


__all__ = ["APP_ROLE", "CLEANUP_ROLE", "ConfigurationError", "Query", "QueryFailed", "Result", "Sql", "flight", "ping", "transaction"]


# ---------------------------------------------------------------------------- the protocol
# PostgreSQL's extended query protocol ("Message Formats" in the protocol chapter of the
# PostgreSQL docs). Everything here is the protocol, not pg8000: pg8000 only lends its
# authenticated socket (`_sock`, tested in tests/shared/test_db.py) and its converters.

_I32 = struct.Struct("!i")
_I16 = struct.Struct("!h")
_SYNC = b"S" + _I32.pack(4)
_DESCRIBE_PORTAL = b"D" + _I32.pack(6) + b"P\x00"
_EXECUTE_ALL = b"E" + _I32.pack(9) + b"\x00" + _I32.pack(0)


def _wire(connection: pg8000.Connection) -> Any:
    sock = getattr(connection, "_sock", None)
    if sock is None or not all(hasattr(sock, name) for name in ("read", "write", "flush")):
        raise RuntimeError("pg8000 no longer exposes its socket as `_sock`: see shared/db.py")
    return sock


def _message(code: bytes, payload: bytes) -> bytes:
    return code + _I32.pack(len(payload) + 4) + payload


@lru_cache(maxsize=256)
def _parse_message(text: str) -> bytes:
    # Unnamed statement, no parameter types given: the server infers them (or the casts say).
    return _message(b"P", b"\x00" + text.encode() + b"\x00" + _I16.pack(0))


def _bind_message(params: Sequence[Any]) -> bytes:
    body = bytearray(b"\x00\x00" + _I16.pack(0) + _I16.pack(len(params)))
    for value in make_params(PY_TYPES, params):
        if value is None:
            body += _I32.pack(-1)
        else:
            encoded = value.encode()
            body += _I32.pack(len(encoded)) + encoded
    body += _I16.pack(0)  # every result column as text
    return _message(b"B", bytes(body))


def _exchange(sock: Any, queries: Sequence[Query]) -> list[Result]:
    """One write, one Sync, one read loop: the round trip of the whole flight."""
    out = bytearray()
    for query in queries:
        out += _parse_message(query.text) + _bind_message(query.params) + _DESCRIBE_PORTAL + _EXECUTE_ALL
    out += _SYNC
    sock.write(bytes(out))
    sock.flush()
    return _read_results(sock, len(queries))


def _read_exact(sock: Any, size: int) -> bytes:
    data = sock.read(size)
    if data is None or len(data) < size:
        raise EOFError("the server closed the connection")
    return data


def _read_results(sock: Any, count: int) -> list[Result]:
    results: list[Result] = []
    current = Result(columns=[], rows=[])
    decoders: list[Any] = []
    failure: QueryFailed | None = None
    while True:
        code = _read_exact(sock, 1)
        (length,) = _I32.unpack(_read_exact(sock, 4))
        data = _read_exact(sock, length - 4)
        if code == b"T":
            current.columns, decoders = _row_description(data)
        elif code == b"D":
            current.rows.append(_data_row(data, current.columns, decoders))
        elif code in (b"C", b"I"):  # CommandComplete / EmptyQueryResponse: the statement ended
            tail = data[:-1].rsplit(b" ", 1)[-1]
            current.row_count = int(tail) if tail.isdigit() else 0
            results.append(current)
            current, decoders = Result(columns=[], rows=[]), []
        elif code == b"E":
            failure = QueryFailed(len(results), _error_fields(data))
        elif code == b"Z":  # ReadyForQuery: the Sync was reached, the transaction is closed
            if failure is not None:
                raise failure
            if len(results) != count:
                raise pg8000.InterfaceError(f"expected {count} results, got {len(results)}")
            return results
        # ParseComplete, BindComplete, NoData, ParameterStatus, NoticeResponse: nothing to keep.


def _row_description(data: bytes) -> tuple[list[str], list[Any]]:
    (count,) = _I16.unpack_from(data, 0)
    position, columns, decoders = 2, [], []
    for _ in range(count):
        end = data.index(b"\x00", position)
        columns.append(data[position:end].decode())
        type_oid = _I32.unpack_from(data, end + 7)[0]  # after table oid (4) and column number (2)
        decoders.append(PG_TYPES.get(type_oid, string_in))
        position = end + 19
    return columns, decoders


def _data_row(data: bytes, columns: list[str], decoders: list[Any]) -> dict[str, Any]:
    position, row = 2, {}
    for name, decode in zip(columns, decoders):
        (size,) = _I32.unpack_from(data, position)
        position += 4
        if size == -1:
            row[name] = None
        else:
            row[name] = decode(data[position : position + size].decode())
            position += size
    return row


def _error_fields(data: bytes) -> dict[str, str]:
    return {part[:1].decode(): part[1:].decode(errors="replace") for part in data.split(b"\x00") if part}
