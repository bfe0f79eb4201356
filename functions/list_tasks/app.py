"""GET /api/{user_id}/tasks: the caller's tasks, filtered, sorted, keyset-paged."""

from typing import Annotated

from fastapi import Query

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, UserId
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import TaskPage
from shared.task_listing import TaskListQuery

app = create_app("ListTasks")


@app.get(
    "/api/{user_id}/tasks",
    response_model=TaskPage,
    responses=problem_responses(400, 401, 403, 422, 503),
    operation_id="listTasks",
    tags=["tasks"],
)
def list_tasks(user_id: UserId, caller: CallerDep, query: Annotated[TaskListQuery, Query()]) -> TaskPage:
    return tasks.list_tasks(caller=caller, filters=query.filters(), sort=query.sort, limit=query.limit, cursor=query.cursor)


handler = lambda_handler(app)
