"""POST /api/{user_id}/tasks: a new task (201, Location, ETag)."""

from fastapi import Request, Response

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, IdempotencyDep, UserId, mark_replayed, set_task_headers
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import TaskCreate, TaskPublic

app = create_app("CreateTask")


@app.post(
    "/api/{user_id}/tasks",
    status_code=201,
    response_model=TaskPublic,
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
    operation_id="createTask",
    tags=["tasks"],
)
def create_task(
    user_id: UserId, data: TaskCreate, caller: CallerDep, idempotency: IdempotencyDep, request: Request, response: Response
) -> TaskPublic:
    outcome = tasks.create_task(caller=caller, data=data, idempotency=idempotency)
    task = outcome.value
    mark_replayed(response, outcome)
    response.headers["Location"] = f"{request.url.path}/{task.id}"
    set_task_headers(response, task, caller)
    return task


handler = lambda_handler(app)
