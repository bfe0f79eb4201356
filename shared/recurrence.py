"""Recurrence rules: RFC 5545 RRULE values, checked against the contract and expanded by
`dateutil.rrule` in the task's time zone (`zoneinfo` + `tzdata`), never by hand.

The rule runs from its DTSTART (the due_at of the task where the rule was set) in the
task's zone: "every Monday 09:00 Europe/Berlin" stays 09:00 Berlin time across daylight
saving, and a monthly rule on the 31st skips the months without one (RFC 5545).

The completing statement picks a successor's due_at in SQL (one flight), from the
occurrences this module expanded when the rule was written: `expand()` gives the
occurrences strictly after a floor, at most `MAX_STORED`, and whether that is all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil.rrule import rrule, rrulestr

MAX_STORED = 500  # occurrences kept per task: 500 days of a daily rule, 41 years of a monthly one
PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
FREQUENCIES = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
_EXAMPLE_START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def normalise(rule: str) -> str:
    """The rule as stored (upper case), or ValueError saying what is wrong with it."""
    value = rule.strip().upper()
    if value.startswith("RRULE:"):
        raise ValueError("is an RRULE value without the 'RRULE:' prefix")
    parts: dict[str, str] = {}
    for item in value.split(";"):
        name, sep, part = item.partition("=")
        if not sep or not part:
            raise ValueError(f"has a malformed part {item!r}: NAME=VALUE expected")
        if name not in PARTS:
            raise ValueError(f"may not use {name} (allowed: {', '.join(sorted(PARTS))})")
        if name in parts:
            raise ValueError(f"gives {name} twice")
        parts[name] = part
    if parts.get("FREQ") not in FREQUENCIES:
        raise ValueError(f"needs FREQ, one of {', '.join(sorted(FREQUENCIES))}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("may give COUNT or UNTIL, not both")
    if "INTERVAL" in parts and not (parts["INTERVAL"].isdigit() and 1 <= int(parts["INTERVAL"]) <= 999):
        raise ValueError("needs INTERVAL between 1 and 999")
    if "COUNT" in parts and not (parts["COUNT"].isdigit() and int(parts["COUNT"]) >= 1):
        raise ValueError("needs COUNT of at least 1")
    if parts["FREQ"] in ("DAILY", "WEEKLY") and any(day[:1] in "+-0123456789" for day in parts.get("BYDAY", "").split(",") if day):
        raise ValueError("may give BYDAY ordinals (1MO, -1FR) only with FREQ=MONTHLY or YEARLY")
    try:
        _rule(value, "UTC", _EXAMPLE_START)
    except (ValueError, TypeError) as error:  # dateutil's own word on the values
        raise ValueError(f"is not a valid RRULE: {error}") from None
    return value


def check_zone(name: str) -> str:
    """An IANA zone name (`Europe/Berlin`), or ValueError."""
    if name not in _zone_names():
        raise ValueError("is not an IANA time zone name (such as Europe/Berlin or UTC)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone name (such as Europe/Berlin or UTC)") from None
    return name


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


@dataclass(frozen=True)
class Occurrences:
    after: datetime  # every occurrence strictly after this instant (UTC) ...
    times: list[datetime]  # ... up to MAX_STORED of them, ascending, UTC
    complete: bool  # True when `times` holds every one left (COUNT or UNTIL reached)


def expand(rule: str, zone: str, start: datetime, after: datetime) -> Occurrences:
    """The rule's occurrences strictly after `after`, from DTSTART `start`, in `zone`."""
    recurrence = _rule(rule, zone, start)
    local_after = after.astimezone(ZoneInfo(zone))
    times: list[datetime] = []
    for occurrence in recurrence.xafter(local_after, count=MAX_STORED + 1, inc=False):
        times.append(occurrence.astimezone(timezone.utc))
    complete = len(times) <= MAX_STORED
    return Occurrences(after=after.astimezone(timezone.utc), times=times[:MAX_STORED], complete=complete)


def _rule(rule: str, zone: str, start: datetime) -> rrule:
    """dateutil's rule with DTSTART `start` as wall-clock time in `zone` (aware)."""
    return rrulestr(rule, dtstart=start.astimezone(ZoneInfo(zone)))
