"""Configuration: the one reader of the environment for what runs in a Lambda.

Read lazily (never at import) and cached per process; tests call `get_settings.cache_clear()`
after changing the environment. (The development tools have their own, in
shared/local/settings.py.)

A plain pydantic model filled the way pydantic-settings' `BaseSettings` fills one with this
configuration (each field from the environment variable of the same name, any case; values
passed to `Settings(...)` win), without importing pydantic-settings: ~20 ms of every cold
start for a handful of flat fields.
"""

import os
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def _from_environment(names: Any) -> dict[str, str]:
    """The variables named like a field, matched case-insensitively (the last one wins)."""
    found = {key.lower(): value for key, value in os.environ.items()}
    return {name: found[name] for name in names if name in found}


class _FromEnvironment(BaseModel):
    """Each field from the environment variable of its name; values passed win."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(type(self).model_fields), **values})


class Settings(_FromEnvironment):
    # Where the database is: the URL itself, or where to read it from at cold start.
    database_url: SecretStr | None = None
    database_url_secret_arn: str | None = None
    database_url_parameter: str | None = None
    # Seconds one connect may take in all, retries for a waking database included.
    db_connect_timeout: float = Field(default=10.0, gt=0, le=60)
    # Seconds any one statement may run before Postgres cancels it.
    db_statement_timeout: float = Field(default=5.0, gt=0, le=300)
    trash_retention_days: int = Field(default=30, ge=0)
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    # Published change-log entries older than this are pruned by the cleanup; a sync
    # cursor behind what is kept answers 410 resync_required (shared/changes.py).
    changes_retention_days: int = Field(default=30, ge=0)
    # Signs list cursors; when unset a key is derived from the database URL.
    cursor_secret: SecretStr | None = None
    # The EventBridge bus the scheduled publishers put events on (shared/events.py); unset
    # locally: the events go to the log (and, from the tools, to .local/events.jsonl).
    event_bus_name: str | None = None
    # A reminder found more than this many hours after its remind_at is marked sent
    # without an event (shared/reminders.py): a long outage does not flood the users.
    reminder_max_late_hours: int = Field(default=24, ge=1)
    # The token issuer (the template's JwtIssuer): what the MCP endpoint's protected resource
    # metadata names as its authorization server (functions/protected_resource).
    jwt_issuer: str | None = None
    # What one user may hold (trash included): one more is 409 quota_exceeded. The database
    # holds the rule (migration 0009); every flight tells it these (shared/db.py).
    max_tasks_per_user: int = Field(default=10_000, ge=1)
    max_categories_per_user: int = Field(default=500, ge=1)


class ServiceNames(_FromEnvironment):
    """What the logs and metrics are named: Powertools' own variables (template.yaml sets
    them), with the defaults of a local run. Apart from `Settings` because it is read at
    import (the logger exists before any request), and a bad setting elsewhere must not
    break that."""

    powertools_service_name: str = "todo-api"
    powertools_metrics_namespace: str = "TodoApi"


_chosen: Settings | None = None


def use_settings(settings: Settings | None) -> None:
    """`get_settings()` is `settings` from now on, in this process (None: the environment's again).

    For a process that runs the functions itself: `todo-api serve` gives them the database
    it started this way instead of writing DATABASE_URL into its own environment.
    """
    global _chosen
    _chosen = settings
    get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return _chosen if _chosen is not None else Settings()
