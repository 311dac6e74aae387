"""A one-element mailbox that keeps only the newest item (frames never queue behind the model)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class LatestSlot:
    """Holds at most one item; ``put`` replaces an unconsumed item and counts it as dropped.

    With ``prefer`` (a predicate, e.g. "this colour frame has its depth"), the newest *preferred*
    item wins for up to ``max_hold_s``: a held preferred item is not replaced by a newer item
    that is not preferred while the held one is younger than that, and ``take`` hands out an
    item that is not preferred only once it has waited ``max_hold_s`` without a preferred one
    arriving. Latency stays bounded by ``max_hold_s`` plus one processing time. The item that
    loses is counted as dropped.
    """

    def __init__(self, prefer: Callable[[Any], bool] | None = None, max_hold_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 cond: threading.Condition | None = None) -> None:
        # ``cond``: a Condition shared by several slots, so one waiter hears of any of them
        self._cond = cond if cond is not None else threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self._prefer, self._max_hold_s, self._clock = prefer, float(max_hold_s), clock
        self._put_at = 0.0     # when the held item was put
        self._filled_at = 0.0  # when the slot last went from empty to holding an item
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Offer ``item``; returns True if an item nobody took was dropped (either one)."""
        with self._cond:
            now = self._clock()
            replaced = self._has_item
            if replaced:
                self.dropped += 1
                if (self._prefer is not None and now - self._put_at < self._max_hold_s
                        and self._prefer(self._item) and not self._prefer(item)):
                    return True  # keep the held preferred item; the new one is dropped
            if not self._has_item:
                self._filled_at = now
            self._item, self._has_item, self._put_at = item, True, now
            self._cond.notify_all()
            return replaced

    def take(self, timeout_s: float | None = None) -> Any:
        """The newest item, waiting up to ``timeout_s``; None on timeout or after close()."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout_s):
                return None
            # a held item that is not preferred: wait for a preferred one, at most the hold
            while not self._closed and (wait := self.ready_in()):
                self._cond.wait_for(lambda: self._closed or self.ready_in() == 0.0, wait)
            return None if self._closed else self.poll_item()

    def ready_in(self) -> float | None:
        """Seconds until ``poll_item`` would return an item (0: now), None when empty."""
        with self._cond:
            if not self._has_item:
                return None
            if self._prefer is None or self._prefer(self._item):
                return 0.0
            return max(0.0, self._max_hold_s - (self._clock() - self._filled_at))

    def poll_item(self) -> Any:
        """Non-blocking ``take``: the item if one is ready (see ``ready_in``), else None."""
        with self._cond:
            if self.ready_in() != 0.0:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        """Wake every waiting ``take`` (which then returns None)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
