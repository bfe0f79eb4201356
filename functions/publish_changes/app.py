"""Scheduled (EventBridge): puts the change log on the API's bus, in order per user, at least once.

Not HTTP: the event is EventBridge's scheduled event. Anything that is not an EventBridge
event is refused with an error before any work. Stops before the function's own time runs
out; the next run continues (`finished: false`). The work is shared/publish_changes.py.
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics
from shared.publish_changes import run_publish


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled = parse(event=event, model=EventBridgeModel)
    with logger.append_context_keys(scheduled_at=scheduled.time.isoformat(), rule=next(iter(scheduled.resources), None)):
        return run_publish(remaining_ms=context.get_remaining_time_in_millis)
