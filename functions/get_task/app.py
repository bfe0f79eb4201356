"""GET /api/{user_id}/tasks/{task_id}: one task, with its ETag."""

from fastapi import Response

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, TaskId, UserId, set_task_headers
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import TaskPublic

app = create_app("GetTask")


@app.get(
    "/api/{user_id}/tasks/{task_id}",
    response_model=TaskPublic,
    responses=problem_responses(401, 403, 404, 503),
    operation_id="getTask",
    tags=["tasks"],
)
def get_task(user_id: UserId, task_id: TaskId, caller: CallerDep, response: Response) -> TaskPublic:
    task = tasks.get_task(caller=caller, task_id=task_id)
    set_task_headers(response, task, caller)
    return task


handler = lambda_handler(app)
