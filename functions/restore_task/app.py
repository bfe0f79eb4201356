"""POST /api/{user_id}/trash/{task_id}/restore: the task is back."""

from fastapi import Response

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, IdempotencyDep, TaskId, UserId, mark_replayed, set_task_headers
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import TaskPublic

app = create_app("RestoreTask")


@app.post(
    "/api/{user_id}/trash/{task_id}/restore",
    response_model=TaskPublic,
    responses=problem_responses(400, 401, 403, 404, 409, 503),
    operation_id="restoreTask",
    tags=["trash"],
)
def restore_task(
    user_id: UserId, task_id: TaskId, caller: CallerDep, idempotency: IdempotencyDep, response: Response
) -> TaskPublic:
    outcome = tasks.restore_task(caller=caller, task_id=task_id, idempotency=idempotency)
    task = outcome.value
    mark_replayed(response, outcome)
    set_task_headers(response, task, caller)
    return task


handler = lambda_handler(app)
