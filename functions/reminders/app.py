"""Scheduled (EventBridge): puts each due task reminder on the API's bus once, and marks it sent.

Not HTTP: the event is EventBridge's scheduled event. Anything that is not an EventBridge
event is refused with an error before any work. Stops before the function's own time runs
out; the next run continues (`finished: false`). The work is shared/reminders.py.
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics
from shared.reminders import run_reminders


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled = parse(event=event, model=EventBridgeModel)
    with logger.append_context_keys(scheduled_at=scheduled.time.isoformat(), rule=next(iter(scheduled.resources), None)):
        return run_reminders(remaining_ms=context.get_remaining_time_in_millis)
