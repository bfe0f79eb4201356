"""Scheduled (EventBridge): deletes for good the expired trash and idempotency records.

Not HTTP: the event is EventBridge's scheduled event (anything else is refused before any
work, shared/scheduled.py). Stops before the function's own time runs out; the next run
continues (`finished: false`). The work is shared/cleanup.py.
"""

from shared.cleanup import run_cleanup
from shared.scheduled import scheduled_handler

handler = scheduled_handler("Cleanup", run_cleanup)
