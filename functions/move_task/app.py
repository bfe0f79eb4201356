"""POST /api/{user_id}/tasks/{task_id}/move: under `parent_id`, right after `after`."""

from fastapi import Response

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, IfMatch, TaskId, UserId, set_task_headers
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import MoveRequest, TaskPublic

app = create_app("MoveTask")


@app.post(
    "/api/{user_id}/tasks/{task_id}/move",
    response_model=TaskPublic,
    responses=problem_responses(400, 401, 403, 404, 412, 413, 415, 422, 503),
    operation_id="moveTask",
    tags=["tasks"],
)
def move_task(user_id: UserId, task_id: TaskId, data: MoveRequest, caller: CallerDep, if_match: IfMatch, response: Response) -> TaskPublic:
    task = tasks.move_task(caller=caller, task_id=task_id, data=data, if_match=if_match)
    set_task_headers(response, task, caller)
    return task


handler = lambda_handler(app)
