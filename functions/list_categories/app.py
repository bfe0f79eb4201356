"""GET /api/{user_id}/categories: by name (case-insensitive), keyset-paged."""

from typing import Annotated

from fastapi import Query

from shared import categories
from shared.http.app import create_app
from shared.http.deps import CallerDep, UserId
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import CategoryPage, PageQuery

app = create_app("ListCategories")


@app.get(
    "/api/{user_id}/categories",
    response_model=CategoryPage,
    responses=problem_responses(400, 401, 403, 422, 503),
    operation_id="listCategories",
    tags=["categories"],
)
def list_categories(user_id: UserId, caller: CallerDep, page: Annotated[PageQuery, Query()]) -> CategoryPage:
    return categories.list_categories(caller=caller, limit=page.limit, cursor=page.cursor)


handler = lambda_handler(app)
