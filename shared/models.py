"""Tables and the API's shapes.

Tables describe storage; the `*Create`/`*Replace`/`*Update` models are the allow-list of
what a client may write (anything else is 422: no mass assignment); `*Public` is what a
client reads. Schema changes are Alembic migrations (infra/migrations), never create_all.
"""

import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field as PydanticField, PrivateAttr, Strict, StringConstraints, create_model
from pydantic.fields import FieldInfo
from sqlalchemy import Column, DateTime, SmallInteger, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from shared import recurrence

# ---------------------------------------------------------------------------- rules


def _rfc3339(value: object) -> object:
    """Only an RFC 3339 string with an offset is a datetime here (no epoch numbers). An
    aware `datetime` (a database row's) passes: JSON cannot make one."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError("must be an RFC 3339 date-time string with an offset") from error
    if parsed.tzinfo is None or "T" not in value.upper():
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return parsed


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


_NO_NUL = r"^[^\x00]*$"  # said in the schema too; Postgres text cannot hold NUL
# What `strip_whitespace` removes (pydantic-core trims Unicode White_Space: not ECMA's `\s`,
# not Python's `str.strip`).
_WS = r"\t\n\x0b\x0c\r\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _trimmed_length(max_length: int) -> Any:
    """The document's form of `strip_whitespace=True, min_length=1, max_length=n`: the length
    counts after trimming, which `minLength`/`maxLength` (raw length) cannot say, so a pattern
    does: white space, 1..n characters that start and end with a non-space, white space."""
    edge = rf"[^\x00{_WS}]"
    pattern = rf"^[{_WS}]*{edge}(?:[^\x00]{{0,{max_length - 2}}}{edge})?[{_WS}]*$"

    def rewrite(schema: dict[str, Any]) -> None:
        schema.pop("minLength", None)
        schema.pop("maxLength", None)
        schema["pattern"] = pattern

    return PydanticField(json_schema_extra=rewrite)


Text = Annotated[str, Strict(), StringConstraints(pattern=_NO_NUL)]
Title = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NO_NUL), _trimmed_length(200)]
Description = Annotated[str, Strict(), StringConstraints(max_length=4000, pattern=_NO_NUL)]
Tag = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=50, pattern=_NO_NUL), _trimmed_length(50)]
Tags = Annotated[list[Tag], PydanticField(max_length=20), AfterValidator(_unique)]
SearchWords = Annotated[str, Strict(), StringConstraints(max_length=200, pattern=_NO_NUL)]
CategoryName = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=_NO_NUL), _trimmed_length(100)]
Color = Annotated[str, Strict(), StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]
# In: an RFC 3339 string with an offset. Out: UTC.
Timestamp = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_utc)]
InputDateTime = Timestamp  # the name the query parameters use
PriorityName = Literal["low", "medium", "high"]
StrictBool = Annotated[bool, Strict()]
Recurrence = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=500, pattern=_NO_NUL),
    AfterValidator(recurrence.normalise),
]
TimeZoneName = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=64, pattern=_NO_NUL),
    AfterValidator(recurrence.check_zone),
    PydanticField(description="The IANA time zone the recurrence runs in", examples=["Europe/Berlin"]),
]


class Priority(IntEnum):
    """Stored as a small integer so that `sort=priority` orders low < medium < high."""

    low = 0
    medium = 1
    high = 2


def _timestamptz() -> Column:
    return Column(DateTime(timezone=True), nullable=False)


# ---------------------------------------------------------------------------- tables


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: str = Field(primary_key=True, max_length=255)  # the token's `sub`
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(sa_column=_timestamptz())
    # The change log's per-user number and the time of its last entry (migration 0008).
    last_change: int = 0
    last_change_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # Upper bounds of what the user holds, raised by each insert (migration 0009: the limits).
    tasks_held: int = 0
    categories_held: int = 0


class Owned(SQLModel):
    """What every row a user owns starts with: its id and its owner."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: str = Field(foreign_key="users.id", max_length=255)


class Category(Owned, table=True):
    __tablename__ = "categories"
    name: str = Field(max_length=100)
    color: str | None = Field(default=None, max_length=7)
    created_at: datetime = Field(sa_column=_timestamptz())
    updated_at: datetime = Field(sa_column=_timestamptz())
    version: int = 1


