"""`scheduled_handler`: the Lambda entry point of a scheduled (EventBridge) function, primed at
init (shared/snapstart.py) as `lambda_handler` primes an HTTP function's.

The event is EventBridge's scheduled event, parsed with Powertools' parser: anything else is
refused with an error before any work (a Lambda error is the right answer for a scheduled
function: it shows in the Errors metric and Lambda retries it).
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import snapstart
from shared.observability import logger, metrics

# What priming parses: a scheduled event of the shape EventBridge sends.
_SCHEDULED_EVENT = {
    "version": "0",
    "id": "00000000-0000-4000-8000-000000000000",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "000000000000",
    "time": "2026-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:000000000000:rule/priming"],
    "detail": {},
}


def scheduled_handler(name: str, run: Callable[..., dict[str, Any]]) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """`run(remaining_ms=...)` on each scheduled event, with the run's logs and metrics."""

    @metrics.log_metrics
    @logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        scheduled = parse(event=event, model=EventBridgeModel)
        with logger.append_context_keys(scheduled_at=scheduled.time.isoformat(), rule=next(iter(scheduled.resources), None)):
            return run(remaining_ms=context.get_remaining_time_in_millis)

    snapstart.prime_scheduled(name, EventBridgeModel, _SCHEDULED_EVENT)
    return handler
