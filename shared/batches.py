"""What every scheduled job's run shares: when it may start one more batch before its
Lambda time runs out (the next run continues where it stopped), and how a run is reported
(one log line and the metrics, whether it finished, stopped or failed)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aws_lambda_powertools.metrics import MetricUnit

from shared.observability import logger, metrics

# A batch is started only with at least this much time left, and at least
# SLOWEST_BATCH_FACTOR times the slowest batch of the run so far (a slow database asks more).
STOP_MARGIN_MS = 3000
SLOWEST_BATCH_FACTOR = 3


@dataclass
class BatchRun:
    """One run of a scheduled job. A job's run names itself (`job`: the log line; `metric`:
    its metrics' prefix) and says what it did (`result`, `log_fields`, `counts`)."""

    job: ClassVar[str]
    metric: ClassVar[str]
    started: float = field(default_factory=time.perf_counter)
    batches: int = 0
    slowest_batch_ms: float = 0.0
    finished: bool = False
    out_of_time: bool = False

    def may_start(self, remaining_ms: int) -> bool:
        self.out_of_time = remaining_ms < max(STOP_MARGIN_MS, SLOWEST_BATCH_FACTOR * self.slowest_batch_ms)
        return not self.out_of_time

    def result(self) -> dict[str, Any]:
        """What the command line prints and the Lambda returns."""
        raise NotImplementedError

    def log_fields(self) -> dict[str, Any]:
        """The job's own fields of the log line, beside `result()` and the batches' timing."""
        return {}

    def counts(self) -> dict[str, tuple[str, float]]:
        """The job's own metrics: name (after the prefix) -> (unit, value)."""
        return {}

    def left_undone(self) -> str | None:
        """Why some of the work was left for the next run although the run did not fail
        (logged as an error), or None."""
        return None


def run_batches(run: BatchRun, work: Callable[[], None]) -> dict[str, Any]:
    """`work()`, then the run reported; a fault is reported too, then raised."""
    try:
        work()
    except Exception:
        _report(run, failed=True)
        raise
    _report(run, failed=False)
    return run.result()


def _report(run: BatchRun, *, failed: bool) -> None:
    duration_ms = round((time.perf_counter() - run.started) * 1000, 1)
    fields = {
        **run.result(),
        **run.log_fields(),
        "batches": run.batches,
        "duration_ms": duration_ms,
        "slowest_batch_ms": round(run.slowest_batch_ms, 1),
        "out_of_time": run.out_of_time,
    }
    undone = run.left_undone()
    if failed:
        logger.exception(f"{run.job} failed", extra=fields)
    elif undone:
        logger.error(f"{run.job}: {undone}", extra=fields)
    else:
        logger.info(run.job, extra=fields)
    counts = {
        **run.counts(),
        "Batches": (MetricUnit.Count, run.batches),
        "Duration": (MetricUnit.Milliseconds, duration_ms),
        "Finished": (MetricUnit.Count, int(run.finished)),
        "RunFailed": (MetricUnit.Count, int(failed)),
    }
    for name, (unit, value) in counts.items():
        metrics.add_metric(name=f"{run.metric}{name}", unit=unit, value=value)


def no_limit() -> int:
    """The remaining time of a caller that has no deadline (the command line)."""
    return sys.maxsize
