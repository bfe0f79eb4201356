"""Configuration: the one reader of the environment.

Read lazily (never at import) and cached per process; tests call `get_settings.cache_clear()`
after changing the environment.
"""

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
