"""DELETE /api/{user_id}/tasks/{task_id}: moves the task to the trash (204)."""

from fastapi import Response

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, IfMatch, TaskId, UserId
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses

app = create_app("DeleteTask")


@app.delete(
    "/api/{user_id}/tasks/{task_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 412, 422, 503),
    operation_id="deleteTask",
    tags=["tasks"],
)
def delete_task(user_id: UserId, task_id: TaskId, caller: CallerDep, if_match: IfMatch) -> Response:
    tasks.delete_task(caller=caller, task_id=task_id, if_match=if_match)
    return Response(status_code=204)


handler = lambda_handler(app)
