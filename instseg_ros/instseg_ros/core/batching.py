"""Newest frames of several cameras -> one batch for one forward pass, fairly and with a bound.

Pure (no rclpy). Each camera has its own :class:`~instseg_ros.core.latest.LatestSlot` (newest
frame only); all slots share one Condition so the worker wakes for any of them. A batch is the
newest ready frame of up to ``max_batch`` cameras: once a first frame is ready the worker waits
at most ``wait_s`` for the other cameras, and cameras are served round robin (the one after the
last served comes first), so a fast camera cannot starve a slow one.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from instseg_ros.core.latest import LatestSlot


class BatchScheduler:
    """Collects ``(camera index, frame)`` batches from per-camera newest-frame slots."""

    def __init__(self, count: int, max_batch: int = 4, wait_s: float = 0.0,
                 prefer: Callable[[Any], bool] | None = None, max_hold_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        if count < 1 or max_batch < 1:
            raise ValueError(f'need at least one camera and max_batch >= 1 (got {count}, '
                             f'{max_batch})')
        self._cond = threading.Condition()
        self._clock = clock
        self.slots = [LatestSlot(prefer=prefer, max_hold_s=max_hold_s, clock=clock,
                                 cond=self._cond) for _ in range(count)]
        self.max_batch, self.wait_s = int(max_batch), float(wait_s)
        self._next = 0
        self._closed = False

    def _ready(self) -> list[int]:
        return [i for i, slot in enumerate(self.slots) if slot.ready_in() == 0.0]

    def _wake_in(self, limit_s: float) -> float:
        """How long to sleep before a held (not preferred) frame becomes ready, at most limit_s."""
        waits = [w for w in (slot.ready_in() for slot in self.slots) if w]
        return min([limit_s] + waits)

    def take(self, timeout_s: float) -> list[tuple[int, Any]]:
        """The next batch (empty after ``timeout_s`` without a ready frame, or after close)."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while not self._closed and not self._ready():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return []
                self._cond.wait(self._wake_in(remaining))
            if self._closed:
                return []
            first = self._clock()
            wanted = min(self.max_batch, len(self.slots))
            while len(self._ready()) < wanted and not self._closed:
                remaining = first + self.wait_s - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(self._wake_in(remaining))
            batch = []
            count = len(self.slots)
            for step in range(count):
                index = (self._next + step) % count
                item = self.slots[index].poll_item()
                if item is not None:
                    batch.append((index, item))
                    if len(batch) == self.max_batch:
                        break
            if batch:
                self._next = (batch[-1][0] + 1) % count
            return batch

    @property
    def dropped(self) -> list[int]:
        """Frames each camera's slot dropped (replaced before the worker took them)."""
        return [slot.dropped for slot in self.slots]

    def close(self) -> None:
        """Wake the worker; every later ``take`` returns an empty batch."""
        with self._cond:
            self._closed = True
            for slot in self.slots:
                slot._closed = True  # noqa: SLF001 - same module family, shared lock held
            self._cond.notify_all()