class Task(Owned, table=True):
    __tablename__ = "tasks"
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    completed: bool = False
    completed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    priority: int = Field(default=Priority.medium, sa_column=Column(SmallInteger, nullable=False))
    due_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    category_id: uuid.UUID | None = None
    tags: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(String(50)), nullable=False, server_default=text("'{}'")),
    )
    created_at: datetime = Field(sa_column=_timestamptz())
    updated_at: datetime = Field(sa_column=_timestamptz())
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    version: int = 1
    recurrence: str | None = Field(default=None, max_length=500)
    timezone: str = Field(default="UTC", max_length=64)
    series_root: uuid.UUID | None = None  # the first task of its series (series_id, generated, is this or id)
    rule_start: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # The rule's occurrences after `occurrences_after`, as dateutil expanded them (shared/recurrence.py).
    occurrences: list[datetime] | None = Field(default=None, sa_column=Column(ARRAY(DateTime(timezone=True))))
    occurrences_after: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    occurrences_complete: bool = False
    successor_of: uuid.UUID | None = Field(default=None, unique=True)
    remind_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reminded_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    parent_id: uuid.UUID | None = None  # (owner, parent) -> tasks (owner, id); tree rules by trigger (0009)
    position: str = Field(sa_column=Column(String, nullable=False))  # a fractional key among siblings, COLLATE "C"
    trashed_with: uuid.UUID | None = None  # the task whose trashing trashed this one: restore's batch


class ChangeLogEntry(SQLModel, table=True):
    """One change of a user's task or category, numbered per user (written by triggers)."""

    __tablename__ = "change_log"
    user_id: str = Field(primary_key=True, max_length=255)
    seq: int = Field(primary_key=True)
    kind: str = Field(max_length=8)  # task | category
    object_id: uuid.UUID
    action: str = Field(max_length=9)  # created | updated | completed | deleted | restored
    at: datetime = Field(sa_column=_timestamptz())
    published_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


# ---------------------------------------------------------------------------- API shapes


class WriteModel(SQLModel):
    """Requests: unknown and server-set fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class TaskFields(SQLModel):
    """What a client may write about a task: each field once, with its rule and default.
    (The table, `Task`, stores priority as a number: `Priority` is the one mapping.)"""

    title: Title
    description: Description | None = None
    completed: StrictBool = False
    priority: PriorityName = "medium"
    due_at: Timestamp | None = None
    category_id: uuid.UUID | None = None
    tags: Tags = PydanticField(default_factory=list)
    recurrence: Recurrence | None = PydanticField(
        default=None,
        description="An RFC 5545 RRULE value (no `RRULE:` prefix): FREQ=DAILY|WEEKLY|MONTHLY|YEARLY, optional INTERVAL,"
        " COUNT or UNTIL (UTC, ending in Z), BYDAY, BYMONTHDAY, BYMONTH, BYSETPOS, WKST. Needs due_at.",
        examples=["FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=12"],
    )
    timezone: TimeZoneName = "UTC"
    remind_at: Timestamp | None = PydanticField(
        default=None, description="When to remind; not after due_at", examples=["2026-12-01T08:45:00Z"]
    )
    parent_id: uuid.UUID | None = PydanticField(
        default=None,
        description="Makes this a subtask of another live task of yours (depth at most 5 counting the top task, at most 200"
        " direct subtasks, no cycles); a new parent puts the task last among its new siblings",
    )


class TaskCreate(TaskFields, WriteModel):
    """POST and PUT: every writable field; an absent optional one takes its default."""


def _all_optional(model: type[WriteModel], name: str, doc: str) -> type[WriteModel]:
    """`model` with every field optional and defaulting to None: sent or not sent. `null`
    itself is allowed only where the field is nullable (the annotation is kept)."""
    fields = {
        field_name: (info.annotation, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
        for field_name, info in model.model_fields.items()
    }
    return create_model(name, __base__=WriteModel, __doc__=doc, __module__=__name__, **fields)  # type: ignore[call-overload]


TaskUpdate = _all_optional(TaskCreate, "TaskUpdate", "PATCH: only the fields sent change. `null` is allowed where the field is nullable.")


class CompleteRequest(WriteModel):
    completed: StrictBool


class MoveRequest(WriteModel):
    """Where a task goes: under `parent_id` (null: the top level), right after `after` (null: first)."""

    parent_id: uuid.UUID | None = PydanticField(description="The new parent (null: a top-level task)")
    after: uuid.UUID | None = PydanticField(description="The live sibling under that parent to follow (null: first)")


class TaskPublic(TaskFields):
    """A task as every route shows it: the writable fields and what the server sets."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    # Read back as stored: the rule and the zone were checked when they were written
    # (parsing every rule of a page again would cost each read a dateutil parse per row).
    recurrence: str | None
    timezone: str
    id: uuid.UUID
    series_id: uuid.UUID = PydanticField(description="The first task of its recurring series (its own id otherwise)")
    completed_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    version: int
    position: str = PydanticField(
        description="Its place among its siblings (same parent_id): keys compare byte-wise; set by create (last) and by move"
    )

    # Not a field: what the `Link: <...>; rel="next"` header names, when the task has one.
    _successor_id: uuid.UUID | None = PrivateAttr(default=None)

    @property
    def successor_id(self) -> uuid.UUID | None:
        return self._successor_id

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "TaskPublic":
        """From a row of `tasks` (a database row, or one stored as JSON for a replay)."""
        task = cls.model_validate({**row, "priority": Priority(row["priority"]).name})
        successor = row.get("successor_id")
        task._successor_id = uuid.UUID(str(successor)) if successor is not None else None
        return task


