"""What every scheduled job's run shares: when it may start one more batch before its
Lambda time runs out (the next run continues where it stopped)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

# A batch is started only with at least this much time left, and at least
# SLOWEST_BATCH_FACTOR times the slowest batch of the run so far (a slow database asks more).
STOP_MARGIN_MS = 3000
SLOWEST_BATCH_FACTOR = 3


@dataclass
class BatchRun:
    started: float = field(default_factory=time.perf_counter)
    batches: int = 0
    slowest_batch_ms: float = 0.0
    finished: bool = False
    out_of_time: bool = False

    def may_start(self, remaining_ms: int) -> bool:
        self.out_of_time = remaining_ms < max(STOP_MARGIN_MS, SLOWEST_BATCH_FACTOR * self.slowest_batch_ms)
        return not self.out_of_time


def no_limit() -> int:
    """The remaining time of a caller that has no deadline (the command line)."""
    return sys.maxsize
