"""GET /api/{user_id}/trash: trashed tasks, most recently trashed first, keyset-paged."""

from typing import Annotated

from fastapi import Query

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, UserId
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import PageQuery, TrashPage

app = create_app("ListTrash")


@app.get(
    "/api/{user_id}/trash",
    response_model=TrashPage,
    responses=problem_responses(400, 401, 403, 422, 503),
    operation_id="listTrash",
    tags=["trash"],
)
def list_trash(user_id: UserId, caller: CallerDep, page: Annotated[PageQuery, Query()]) -> TrashPage:
    return tasks.list_trash(caller=caller, limit=page.limit, cursor=page.cursor)


handler = lambda_handler(app)
