"""Keyset cursors: opaque, tamper-evident, and bound to the query that made them.

A cursor carries the sort key values of the last row of a page. It is signed (HMAC) over
those values *and* the query it belongs to (resource, caller, sort, filters), so a cursor
that was edited, forged, or reused with other filters or another sort is refused (400).
The key is `CURSOR_SECRET` when set, else derived from the database URL, a secret every
function already holds (rotating it only makes old cursors restart at 400).
"""

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from shared.errors import BadRequest
from shared.secrets import database_url
from shared.settings import get_settings

_MAC_BYTES = 16


def _key() -> bytes:
    secret = get_settings().cursor_secret
    material = secret.get_secret_value() if secret else "derived:" + database_url()
    return hashlib.sha256(b"todo-api cursor key\x00" + material.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: bytes, binding: dict[str, Any]) -> bytes:
    bound = json.dumps(binding, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(_key(), payload + b"\x00" + bound, hashlib.sha256).digest()[:_MAC_BYTES]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value) if not isinstance(value, (int, type(None))) else value


def encode_cursor(position: list[Any], binding: dict[str, Any]) -> str:
    payload = json.dumps([_plain(v) for v in position], separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(payload, binding))}"


def decode_cursor(cursor: str, binding: dict[str, Any]) -> list[Any]:
    """The position a cursor holds, or 400 when it is not one this query made."""
    try:
        payload_text, mac_text = cursor.split(".")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (ValueError, UnicodeEncodeError):
        raise BadRequest("The cursor is malformed.") from None
    if not hmac.compare_digest(mac, _mac(payload, binding)):
        raise BadRequest("The cursor does not belong to this query (other filters, sort or user).")
    position = json.loads(payload)
    if not isinstance(position, list):
        raise BadRequest("The cursor is malformed.")
    return position
