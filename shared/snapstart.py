"""Init that leaves the first event nothing to do once, and Lambda SnapStart's runtime hooks.

Every function's init ends in `prime_http(app, asgi)` (shared/http/lambda_entry.py) or
`prime_scheduled()` (shared/scheduled.py): the work its first event would otherwise do once,
done now, so that the first event costs what a warm one does. With SnapStart
(template parameter `SnapStart`) Lambda runs that init once per published version and
restores every new instance from a snapshot of it; without it, the same priming runs in
each instance's own init. Priming never opens a connection and never reads a secret:
`db.connections_refused()` holds for all of it, so a route's synthetic request stops at the
point where it would connect (503), having gone through everything before.

The hooks (registered once per process, on the first import of this module):
- before the snapshot: nothing open. No connection may be held (`db.close_open_connections`)
  and priming started no thread.
- after a restore: every restored copy starts from the same memory, so what was random in
  it is made again: `random` is reseeded, fresh OS entropy is mixed into OpenSSL's
  generator (the TLS context was built at init), the modules' own `on_restore` callbacks
  run, and a cached secret older than its max age is dropped so that its next use reads it
  again (shared/secrets.py).

`snapshot_restore_py` is the Lambda runtime's own module (the runtime runs what it holds);
it is never put in the layer, where a second copy would shadow the runtime's. Where it is
missing (tests, `todo-api`, the built artifacts run outside Lambda) a registry of the same
shape stands in, and `run_before_snapshot` / `run_after_restore` run the hooks the way the
runtime does.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

try:
    from snapshot_restore_py import (  # the managed runtime's module
        get_after_restore,
        get_before_snapshot,
        register_after_restore,
        register_before_snapshot,
    )
except ImportError:  # not in Lambda: the same registry, run by run_before_snapshot/run_after_restore
    _before: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
    _after: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def register_before_snapshot(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        _before.append((func, args, kwargs))
        return func

    def register_after_restore(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        _after.append((func, args, kwargs))
        return func

    def get_before_snapshot() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
        return _before

    def get_after_restore() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
        return _after


from shared import db, secrets
from shared.connect import parse_database_url, tls_context
from shared.observability import logger, metrics

# A URL of the usual production shape (Neon: verified TLS, system CAs), parsed and given its
# TLS context when the real URL is a secret that priming must not read.
_TYPICAL_URL = "postgresql://priming@priming.invalid/priming?sslmode=require&channel_binding=require"
_restore_callbacks: list[Callable[[], None]] = []
_priming_enabled = True


@dataclass
class Primed:
    """What priming did for one function (the tests read it)."""

    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)  # "METHOD path" -> the synthetic request's status
    samples_valid: dict[str, bool] = field(default_factory=dict)  # "METHOD path" -> its models took their samples


primed: dict[str, Primed] = {}  # by function name
_init_threads = threading.active_count()


def on_restore(callback: Callable[[], None]) -> Callable[[], None]:
    """Registers something a module made at init from randomness, to be made again after a restore."""
    _restore_callbacks.append(callback)
    return callback


def disable_priming() -> None:
    """Init without priming: bench/run.py measures what priming costs and saves; `todo-api openapi`
    needs the apps, not their warm-up."""
    global _priming_enabled
    _priming_enabled = False


# ------------------------------------------------------------------------------- priming


def prime_http(name: str, app: Any, asgi: Callable[[dict[str, Any], Any], dict[str, Any]]) -> None:
    """A function's HTTP app, primed: its models exercised and one synthetic request per route."""
    if not _priming_enabled:
        return
    started, done = time.perf_counter(), Primed()
    with db.connections_refused():
        _prime_common()
        from shared.http.priming import exercise_models, synthetic_event

        for route in _api_routes(app):
            key = f"{sorted(route.methods)[0]} {route.path}"
            done.samples_valid[key] = exercise_models(route)
            done.statuses[key] = asgi(synthetic_event(route), _PrimingContext(name))["statusCode"]
    done.seconds = time.perf_counter() - started
    primed[name] = done


def prime_scheduled(name: str, model: Any, event: dict[str, Any]) -> None:
    """A scheduled function's init, primed: its event model parsed once, and the common parts."""
    if not _priming_enabled:
        return
    started = time.perf_counter()
    with db.connections_refused():
        _prime_common()
        from aws_lambda_powertools.utilities.parser import parse

        parse(event=event, model=model)
    primed[name] = Primed(seconds=time.perf_counter() - started)


def _api_routes(app: Any) -> list[Any]:
    from fastapi.routing import APIRoute

    return [route for route in app.routes if isinstance(route, APIRoute)]


def _prime_common() -> None:
    """What every function's first event does once, short of the database and its secret."""
    url = db.configured_url_without_secret()
    try:
        params = parse_database_url(url or _TYPICAL_URL)
    except ValueError:  # a URL that cannot be used: the first request says so, as without priming
        params = parse_database_url(_TYPICAL_URL)
    if params.tls in ("verify-full", "verify-ca"):
        context = tls_context(params.tls, params.rootcert, direct=params.direct_tls)  # ~25 ms, once a process
        # A ClientHello written into memory (no server, no socket): the first handshake's
        # one-time setup (its key share's curve, the cipher list) is done here.
        hello = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="priming.invalid")
        try:
            hello.do_handshake()
        except ssl.SSLWantReadError:
            pass  # waiting for a ServerHello that never comes
    db.prime_wire()
    import json
    from datetime import datetime, timezone
    from uuid import UUID

    json.dumps({"at": datetime.now(timezone.utc).isoformat(), "id": str(UUID(int=0)), "n": [1, 2.5, None, True]})
    record = logging.LogRecord(logger.name, logging.INFO, __file__, 0, "priming", None, None)
    logger.registered_formatter.format(record)  # formatted, never emitted
    metrics.serialize_metric_set(
        metrics={"Http2xx": {"Unit": "Count", "StorageResolution": 60, "Value": [1.0]}},
        dimensions={"service": metrics.service or "todo-api"},
    )  # serialized, never flushed: priming records no metric


class _PrimingContext:
    """The Lambda context of a synthetic request (Mangum puts it in the ASGI scope)."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
        self.memory_limit_in_mb = 1024
        self.aws_request_id = "snapstart-priming"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "priming"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


# ------------------------------------------------------------------------------- the hooks


def before_snapshot() -> None:
    """Nothing open in the snapshot: no connection, and no thread that priming started."""
    closed = db.close_open_connections()
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if closed or threading.active_count() > _init_threads:
        logger.warning("before snapshot", extra={"connections_closed": closed, "threads": threads})


def after_restore() -> None:
    """What every restored copy must not share with the others."""
    random.seed()  # from os.urandom: the snapshot holds one Mersenne Twister state for all copies
    ssl.RAND_add(os.urandom(32), 32.0)  # OpenSSL's generator may have been seeded at init (TLS context)
    for callback in _restore_callbacks:
        callback()
    secrets.forget_expired()


def run_before_snapshot() -> None:
    """What the runtime does just before the snapshot: the hooks, last registered first."""
    for func, args, kwargs in reversed(list(get_before_snapshot())):
        func(*args, **kwargs)


def run_after_restore() -> None:
    """What the runtime does just after a restore: the hooks, in registration order."""
    for func, args, kwargs in list(get_after_restore()):
        func(*args, **kwargs)


def hooks_registered() -> bool:
    return any(f is before_snapshot for f, _, _ in get_before_snapshot()) and any(
        f is after_restore for f, _, _ in get_after_restore()
    )


register_before_snapshot(before_snapshot)
register_after_restore(after_restore)
