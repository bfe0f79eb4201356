"""Putting the API's events on its EventBridge bus: one publisher for every scheduled job
that publishes (Reminders now, PublishChanges next).

`publisher()` chooses, once per process, from the settings:
- `EVENT_BUS_NAME` set (every deployed publisher: template.yaml): EventBridge `PutEvents` on
  that bus, in chunks of 10 entries (the API's limit), the chunks of one call sent side by
  side, each failed entry tried again a bounded number of times. boto3 is imported only here,
  only then (it costs a cold start ~150 ms that the HTTP functions never pay).
- no bus (a local run): every event to the log, and, when a tool set one with
  `use_local_events_file` (`todo-api reminders`, `todo-api serve`: `<local dir>/events.jsonl`),
  appended to that file as the envelope EventBridge would deliver, one JSON object a line.

Why the file is given by the tools and is not a `Settings` field: the functions' settings
are what a Lambda reads, and no Lambda ever writes a local file; the local directory is the
tools' knowledge (shared/local/settings.py). So the tools hand the file in, as `serve`
hands the functions its embedded database through `use_settings`.

`publish(events)` answers, for each event in order, None when it was put or the error code
that kept it off the bus (after the retries): the caller decides what a failure means (a
reminder stays unmarked and is sent again by the next run).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from shared.observability import logger
from shared.settings import get_settings

SOURCE = "todo-api"
CHUNK = 10  # PutEvents takes at most 10 entries a call
ATTEMPTS = 3  # a failed entry is tried at most this often in one publish (backoff between)
BACKOFF_SECONDS = (0.05, 0.2)
PARALLEL_CALLS = 8  # PutEvents calls of one publish in flight at once


@dataclass(frozen=True)
class Event:
    detail_type: str
    detail: dict[str, Any]
    source: str = SOURCE
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def entry(self, bus: str) -> dict[str, Any]:
        """The PutEvents request entry."""
        return {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, separators=(",", ":")),
            "EventBusName": bus,
            "Time": self.time,
        }

    def envelope(self) -> dict[str, Any]:
        """The event as a rule's target receives it from EventBridge (its own `id` per put)."""
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": self.detail_type,
            "source": self.source,
            "time": self.time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resources": [],
            "detail": self.detail,
        }


class Publisher(Protocol):
    def publish(self, events: Sequence[Event]) -> list[str | None]:
        """Per event, in order: None (put) or the error code that kept it off the bus."""
        ...


class EventBridgePublisher:
    """PutEvents on one bus; `client` is a boto3 `events` client (made here when not given)."""

    def __init__(self, bus_name: str, client: Any = None, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.bus_name = bus_name
        self._client = client
        self._sleep = sleep
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3  # only a publisher with a bus pays for it

                self._client = boto3.client("events")
            return self._client

    def publish(self, events: Sequence[Event]) -> list[str | None]:
        outcome: list[str | None] = ["NotSent"] * len(events)
        pending = list(range(len(events)))
        for attempt in range(ATTEMPTS):
            if attempt:
                self._sleep(BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)])
            chunks = [pending[i : i + CHUNK] for i in range(0, len(pending), CHUNK)]
            if len(chunks) == 1:
                answers = [self._put(events, chunks[0])]
            else:
                with ThreadPoolExecutor(max_workers=min(PARALLEL_CALLS, len(chunks))) as pool:
                    answers = list(pool.map(lambda chunk: self._put(events, chunk), chunks))
            pending = []
            for chunk, codes in zip(chunks, answers):
                for index, code in zip(chunk, codes):
                    outcome[index] = code
                    if code is not None:
                        pending.append(index)
            if not pending:
                break
        return outcome

    def _put(self, events: Sequence[Event], indexes: list[int]) -> list[str | None]:
        """One PutEvents call; per entry None or its ErrorCode (the whole call failing: its
        error's code for every entry, botocore having retried what it retries)."""
        entries = [events[i].entry(self.bus_name) for i in indexes]
        try:
            answer = self.client.put_events(Entries=entries)
        except Exception as error:  # noqa: BLE001 - the entries stay unsent; the caller counts them
            code = getattr(error, "response", {}).get("Error", {}).get("Code") or type(error).__name__
            logger.warning("PutEvents failed", extra={"error": code, "entries": len(entries)})
            return [code] * len(entries)
        results = answer.get("Entries") or []
        if len(results) != len(entries):  # never by the API's contract; never count as put
            return ["MissingResult"] * len(entries)
        return [result.get("ErrorCode") if not result.get("EventId") else None for result in results]


class LocalPublisher:
    """No bus: each event to the log, and appended to `path` (when given) as one JSON line."""

    _appending = threading.Lock()  # serve runs several jobs at once: lines never interleave

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def publish(self, events: Sequence[Event]) -> list[str | None]:
        envelopes = [event.envelope() for event in events]
        for envelope in envelopes:
            logger.info("event", extra={"event": envelope})
        if self.path is not None and envelopes:
            text = "".join(json.dumps(envelope, separators=(",", ":")) + "\n" for envelope in envelopes)
            with self._appending:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as file:
                    file.write(text)
        return [None] * len(events)


_local_file: Path | None = None


def use_local_events_file(path: Path | None) -> None:
    """Where a local run (no EVENT_BUS_NAME) appends its events; None: the log only."""
    global _local_file
    _local_file = path
    publisher.cache_clear()


@lru_cache(maxsize=1)
def publisher() -> Publisher:
    bus = get_settings().event_bus_name
    if bus:
        return EventBridgePublisher(bus)
    return LocalPublisher(_local_file)


def reset() -> None:
    """Forget the chosen publisher (tests, or after the settings changed)."""
    publisher.cache_clear()
