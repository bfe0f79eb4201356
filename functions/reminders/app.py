"""Scheduled (EventBridge): puts each due task reminder on the API's bus once, and marks it sent.

Not HTTP: the event is EventBridge's scheduled event (anything else is refused before any
work, shared/scheduled.py). Stops before the function's own time runs out; the next run
continues (`finished: false`). The work is shared/reminders.py.
"""

from shared.reminders import run_reminders
from shared.scheduled import scheduled_handler

handler = scheduled_handler("Reminders", run_reminders)
