"""Domain errors. They know nothing of HTTP: `shared.http.problems` maps each to a status."""


class DomainError(Exception):
    """Base of every error a client may be told about. `detail` is safe to show."""

    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class QuotaExceeded(Conflict):
    """One more would pass a per-user limit (MAX_TASKS_PER_USER, MAX_CATEGORIES_PER_USER)."""

    code = "quota_exceeded"


class PreconditionFailed(DomainError):
    code = "precondition_failed"

    def __init__(self, detail: str, *, current_version: int) -> None:
        super().__init__(detail)
        self.current_version = current_version


class BadRequest(DomainError):
    code = "bad_request"


class ResyncRequired(DomainError):
    """A sync cursor from before the kept history: the client starts again with a full sync."""

    code = "resync_required"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"


class InvalidField(DomainError):
    """A value breaks a rule only the data can tell (e.g. a category that is not the caller's)."""

    code = "validation_error"

    def __init__(self, loc: tuple[str | int, ...], msg: str, type_: str = "value_error") -> None:
        super().__init__(msg)
        self.errors = [{"loc": list(loc), "msg": msg, "type": type_}]


class DatabaseUnavailable(DomainError):
    code = "database_unavailable"

    def __init__(self, detail: str = "The database is unavailable; retry shortly.", *, retry_after: int = 2) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
