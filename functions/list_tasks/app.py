"""GET /api/{user_id}/tasks: the caller's tasks, filtered, sorted, keyset-paged."""

import uuid
from typing import Annotated, Literal

from fastapi import Query

from shared import tasks
from shared.http.app import create_app
from shared.http.deps import CallerDep, Cursor, Limit, UserId
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import InputDateTime, SearchWords, Tag, TaskPage
from shared.task_listing import SortName, Status, TaskFilters

app = create_app("ListTasks")


@app.get(
    "/api/{user_id}/tasks",
    response_model=TaskPage,
    responses=problem_responses(400, 401, 403, 422, 503),
    operation_id="listTasks",
    tags=["tasks"],
)
def list_tasks(
    user_id: UserId,
    caller: CallerDep,
    status: Annotated[Status, Query()] = "all",
    priority: Annotated[Literal["low", "medium", "high"] | None, Query()] = None,
    category_id: Annotated[uuid.UUID | None, Query()] = None,
    parent_id: Annotated[
        uuid.UUID | Literal["none"] | None, Query(description="That task's subtasks, or `none`: top-level tasks only")
    ] = None,
    tag: Annotated[Tag | None, Query(description="Tasks carrying this tag")] = None,
    due_before: Annotated[InputDateTime | None, Query(description="due_at before this (exclusive), RFC 3339")] = None,
    due_after: Annotated[InputDateTime | None, Query(description="due_at at or after this, RFC 3339")] = None,
    q: Annotated[SearchWords | None, Query(description="Every word in title or description, any case")] = None,
    sort: Annotated[
        SortName, Query(description="`-` for descending; ties on id; no due_at sorts last; `position`: the manual order among siblings")
    ] = "-created_at",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TaskPage:
    filters = TaskFilters(
        status=status, priority=priority, category_id=category_id, parent_id=parent_id, tag=tag, due_before=due_before,
        due_after=due_after, q=q,
    )
    return tasks.list_tasks(caller=caller, filters=filters, sort=sort, limit=limit, cursor=cursor)


handler = lambda_handler(app)
