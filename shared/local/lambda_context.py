"""A Lambda context for in-process invocations: what a handler reads of the real one.

Used by `todo-api invoke`, the local gateway, the tests and bench. Development tooling like
the rest of shared/local/: no function imports it.
"""

from __future__ import annotations

import time
import uuid


class FakeLambdaContext:
    """What a handler reads of the Lambda context, for in-process invocations."""

    def __init__(self, function_name: str, timeout_ms: int = 10_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
