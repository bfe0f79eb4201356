"""`ContractRoute`: every function's route class, so that what reaches a route is what the
contract allows, in the contract's order, and whatever goes wrong leaves as problem+json."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

from shared.auth import authorize_path_user, caller_from_event
from shared.errors import DomainError, InvalidField
from shared.http import problems
from shared.http.body import parse_json_object
from shared.http.speedups import pydantic_v1_unimported, run_on_event_loop
from shared.observability import logger


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, a parameter model's fields one by one."""
    names: set[str] = set()
    for param in dependant.query_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names |= {field.alias or name for name, field in model.model_fields.items()}
        else:
            names.add(param.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


class ContractRoute(APIRoute):
    """Checks body and query string before FastAPI parses them, and maps every error."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        with pydantic_v1_unimported():
            super().__init__(path, run_on_event_loop(endpoint), **kwargs)

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
                        # Starlette's cache of `request.json()`, which FastAPI reads: parsed once, the
                        # contract's verdict is the only one (tests/shared/test_http_internals.py).
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
