"""Log throttling by *kind* of problem, so a stream of distinct bad inputs cannot flood the log.

The key is the kind ('image', 'depth', ...) chosen by the code, never text taken from the input,
and the table of kinds is bounded. A suppressed repeat is counted and the next line that gets
through says how many were suppressed.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable


class KindThrottle:
    """At most one line per kind every ``period_s`` seconds; at most ``max_kinds`` kinds tracked
    (the least recently logged kind is forgotten first)."""

    def __init__(self, period_s: float = 5.0, max_kinds: int = 32,
                 clock: Callable[[], float] = time.monotonic):
        self.period_s = float(period_s)
        self._max_kinds = int(max_kinds)
        self._clock = clock
        self._last: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._suppressed: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def admit(self, kind: str) -> int | None:
        """None when a line of ``kind`` must be suppressed now; otherwise the number of lines of
        that kind suppressed since the last one that got through (0 the first time)."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.period_s:
                self._suppressed[kind] += 1
                return None
            self._last[kind] = now
            self._last.move_to_end(kind)
            while len(self._last) > self._max_kinds:
                old, _ = self._last.popitem(last=False)
                self._suppressed.pop(old, None)
            return self._suppressed.pop(kind, 0)

    def __len__(self) -> int:
        return len(self._last)
