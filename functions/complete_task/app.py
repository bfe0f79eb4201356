"""PATCH /api/{user_id}/tasks/{task_id}/complete: no body toggles; `{"completed": b}` sets."""

from fastapi import Body, Response

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, IdempotencyDep, IfMatch, TaskId, UserId, mark_replayed, set_task_headers
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import CompleteRequest, TaskPublic

app = create_app("CompleteTask")


@app.patch(
    "/api/{user_id}/tasks/{task_id}/complete",
    response_model=TaskPublic,
    responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 415, 422, 503),
    operation_id="completeTask",
    tags=["tasks"],
)
def complete_task(
    user_id: UserId,
    task_id: TaskId,
    caller: CallerDep,
    if_match: IfMatch,
    idempotency: IdempotencyDep,
    response: Response,
    data: CompleteRequest = Body(default=None),  # optional body, but never JSON null
) -> TaskPublic:
    completed = None if data is None else data.completed
    outcome = tasks.complete_task(caller=caller, task_id=task_id, completed=completed, if_match=if_match, idempotency=idempotency)
    task = outcome.value
    mark_replayed(response, outcome)
    set_task_headers(response, task, caller)
    return task


handler = lambda_handler(app)
