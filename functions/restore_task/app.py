"""POST /api/{user_id}/trash/{task_id}/restore: the task is back."""

from fastapi import Response

from shared import tasks
from shared.http.app import create_app, lambda_handler
from shared.http.deps import CallerDep, TaskId, UserId, set_etag
from shared.http.problems import problem_responses
from shared.models import TaskPublic

app = create_app("RestoreTask")


@app.post(
    "/api/{user_id}/trash/{task_id}/restore",
    response_model=TaskPublic,
    responses=problem_responses(401, 403, 404, 503),
    operation_id="restoreTask",
    tags=["trash"],
)
def restore_task(user_id: UserId, task_id: TaskId, caller: CallerDep, response: Response) -> TaskPublic:
    task = tasks.restore_task(caller=caller, task_id=task_id)
    set_etag(response, task.version)
    return task


handler = lambda_handler(app)
