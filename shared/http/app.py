"""`create_app`: one function's FastAPI app, its routes `ContractRoute`s."""

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException

from shared.http import problems
from shared.http.route import ContractRoute


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
