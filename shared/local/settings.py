"""The development tools' configuration: the one reader of the environment in shared/local/.

(What a function reads is shared/settings.py's `Settings`; this is what `todo-api serve`,
`todo-api token` and the launchers of shared/local/ read.) Read at each call, never cached:
the tests and bench point TODO_API_LOCAL_DIR and the issuer elsewhere in the middle of a run,
and the next token minted must follow. A variable set to the empty string counts as unset.

The child processes these tools start (Postgres, PgBouncer, `todo-api serve`) get their
environment from `child_environment`, the one place that copies this process's.

Development tooling only: no Lambda function imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.template import REPO_ROOT

LOCAL_DIR_ENV = "TODO_API_LOCAL_DIR"


@dataclass(frozen=True)
class LocalSettings:
    # JWT_ISSUER / JWT_AUDIENCE / JWT_JWKS_URL: the issuer `serve` trusts instead of the local
    # one (serve's options win); JWT_AUDIENCE is also what the local issuer mints for.
    jwt_issuer: str | None
    jwt_audience: str | None
    jwt_jwks_url: str | None
    # CORS_ALLOW_ORIGINS, comma separated: the origins of the template's CorsConfiguration
    # (the CorsAllowOrigins parameter in AWS); none: CORS off.
    cors_allow_origins: tuple[str, ...]
    # TODO_API_LOCAL_DIR: where local state lives (issuer key, embedded data); else `.local/`.
    local_dir: Path
    # PGBOUNCER: the pgbouncer binary to run; else it is looked for on PATH (and the sbins).
    pgbouncer: str | None
    path: str


def local_settings() -> LocalSettings:
    return LocalSettings(
        jwt_issuer=os.environ.get("JWT_ISSUER") or None,
        jwt_audience=os.environ.get("JWT_AUDIENCE") or None,
        jwt_jwks_url=os.environ.get("JWT_JWKS_URL") or None,
        cors_allow_origins=tuple(o.strip() for o in os.environ.get("CORS_ALLOW_ORIGINS", "").split(",") if o.strip()),
        local_dir=Path(os.environ.get(LOCAL_DIR_ENV) or REPO_ROOT / ".local").absolute(),
        pgbouncer=os.environ.get("PGBOUNCER") or None,
        path=os.environ.get("PATH", ""),
    )


def child_environment(
    *, without: Iterable[str] = (), without_prefix: str | None = None, **values: str
) -> dict[str, str]:
    """This process's environment for a child it starts: the names in `without` and those
    starting with `without_prefix` left out, then `values` set."""
    dropped = set(without)
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not (without_prefix and name.startswith(without_prefix))
    }
    environment.update(values)
    return environment
