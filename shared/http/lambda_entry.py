"""`lambda_handler`: the Lambda entry point of a function's app, primed at init (shared/snapstart.py)."""

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import FastAPI
from mangum import Mangum

from shared import snapstart
from shared.http import problems
from shared.observability import logger, metrics

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
    """Mangum for the event, Powertools for logs and metrics; the app primed before the first
    event (without logs or metrics: priming's synthetic requests are nobody's)."""
    asgi = Mangum(
        app,
        lifespan="off",  # the default would run startup/shutdown on every call
        text_mime_types=["application/json", problems.PROBLEM_MEDIA_TYPE],
    )

    def respond(event: dict[str, Any], context: Any) -> dict[str, Any]:
        _ensure_event_loop()
        return asgi(event, context)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        response = respond(event, context)
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

    snapstart.prime_http(app.title, app, respond)
    return handler
