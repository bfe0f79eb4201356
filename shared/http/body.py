"""The contract's body rules: what a JSON body must be before any field is looked at."""

import json
from typing import Any

from shared.errors import BadRequest, InvalidField, PayloadTooLarge, UnsupportedMediaType

# The contract's limit (413). API Gateway's own, larger payload limit is the local gateway's business.
MAX_BODY_BYTES = 64 * 1024
_JSON_TYPES = ("application/json",)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The contract's body rules, in its order: 413, 415, 400, 422."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is over {MAX_BODY_BYTES} bytes.")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in _JSON_TYPES:
        raise UnsupportedMediaType("The body must be application/json.")
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.") from None
    except RecursionError:
        raise BadRequest("The body is nested too deeply.") from None
    if not isinstance(value, dict):
        raise InvalidField(("body",), "must be a JSON object", "dict_type")
    return value
