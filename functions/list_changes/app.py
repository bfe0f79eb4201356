"""GET /api/{user_id}/changes: the sync feed (a full sync without a cursor, then the changes)."""

from typing import Annotated

from fastapi import Query

from shared import changes
from shared.http.app import create_app
from shared.http.deps import CallerDep, UserId
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import ChangePage, ChangesQuery

app = create_app("ListChanges")


@app.get(
    "/api/{user_id}/changes",
    response_model=ChangePage,
    responses=problem_responses(400, 401, 403, 410, 422, 503),
    operation_id="listChanges",
    tags=["sync"],
)
def list_changes(user_id: UserId, caller: CallerDep, page: Annotated[ChangesQuery, Query()]) -> ChangePage:
    return changes.list_changes(caller=caller, limit=page.limit, cursor=page.cursor)


handler = lambda_handler(app)
