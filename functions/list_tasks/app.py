"""GET /api/{user_id}/tasks: the caller's tasks, newest first, keyset-paged."""

from typing import Annotated, Literal

from fastapi import Query

from shared import tasks
from shared.http.app import create_app, lambda_handler
from shared.http.deps import CallerDep, Cursor, Limit, UserId
from shared.http.problems import problem_responses
from shared.models import TaskPage

app = create_app("ListTasks")


@app.get(
    "/api/{user_id}/tasks",
    response_model=TaskPage,
    responses=problem_responses(400, 401, 403, 422, 503),
    operation_id="listTasks",
    tags=["tasks"],
)
def list_tasks(
    user_id: UserId,
    caller: CallerDep,
    status: Annotated[Literal["all", "pending", "completed"], Query()] = "all",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TaskPage:
    return tasks.list_tasks(caller=caller, status=status, limit=limit, cursor=cursor)


handler = lambda_handler(app)
