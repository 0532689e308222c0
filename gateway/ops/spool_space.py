"""Waiting out a full spool disk: when the serve loop writes to the spool again, and saying so.

A full disk is a state of the gateway, not a fault of the job at hand. Once a spool write fails
for lack of space (:class:`~gateway.errors.SpoolFull`), the loop stops claiming jobs for a
while, doubling the pause while the disk stays full: a job whose result cannot be written would
otherwise run again and again while nothing changed. The state changes it could not record
(a job's outcome, a release) wait here in order and are made first when it resumes; until then
their jobs stay in ``processing``, which a restart puts back too. Receive refuses new instances
on its own (the spool's capacity check), and readiness follows that check.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from gateway.errors import SpoolFull
from gateway.ops.metrics import GatewayMetrics
from gateway.store.queue import Intake

log = logging.getLogger("dmask.service")

#: First pause after a write failed for lack of space; each failure in a row doubles it.
FIRST_PAUSE_S = 1.0
#: Longest pause: how late, at worst, the gateway notices that space was freed.
LONGEST_PAUSE_S = 10.0


class SpoolSpace:
    """The serve loop's record of a spool disk that ran out of space, and its pending writes."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        self.full_since: float | None = None
        self._pause = FIRST_PAUSE_S
        self._resume_at = 0.0
        self._unwritten: deque[tuple[str, Callable[[], object]]] = deque()

    def ran_out(self, operation: str) -> None:
        """A spool write (``operation``: claim, record, release...) failed for lack of space."""
        self.metrics.spool_full_writes.labels(operation).inc()
        if self.full_since is None:
            self.full_since = time.monotonic()
            log.warning("spool disk full: new instances are refused and spool writes wait for "
                        "space", extra={"operation": operation})
        self._resume_at = time.monotonic() + self._pause
        self._pause = min(2 * self._pause, LONGEST_PAUSE_S)

    def pause_seconds(self) -> float:
        """How long until writing is tried again (0 when not paused)."""
        return max(0.0, self._resume_at - time.monotonic()) if self.full_since else 0.0

    def write(self, operation: str, entry: Callable[[], object]) -> None:
        """Make a spool write now, or keep it for when the disk has room again."""
        try:
            entry()
        except SpoolFull:
            self._unwritten.append((operation, entry))
            self.ran_out(operation)

    def writable(self, spool: Intake) -> bool:
        """Whether the loop may write to the spool (claim jobs) now.

        While paused: no. After the pause, the writes left over are made first; the full state
        ends once the spool has room for an instance again (its capacity check passes).
        """
        if self.full_since is None:
            return True
        if time.monotonic() < self._resume_at:
            return False
        while self._unwritten:
            operation, entry = self._unwritten[0]
            try:
                entry()
            except SpoolFull:
                self.ran_out(operation)
                return False
            self._unwritten.popleft()
        try:
            spool.check_capacity()
        except SpoolFull:
            return True  # claim again: a job that can finish frees space; a failure pauses longer
        log.info("spool disk has room again",
                 extra={"seconds_full": round(time.monotonic() - self.full_since, 1)})
        self.full_since = None
        self._pause = FIRST_PAUSE_S
        return True

    def unwritten(self) -> int:
        """How many state changes wait for space."""
        return len(self._unwritten)
