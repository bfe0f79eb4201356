"""Scheduled (EventBridge): puts the change log on the API's bus, in order per user, at least once.

Not HTTP: the event is EventBridge's scheduled event (anything else is refused before any
work, shared/scheduled.py). Stops before the function's own time runs out; the next run
continues (`finished: false`). The work is shared/publish_changes.py.
"""

from shared.publish_changes import run_publish
from shared.scheduled import scheduled_handler

handler = scheduled_handler("PublishChanges", run_publish)
