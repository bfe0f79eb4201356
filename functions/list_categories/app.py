"""GET /api/{user_id}/categories: by name (case-insensitive), keyset-paged."""

from shared import categories
from shared.http.app import create_app
from shared.http.deps import CallerDep, Cursor, Limit, UserId
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import CategoryPage

app = create_app("ListCategories")


@app.get(
    "/api/{user_id}/categories",
    response_model=CategoryPage,
    responses=problem_responses(400, 401, 403, 422, 503),
    operation_id="listCategories",
    tags=["categories"],
)
def list_categories(user_id: UserId, caller: CallerDep, limit: Limit = 50, cursor: Cursor = None) -> CategoryPage:
    return categories.list_categories(caller=caller, limit=limit, cursor=cursor)


handler = lambda_handler(app)
