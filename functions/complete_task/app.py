"""PATCH /api/{user_id}/tasks/{task_id}/complete: no body toggles; `{"completed": b}` sets."""

from fastapi import Body, Response

from shared import tasks
from shared.http.app import create_app, lambda_handler
from shared.http.deps import CallerDep, IfMatch, TaskId, UserId, set_etag
from shared.http.problems import problem_responses
from shared.models import CompleteRequest, TaskPublic

app = create_app("CompleteTask")


@app.patch(
    "/api/{user_id}/tasks/{task_id}/complete",
    response_model=TaskPublic,
    responses=problem_responses(400, 401, 403, 404, 412, 413, 415, 422, 503),
    operation_id="completeTask",
    tags=["tasks"],
)
def complete_task(
    user_id: UserId,
    task_id: TaskId,
    caller: CallerDep,
    if_match: IfMatch,
    response: Response,
    data: CompleteRequest | None = Body(default=None),
) -> TaskPublic:
    completed = None if data is None else data.completed
    task = tasks.complete_task(caller=caller, task_id=task_id, completed=completed, if_match=if_match)
    set_etag(response, task.version)
    return task


handler = lambda_handler(app)
