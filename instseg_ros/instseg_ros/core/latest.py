"""A one-element mailbox that keeps only the newest item (frames never queue behind the model)."""

from __future__ import annotations

import threading
from typing import Any


class LatestSlot:
    """Holds at most one item; ``put`` replaces an unconsumed item and counts it as dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Store ``item``; returns True if it replaced an item nobody took (a dropped frame)."""
        with self._cond:
            replaced = self._has_item
            if replaced:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> Any:
        """The newest item, waiting up to ``timeout_s``; None on timeout or after close()."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout_s):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        """Wake every waiting ``take`` (which then returns None)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
