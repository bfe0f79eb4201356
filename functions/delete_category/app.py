"""DELETE /api/{user_id}/categories/{category_id}: its tasks become uncategorised (204)."""

from fastapi import Response

from shared import categories
from shared.http.app import create_app
from shared.http.deps import CallerDep, CategoryId, IfMatch, UserId
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses

app = create_app("DeleteCategory")


@app.delete(
    "/api/{user_id}/categories/{category_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 412, 422, 503),
    operation_id="deleteCategory",
    tags=["categories"],
)
def delete_category(user_id: UserId, category_id: CategoryId, caller: CallerDep, if_match: IfMatch) -> Response:
    categories.delete_category(caller=caller, category_id=category_id, if_match=if_match)
    return Response(status_code=204)


handler = lambda_handler(app)
