"""Configuration: the one reader of the environment.

Read lazily (never at import) and cached per process; tests call `get_settings.cache_clear()`
after changing the environment.

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


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)

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
    cors_allow_origins: str = ""
    # Signs list cursors; when unset a key is derived from the database URL.
    cursor_secret: SecretStr | None = None

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(type(self).model_fields), **values})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
