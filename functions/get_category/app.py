"""GET /api/{user_id}/categories/{category_id}: one category, with its task count."""

from fastapi import Response

from shared import categories
from shared.http.app import create_app
from shared.http.deps import CallerDep, CategoryId, UserId, set_etag
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import CategoryPublic

app = create_app("GetCategory")


@app.get(
    "/api/{user_id}/categories/{category_id}",
    response_model=CategoryPublic,
    responses=problem_responses(401, 403, 404, 503),
    operation_id="getCategory",
    tags=["categories"],
)
def get_category(user_id: UserId, category_id: CategoryId, caller: CallerDep, response: Response) -> CategoryPublic:
    category = categories.get_category(caller=caller, category_id=category_id)
    set_etag(response, category.version)
    return category


handler = lambda_handler(app)