class TrashedTaskPublic(TaskPublic):
    deleted_at: Timestamp


class TaskPage(SQLModel):
    items: list[TaskPublic]
    next_cursor: str | None


class TrashPage(SQLModel):
    items: list[TrashedTaskPublic]
    next_cursor: str | None


class CategoryFields(SQLModel):
    """What a client may write about a category, each field once."""

    name: CategoryName
    color: Color | None = None


class CategoryCreate(CategoryFields, WriteModel):
    pass


CategoryUpdate = _all_optional(CategoryCreate, "CategoryUpdate", "PATCH: only the fields sent change.")


class CategoryPublic(CategoryFields):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    id: uuid.UUID
    task_count: int
    created_at: Timestamp
    updated_at: Timestamp
    version: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "CategoryPublic":
        """From a row of `categories` with its `task_count`."""
        return cls.model_validate(row)


class CategoryPage(SQLModel):
    items: list[CategoryPublic]
    next_cursor: str | None


class ChangeItem(SQLModel):
    """One entry of the sync feed: an object as GET shows it now (`upsert`), or gone (`delete`)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    kind: Literal["task", "category"]
    op: Literal["upsert", "delete"]
    id: uuid.UUID
    data: TaskPublic | CategoryPublic | None = PydanticField(description="The object as GET shows it; null for a delete")
    at: Timestamp = PydanticField(description="When it changed (for a full sync's upserts: the object's updated_at)")


class ChangePage(SQLModel):
    items: list[ChangeItem]
    next_cursor: str = PydanticField(description="Always set: the cursor of the next call, even when `items` is empty")
    has_more: bool = PydanticField(description="More is ready now: call again at once with `next_cursor`")


class PageQuery(WriteModel):
    """Which page of a list: its size, and the cursor of the page before (keyset paging).
    A route's query parameters, and an MCP tool's arguments (extra ones are refused)."""

    limit: int = PydanticField(default=50, ge=1, le=200, description="Page size")
    cursor: str | None = PydanticField(default=None, max_length=1024, description="The previous page's `next_cursor`")


class ChangesQuery(PageQuery):
    """The sync feed's page: larger than a list's (a replica catches up in few calls)."""

    limit: int = PydanticField(default=100, ge=1, le=500, description="Page size")


class ProtectedResourceMetadata(SQLModel):
    """RFC 9728: the MCP endpoint as an OAuth protected resource, and who issues its tokens."""

    resource: str = PydanticField(examples=["https://abc123.execute-api.eu-west-1.amazonaws.com/mcp"])
    authorization_servers: list[str]
    bearer_methods_supported: list[str] = ["header"]
    resource_name: str = "Task API"


class Health(SQLModel):
    status: Literal["ok"]
    database: Literal["ok"]
