"""The local gateway: `todo-api serve`, API Gateway's HTTP API emulated over real HTTP.

For every request, as AWS does it:
1. match method and path against the `HttpApi` routes of template.yaml (no other list);
   nothing matches: `404 {"message":"Not Found"}`;
2. on a route with the authorizer, check the bearer token (authorizer.py); a bad or
   missing one: `401 {"message":"Unauthorized"}` and the function is never called;
3. build the payload 2.0 event (apigw.py) and call that function's real Lambda handler,
   in a worker thread, with a Lambda-like context and its template timeout;
4. turn the Lambda proxy response back into HTTP (an exception or timeout: 500
   `{"message":"Internal Server Error"}`, as when a function fails in AWS).

CORS follows the template's CorsConfiguration with `CORS_ALLOW_ORIGINS` as its origins
(empty: off): the gateway answers preflight `OPTIONS` itself and sets the CORS headers.
It also serves `/.well-known/jwks.json` (the local issuer's keys), `/openapi.json` and
`/docs` (Swagger UI, its assets under `/docs/` from the `swagger-ui-py` package: no CDN,
so it works offline).

Without `DATABASE_URL`, `serve` runs an embedded Postgres with its data in
`<local dir>/pgdata` and stops it when it stops.

Every scheduled function of the template (Cleanup, Reminders, PublishChanges) runs on its own schedule in
the background (scheduler.py) and stops with `serve`; without `EVENT_BUS_NAME` the events
they publish go to the log and to `<local dir>/events.jsonl`.

It does not throttle: the template's ThrottleRate / ThrottleBurst (and the 429 they bring)
are API Gateway's alone.

Development tooling only: no Lambda function imports this module.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import shlex
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.local.apigw import build_http_event, match_path, response_body
from shared.local.authorizer import JwtAuthorizer, TokenRejected, scopes_of
from shared.local.lambda_context import FakeLambdaContext
from shared.template import CorsConfiguration, Function, Route, cors_configuration, http_routes

log = logging.getLogger("todo_api.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

GATEWAY_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own limit: an HTTP API refuses larger payloads
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "upgrade"}
_JSON = [("content-type", "application/json")]
# The Swagger UI files /docs loads, served from the swagger-ui-py package (swagger_ui/static).
_DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


# -- CORS ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cors:
    """The template's CorsConfiguration with its origins (locally CORS_ALLOW_ORIGINS)."""

    allow_origins: tuple[str, ...]
    config: CorsConfiguration

    @classmethod
    def configured(cls, origins: tuple[str, ...]) -> Cors | None:
        """None (CORS off) without origins."""
        return cls(origins, cors_configuration()) if origins else None

    def origin_value(self, origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in self.allow_origins:
            return "*" if not self.config.allow_credentials else origin
        return origin if origin in self.allow_origins else None

    def preflight_headers(self, origin: str | None) -> list[tuple[str, str]]:
        extra: list[tuple[str, str]] = []
        if self.config.allow_methods:
            extra.append(("access-control-allow-methods", ",".join(self.config.allow_methods)))
        if self.config.allow_headers:
            extra.append(("access-control-allow-headers", ",".join(self.config.allow_headers)))
        if self.config.max_age is not None:
            extra.append(("access-control-max-age", str(self.config.max_age)))
        return self._headers(origin, extra)

    def response_headers(self, origin: str | None) -> list[tuple[str, str]]:
        extra: list[tuple[str, str]] = []
        if self.config.expose_headers:
            extra.append(("access-control-expose-headers", ",".join(self.config.expose_headers)))
        return self._headers(origin, extra)

    def _headers(self, origin: str | None, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The allowed origin, `extra`, credentials, and `Vary` unless any origin is allowed."""
        allowed = self.origin_value(origin)
        if allowed is None:
            return []
        headers = [("access-control-allow-origin", allowed), *extra]
        if self.config.allow_credentials:
            headers.append(("access-control-allow-credentials", "true"))
        if allowed != "*":
            headers.append(("vary", "Origin"))
        return headers


# -- the ASGI application -------------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _message(status: int, message: str, extra: list[tuple[str, str]] | None = None) -> _Reply:
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return _Reply(status, [*_JSON, *(extra or [])], body)


def _request_id() -> str:
    """Shaped like API Gateway's (`JKJaXmPLvHcESHA=`)."""
    return base64.b64encode(uuid.uuid4().bytes[:10]).decode()


def _thread_loop() -> None:
    # Mangum drives each call with `asyncio.get_event_loop()`: every worker needs its own.
    asyncio.set_event_loop(asyncio.new_event_loop())


class Gateway:
    """A raw ASGI application; one instance per `serve`."""

    def __init__(
        self,
        *,
        authorizer: JwtAuthorizer,
        cors: Cors | None = None,
        jwks: dict[str, Any] | None = None,
        max_workers: int = 8,
        preload: bool = True,
    ) -> None:
        self.authorizer = authorizer
        self.cors = cors
        self.jwks = jwks
        # Literal segments win over parameters when both match ("most specific" first).
        self.routes: list[tuple[Route, Function]] = sorted(http_routes(), key=lambda rf: rf[0].path.count("{"))
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="lambda", initializer=_thread_loop
        )
        self._handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self._openapi: dict[str, Any] | None = None
        if preload:  # import every function now: errors show at start, not at first call
            for _, function in self.routes:
                self._handler(function)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _handler(self, function: Function) -> Callable[[dict[str, Any], Any], Any]:
        if function.logical_id not in self._handlers:
            self._handlers[function.logical_id] = function.load_handler()
        return self._handlers[function.logical_id]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return  # websockets: not an HTTP API feature
        started = time.perf_counter()
        request_id = _request_id()
        method = scope["method"].upper()
        path = scope["path"]
        headers = self._headers(scope)
        origin = headers.get("origin")
        body, too_large = await self._read_body(receive)
        target = "-"
        if too_large:
            reply = _message(413, "Request Entity Too Large")
        else:
            reply, target = await self._dispatch(scope, method, path, headers, body, request_id)
        if self.cors is not None and method != "OPTIONS":
            reply.headers = [(k, v) for k, v in reply.headers if not k.lower().startswith("access-control-")]
            reply.headers += self.cors.response_headers(origin)
        reply.headers.append(("apigw-requestid", request_id))
        await self._send(send, reply, head=method == "HEAD")
        log.info(
            "%s %s -> %s %s (%.0f ms) %s",
            method, path, target, reply.status, (time.perf_counter() - started) * 1000, request_id,
        )

    # -- steps --------------------------------------------------------------------------

    @staticmethod
    def _headers(scope: Scope) -> dict[str, str]:
        """Lower-cased names; repeated headers joined with commas, as API Gateway does."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name == "cookie" and name in headers:
                headers[name] = f"{headers[name]}; {value}"
            else:
                headers[name] = f"{headers[name]},{value}" if name in headers else value
        return headers

    @staticmethod
    async def _read_body(receive: Receive) -> tuple[bytes, bool]:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= GATEWAY_MAX_PAYLOAD_BYTES:
                chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks), size > GATEWAY_MAX_PAYLOAD_BYTES

    def _match(self, method: str, path: str) -> tuple[Route, Function] | None:
        for route, function in self.routes:
            if route.method == method and match_path(route.path, path) is not None:
                return route, function
        return None

    async def _dispatch(
        self, scope: Scope, method: str, path: str, headers: dict[str, str], body: bytes, request_id: str
    ) -> tuple[_Reply, str]:
        if method == "OPTIONS" and self.cors is not None:
            # With CORS configured, API Gateway answers preflight requests itself.
            return _Reply(204, self.cors.preflight_headers(headers.get("origin"))), "cors-preflight"
        found = self._match(method, path)
        if found is None:
            builtin = self._builtin(method, path, headers)
            if builtin is not None:
                return builtin, "gateway"
            return _message(404, "Not Found"), "no-route"
        route, function = found
        loop = asyncio.get_running_loop()
        claims: dict[str, Any] | None = None
        if not route.public:
            try:
                claims = await loop.run_in_executor(self.executor, self.authorizer.authorize, headers.get("authorization"))
            except TokenRejected as error:
                return _message(401, "Unauthorized", [("www-authenticate", "Bearer")]), f"authorizer-denied ({error})"
        event = self._event(scope, method, path, route, headers, body, claims, request_id)
        return await self._invoke(function, event), function.logical_id

    def _event(
        self,
        scope: Scope,
        method: str,
        path: str,
        route: Route,
        headers: dict[str, str],
        body: bytes,
        claims: dict[str, Any] | None,
        request_id: str,
    ) -> dict[str, Any]:
        client = scope.get("client") or ("127.0.0.1", 0)
        server = scope.get("server") or ("127.0.0.1", 0)
        headers = dict(headers)
        cookie = headers.pop("cookie", None)
        headers.setdefault("x-forwarded-for", client[0])
        headers.setdefault("x-forwarded-proto", scope.get("scheme", "http"))
        headers.setdefault("x-forwarded-port", str(server[1]))
        event = build_http_event(
            method=method,
            path=path,
            route_path=route.path,
            raw_query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body or None,
            claims=claims,
            scopes=scopes_of(claims) if claims is not None else None,
            source_ip=client[0],
            request_id=request_id,
        )
        if cookie:  # payload 2.0 carries cookies apart from the headers
            event["cookies"] = [c.strip() for c in cookie.split(";") if c.strip()]
        return event

    async def _invoke(self, function: Function, event: dict[str, Any]) -> _Reply:
        handler = self._handler(function)
        timeout = function.timeout
        context = FakeLambdaContext(function.logical_id, timeout_ms=int(timeout * 1000))
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(loop.run_in_executor(self.executor, handler, event, context), timeout)
        except asyncio.TimeoutError:
            log.error("%s timed out after %.0f s", function.logical_id, timeout)
            return _message(500, "Internal Server Error")
        except Exception:
            log.exception("%s raised", function.logical_id)
            return _message(500, "Internal Server Error")
        try:
            return self._from_lambda(result)
        except Exception:
            log.exception("%s returned a response API Gateway cannot use: %r", function.logical_id, result)
            return _message(500, "Internal Server Error")

    @staticmethod
    def _from_lambda(result: Any) -> _Reply:
        """A payload 2.0 response: `statusCode`, `headers`, `cookies`, `body`, base64 flag."""
        if not isinstance(result, dict) or "statusCode" not in result:
            # Format 2.0 inference: any other JSON value is a 200 application/json body.
            return _Reply(200, list(_JSON), json.dumps(result).encode())
        status = int(result["statusCode"])
        headers: list[tuple[str, str]] = []
        for name, value in (result.get("headers") or {}).items():
            headers.append((str(name), str(value)))
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(v)) for v in values)
        headers.extend(("set-cookie", str(c)) for c in result.get("cookies") or [])
        headers = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        return _Reply(status, headers, response_body(result))

    @staticmethod
    async def _send(send: Send, reply: _Reply, *, head: bool = False) -> None:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        no_body = reply.status in (204, 304) or reply.status < 200
        if not no_body:
            headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if (no_body or head) else reply.body})

    # -- what the gateway serves itself ---------------------------------------------------

    def _builtin(self, method: str, path: str, headers: dict[str, str]) -> _Reply | None:
        if method != "GET":
            return None
        if path == "/.well-known/jwks.json" and self.jwks is not None:
            return _Reply(200, list(_JSON), json.dumps(self.jwks).encode())
        if path == "/openapi.json":
            document = {**self.openapi(), "servers": [{"url": f"http://{headers.get('host', 'localhost')}", "description": "local gateway"}]}
            return _Reply(200, list(_JSON), json.dumps(document).encode())
        if path == "/docs":
            from fastapi.openapi.docs import get_swagger_ui_html

            html = get_swagger_ui_html(
                openapi_url="/openapi.json",
                title="Task API (local) - Swagger UI",
                swagger_js_url="/docs/swagger-ui-bundle.js",
                swagger_css_url="/docs/swagger-ui.css",
                swagger_favicon_url="/docs/favicon-32x32.png",
                swagger_ui_parameters={"persistAuthorization": True},
            )
            return _Reply(200, [("content-type", "text/html; charset=utf-8")], bytes(html.body))
        name = path.removeprefix("/docs/")
        if name in _DOCS_ASSETS:
            from importlib.resources import files

            body = (files("swagger_ui") / "static" / name).read_bytes()
            return _Reply(200, [("content-type", _DOCS_ASSETS[name]), ("cache-control", "max-age=3600")], body)
        return None

    def openapi(self) -> dict[str, Any]:
        """The assembled document, with bearer security stated globally (Swagger's
        "Authorize" button) and lifted on the public routes."""
        if self._openapi is None:
            from shared.openapi import build_openapi

            document = build_openapi()
            schemes = list((document.get("components") or {}).get("securitySchemes", {}))
            if not schemes:
                document.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
                schemes = ["bearer"]
            document["security"] = [{schemes[0]: []}]
            for route, _ in self.routes:
                operation = document.get("paths", {}).get(route.path, {}).get(route.method.lower())
                if route.public and operation is not None:
                    operation["security"] = []
            self._openapi = document
        return self._openapi


# -- `todo-api serve` -----------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SystemExit(f"todo-api serve: cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S"))
    for name in ("todo_api.gateway", "todo_api.local.postgres", "todo_api.local.authorizer", "todo_api.serve"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False


def _banner(url: str, database: str, authorizer_line: str, token: str | None, scheduled: str = "") -> str:
    lines = [
        "",
        f"Task API, local gateway: {url}   (docs: {url}/docs)",
        f"  database:   {database}",
        f"  authorizer: {authorizer_line}",
    ]
    if scheduled:
        lines.append(f"  scheduled:  {scheduled}")
    if token is not None:
        bearer = shlex.quote(f"Authorization: Bearer {token}")
        lines += [
            "",
            "A token for the user `demo` (valid 24 h; more with `todo-api token --sub NAME`):",
            token,
            "",
            "Try it:",
            f"curl -s -X POST {url}/api/me/tasks -H {bearer} -H 'content-type: application/json' -d '{{\"title\":\"Try the API\"}}'",
            f"curl -s {url}/api/me/tasks -H {bearer}",
            "",
            "An MCP client (Claude Code):",
            f"claude mcp add --transport http todo-api {url}/mcp --header {bearer}",
        ]
    lines += ["", "Ctrl-C stops it.", ""]
    return "\n".join(lines)


def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    jwks_url: str | None = None,
) -> int:
    import uvicorn

    from shared import db, events
    from shared.local import keys
    from shared.local.authorizer import AuthorizerConfig
    from shared.local.embedded_postgres import EmbeddedPostgres
    from shared.local.migrate import migrate
    from shared.local.scheduler import Scheduler, template_jobs
    from shared.local.settings import local_settings
    from shared.settings import Settings, get_settings, use_settings

    serve_log = logging.getLogger("todo_api.serve")
    _configure_logging()
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # log lines appear as they happen
    try:
        config = AuthorizerConfig.resolve(issuer, audience, jwks_url)
    except ValueError as error:
        raise SystemExit(f"todo-api serve: {error}") from None
    sock = _bind(host, port)
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_system_exit)
    postgres: EmbeddedPostgres | None = None
    gateway: Gateway | None = None
    scheduler: Scheduler | None = None
    started = time.monotonic()
    try:
        given = get_settings().database_url
        # The functions run in this process and read their settings from `Settings`: they are
        # given settings that name the issuer this gateway trusts (as the template gives the
        # JwtIssuer parameter) and the embedded database when there is one (the rest still from
        # the environment), not variables written into our own environment, which every thread
        # and child process would then share, and nothing would take back.
        chosen: dict[str, Any] = {"jwt_issuer": config.issuer}
        if given is not None and given.get_secret_value():
            database = "DATABASE_URL"
        else:
            data_dir = keys.local_dir() / "pgdata"
            postgres = EmbeddedPostgres(data_dir)
            chosen["database_url"] = postgres.start()
            database = f"embedded Postgres (pid {postgres.pid}, data in {data_dir}) at {chosen['database_url']}"
        use_settings(Settings(**chosen))
        db.reset()
        logging.getLogger("alembic").setLevel(logging.WARNING)
        migrate()
        authorizer = JwtAuthorizer.from_config(config)
        gateway = Gateway(authorizer=authorizer, cors=Cors.configured(local_settings().cors_allow_origins), jwks=keys.public_jwks() if config.local else None)
        bound_host, bound_port = sock.getsockname()[:2]
        shown_host = "127.0.0.1" if bound_host in ("0.0.0.0", "::") else bound_host
        url = f"http://[{shown_host}]:{bound_port}" if ":" in shown_host else f"http://{shown_host}:{bound_port}"
        if config.local:
            authorizer_line = f"local issuer {config.issuer!r}, audience {config.audience[0]!r} (keys in {keys.key_path()})"
            token = keys.mint_token("demo", ttl=24 * 3600, audience=config.audience[0])
        else:
            authorizer_line = f"issuer {config.issuer!r}, audience {config.audience[0]!r}, JWKS {config.jwks_url or 'by OIDC discovery'}"
            token = None
        bus = get_settings().event_bus_name
        events_file = keys.local_dir() / "events.jsonl"
        events.use_local_events_file(events_file)  # used only without EVENT_BUS_NAME
        scheduler = Scheduler(template_jobs()).start()
        scheduled = ", ".join(job.name for job in scheduler.jobs)
        scheduled += f"; events to EventBridge bus {bus!r}" if bus else f"; events to the log and {events_file}"
        print(_banner(url, database, authorizer_line, token, scheduled), flush=True)
        serve_log.info("ready in %.1f s", time.monotonic() - started)
        server = uvicorn.Server(
            uvicorn.Config(
                gateway,
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=10,
            )
        )
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    except SystemExit as exit_:
        if not isinstance(exit_.code, int) or exit_.code < 128:
            raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the cleanup short
        sock.close()
        if scheduler is not None:
            scheduler.stop()  # a run in progress finishes first (its batch commits or rolls back)
        if gateway is not None:
            gateway.close()
        if postgres is not None:
            serve_log.info("stopping the embedded Postgres (pid %s)", postgres.pid)
            postgres.stop()
        use_settings(None)
        signal.signal(signal.SIGTERM, previous_sigterm)
        serve_log.info("stopped")
    return 0
