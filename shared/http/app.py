"""What every function's FastAPI app shares: body rules, error mapping, the Lambda entry.

A function's own file declares its one route and calls one function of `shared`; this
module makes sure that what reaches that route is what the contract allows, and that
whatever goes wrong leaves as problem+json.
"""

import asyncio
import functools
import inspect
import json
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from mangum import Mangum
from starlette.exceptions import HTTPException

from shared.auth import authorize_path_user, caller_from_event
from shared.errors import BadRequest, DomainError, InvalidField, PayloadTooLarge, UnsupportedMediaType
from shared.http import problems
from shared.observability import logger, metrics

MAX_BODY_BYTES = 64 * 1024
_JSON_TYPES = ("application/json",)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The contract's body rules, in its order: 413, 415, 400, 422."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is over {MAX_BODY_BYTES} bytes.")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in _JSON_TYPES:
        raise UnsupportedMediaType("The body must be application/json.")
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.") from None
    except RecursionError:
        raise BadRequest("The body is nested too deeply.") from None
    if not isinstance(value, dict):
        raise InvalidField(("body",), "must be a JSON object", "dict_type")
    return value


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _inline(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A plain `def` endpoint, run on the event loop's own thread.

    FastAPI runs a sync endpoint, and then the validation of its response, in a worker
    thread: a thread start for each event (Mangum runs every event on the loop afresh) and
    two thread switches per hop. Lambda hands a process one event at a time and the local
    gateway calls each handler on its own thread and loop, so the pool buys nothing here.
    Same signature (FastAPI reads it through `__wrapped__`), same result, same errors.
    """
    if not inspect.isfunction(endpoint) or inspect.iscoroutinefunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)
    async def run_inline(*args: Any, **kwargs: Any) -> Any:
        return endpoint(*args, **kwargs)

    return run_inline


@contextmanager
def _pydantic_v1_unimported() -> Iterator[None]:
    """While FastAPI builds a route, `import pydantic.v1` fails unless it is already loaded.

    For every parameter and response model FastAPI asks "is this a pydantic.v1 model?" by
    importing pydantic.v1 (20-40 ms of a cold start) and answers "no" when the import fails.
    A pydantic.v1 model cannot exist unless pydantic.v1 was imported, so until then "no" is
    the right answer without the import; once something has imported it, nothing changes.
    """
    if "pydantic.v1" in sys.modules:
        yield
        return
    sys.modules["pydantic.v1"] = None  # type: ignore[assignment]  # the import system's "not importable"
    try:
        yield
    finally:
        if "pydantic.v1" in sys.modules and sys.modules["pydantic.v1"] is None:
            del sys.modules["pydantic.v1"]


class ContractRoute(APIRoute):
    """Checks body and query string before FastAPI parses them, and maps every error."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        with _pydantic_v1_unimported():
            super().__init__(path, _inline(endpoint), **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        declared_query = _query_names(self.dependant)
        takes_body = self.body_field is not None
        user_scoped = "{user_id}" in self.path_format

        async def handler(request: Request) -> Response:
            try:
                if user_scoped:  # 401 and 403 come before anything else is read
                    caller = caller_from_event(request.scope.get("aws.event"))
                    authorize_path_user(caller, request.path_params["user_id"])
                    request.state.caller = caller
                unknown = sorted(set(request.query_params) - declared_query)
                if unknown:
                    raise InvalidField(("query", unknown[0]), "is not a parameter of this route", "extra_forbidden")
                if takes_body:
                    body = await request.body()
                    if body:
                        request.state.json_body = parse_json_object(body, request.headers.get("content-type"))
                        # FastAPI reuses the parsed value instead of parsing the body again.
                        request._json = request.state.json_body
                return await original(request)
            except DomainError as error:
                return problems.from_domain_error(request, error)
            except RequestValidationError as error:
                return problems.from_validation_errors(request, list(error.errors()))
            except Exception:
                logger.exception("unhandled error", extra={"path": request.url.path})
                return problems.problem(request, 500, "internal_error", "Something went wrong on our side.")

        return handler


def create_app(title: str) -> FastAPI:
    """One function's app: no docs routes (the assembled document is `todo-api openapi`)."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.router.route_class = ContractRoute

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        # Only reached when a request matched no route of this function.
        if error.status_code == 405:
            return problems.problem(request, 405, "method_not_allowed", "This method is not allowed here.")
        return problems.problem(request, error.status_code, "not_found", "No such route.")

    return app


_thread_state = threading.local()
_metrics_lock = threading.Lock()


def _ensure_event_loop() -> None:
    """Mangum runs the app on the thread's event loop; a worker thread (the local gateway,
    concurrent tests) has none until one is set. Lambda's own thread already has one."""
    if not getattr(_thread_state, "has_loop", False):
        try:
            asyncio.get_event_loop()
        except RuntimeError:
            asyncio.set_event_loop(asyncio.new_event_loop())
        _thread_state.has_loop = True


def lambda_handler(app: FastAPI) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point: Mangum for the event, Powertools for logs and metrics."""
    asgi = Mangum(
        app,
        lifespan="off",  # the default would run startup/shutdown on every call
        text_mime_types=["application/json", problems.PROBLEM_MEDIA_TYPE],
    )

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        _ensure_event_loop()
        response = asgi(event, context)
        status = response.get("statusCode", 500)
        # Added and flushed together under a lock: one Lambda process runs one event at a
        # time, but the local gateway and the tests share this Metrics object across threads.
        with _metrics_lock:
            metrics.add_metric(name=f"Http{status // 100}xx", unit=MetricUnit.Count, value=1)
            metrics.flush_metrics()
        http = (event.get("requestContext") or {}).get("http") or {}
        logger.info(
            "request",
            extra={
                "method": http.get("method"),
                "route": event.get("routeKey"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    return handler
