"""POST /api/{user_id}/categories: a new category (201; 409 on a duplicate name)."""

from fastapi import Request, Response

from shared import categories
from shared.http.app import create_app
from shared.http.deps import CallerDep, IdempotencyDep, UserId, mark_replayed, set_etag
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import CategoryCreate, CategoryPublic

app = create_app("CreateCategory")


@app.post(
    "/api/{user_id}/categories",
    status_code=201,
    response_model=CategoryPublic,
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
    operation_id="createCategory",
    tags=["categories"],
)
def create_category(
    user_id: UserId, data: CategoryCreate, caller: CallerDep, idempotency: IdempotencyDep, request: Request, response: Response
) -> CategoryPublic:
    outcome = categories.create_category(caller=caller, data=data, idempotency=idempotency)
    category = outcome.value
    mark_replayed(response, outcome)
    response.headers["Location"] = f"{request.url.path}/{category.id}"
    set_etag(response, category.version)
    return category


handler = lambda_handler(app)
