"""PATCH /api/{user_id}/tasks/{task_id}: only the fields sent change."""

from fastapi import Response

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, IfMatch, TaskId, UserId, set_task_headers
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import TaskPublic, TaskUpdate

app = create_app("UpdateTask")


@app.patch(
    "/api/{user_id}/tasks/{task_id}",
    response_model=TaskPublic,
    responses=problem_responses(400, 401, 403, 404, 412, 413, 415, 422, 503),
    operation_id="updateTask",
    tags=["tasks"],
)
def update_task(
    user_id: UserId, task_id: TaskId, data: TaskUpdate, caller: CallerDep, if_match: IfMatch, response: Response
) -> TaskPublic:
    task = tasks.update_task(caller=caller, task_id=task_id, data=data, if_match=if_match)
    set_task_headers(response, task, caller)
    return task


handler = lambda_handler(app)
