"""Two things FastAPI does for every route that a one-event-at-a-time Lambda does not need.

Both leave a route's behaviour as it is; tests/shared/test_http_internals.py fails when a
FastAPI release changes what they rely on.
"""

import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def run_on_event_loop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
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
def pydantic_v1_unimported() -> Iterator[None]:
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
