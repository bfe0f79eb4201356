"""PATCH /api/{user_id}/categories/{category_id}: rename or recolour (409 on a duplicate)."""

from fastapi import Response

from shared import categories
from shared.http.app import create_app
from shared.http.deps import CallerDep, CategoryId, IfMatch, UserId, set_etag
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import CategoryPublic, CategoryUpdate

app = create_app("UpdateCategory")


@app.patch(
    "/api/{user_id}/categories/{category_id}",
    response_model=CategoryPublic,
    responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 415, 422, 503),
    operation_id="updateCategory",
    tags=["categories"],
)
def update_category(
    user_id: UserId, category_id: CategoryId, data: CategoryUpdate, caller: CallerDep, if_match: IfMatch, response: Response
) -> CategoryPublic:
    category = categories.update_category(caller=caller, category_id=category_id, data=data, if_match=if_match)
    set_etag(response, category.version)
    return category


handler = lambda_handler(app)
