"""The task API as tools for AI agents: what `POST /mcp` offers (shared/http/mcp.py serves it).

Each tool is a REST route's own data function, so one flight like the route; its arguments
are that route's request model (TaskCreate, TaskUpdate, TaskListQuery, ...) with the path's
ids beside the fields, and its result is the object the route answers with. Their JSON
Schemas are those models' own. Nothing here knows MCP or HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from shared import categories, tasks
from shared.auth import Caller
from shared.idempotency import KEY_PATTERN, IdempotencyKey, Outcome
from shared.models import (
    CategoryCreate,
    CategoryPage,
    CategoryPublic,
    PageQuery,
    StrictBool,
    TaskCreate,
    TaskPage,
    TaskPublic,
    TaskUpdate,
    WriteModel,
)
from shared.task_listing import TaskListQuery

TaskId = Annotated[str, Field(description="The task's id (a uuid)", json_schema_extra={"format": "uuid"})]
_KEY = Field(
    default=None,
    description="Optional, 1..255 visible ASCII characters: a retry with the same key and the same arguments within"
    " 24 hours answers what the first call answered and writes nothing again",
)
IdempotencyKeyText = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]


class AddTaskArguments(TaskCreate):
    idempotency_key: IdempotencyKeyText | None = _KEY


class TaskRef(WriteModel):
    task_id: TaskId


class UpdateTaskArguments(TaskUpdate):
    task_id: TaskId


class CompleteTaskArguments(TaskRef):
    completed: StrictBool = Field(default=True, description="false opens it again")


class AddCategoryArguments(CategoryCreate):
    idempotency_key: IdempotencyKeyText | None = _KEY


class Trashed(BaseModel):
    """What `delete_task` answers (the REST route answers 204, no body)."""

    id: uuid.UUID
    in_trash: Literal[True] = True


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    arguments: type[WriteModel]
    result: type[BaseModel]
    run: Callable[[Caller, Any], Outcome[Any]]
    read_only: bool = False
    destructive: bool = False


def _key(tool: str, arguments: BaseModel) -> IdempotencyKey | None:
    """The REST semantics: one key per user, bound to this tool and these arguments."""
    key = getattr(arguments, "idempotency_key", None)
    if key is None:
        return None
    sent = arguments.model_dump(mode="json", exclude_unset=True, exclude={"idempotency_key"})
    return IdempotencyKey.of(key, route=f"tool {tool}", target="", body=sent)


def _fields(arguments: BaseModel, model: type[BaseModel], *ids: str) -> Any:
    """The route's own request model from the tool's arguments (only those sent: PATCH)."""
    return model.model_validate(arguments.model_dump(exclude_unset=True, exclude={"idempotency_key", *ids}))


def _done(value: Any) -> Outcome[Any]:
    return Outcome(value)


def _delete(caller: Caller, a: TaskRef) -> Outcome[Trashed]:
    tasks.delete_task(caller=caller, task_id=a.task_id)
    return Outcome(Trashed(id=uuid.UUID(a.task_id)))


TOOLS: tuple[Tool, ...] = (
    Tool(
        "add_task",
        "Add a task",
        "Creates a task for the signed-in user and answers it as stored (id, version, timestamps).",
        AddTaskArguments,
        TaskPublic,
        lambda caller, a: tasks.create_task(caller=caller, data=_fields(a, TaskCreate), idempotency=_key("add_task", a)),
    ),
    Tool(
        "list_tasks",
        "List tasks",
        "The user's tasks, filtered and sorted, one page at a time: pass `next_cursor` back as `cursor` (with the"
        " same filters and sort) for the next page; null means there is none.",
        TaskListQuery,
        TaskPage,
        lambda caller, a: _done(
            tasks.list_tasks(caller=caller, filters=a.filters(), sort=a.sort, limit=a.limit, cursor=a.cursor)
        ),
        read_only=True,
    ),
    Tool(
        "get_task",
        "Get a task",
        "One task by its id.",
        TaskRef,
        TaskPublic,
        lambda caller, a: _done(tasks.get_task(caller=caller, task_id=a.task_id)),
        read_only=True,
    ),
    Tool(
        "update_task",
        "Update a task",
        "Changes only the fields given (null clears a field that may be empty); the others stay as they are.",
        UpdateTaskArguments,
        TaskPublic,
        lambda caller, a: _done(tasks.update_task(caller=caller, task_id=a.task_id, data=_fields(a, TaskUpdate, "task_id"))),
    ),
    Tool(
        "complete_task",
        "Complete a task",
        "Marks the task done (or, with completed false, open again). Completing a recurring task creates its next"
        " occurrence; completing a task completes its open subtasks.",
        CompleteTaskArguments,
        TaskPublic,
        lambda caller, a: tasks.complete_task(caller=caller, task_id=a.task_id, completed=a.completed),
    ),
    Tool(
        "delete_task",
        "Delete a task",
        "Moves the task to the trash, from which `restore_task` brings it back until it is deleted for good.",
        TaskRef,
        Trashed,
        _delete,
        destructive=True,
    ),
    Tool(
        "restore_task",
        "Restore a task",
        "Brings a task back from the trash.",
        TaskRef,
        TaskPublic,
        lambda caller, a: tasks.restore_task(caller=caller, task_id=a.task_id),
    ),
    Tool(
        "list_categories",
        "List categories",
        "The user's categories by name, one page at a time (`next_cursor` back as `cursor`).",
        PageQuery,
        CategoryPage,
        lambda caller, a: _done(categories.list_categories(caller=caller, limit=a.limit, cursor=a.cursor)),
        read_only=True,
    ),
    Tool(
        "add_category",
        "Add a category",
        "Creates a category (names are unique per user, whatever their case).",
        AddCategoryArguments,
        CategoryPublic,
        lambda caller, a: categories.create_category(
            caller=caller, data=_fields(a, CategoryCreate), idempotency=_key("add_category", a)
        ),
    ),
)
