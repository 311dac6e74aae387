"""Pairs colour frames with aligned depth (+ camera_info) by stamp, in the subscription callbacks.

Pure (no rclpy): messages are opaque objects, stamps are float seconds. The node feeds every
colour, depth and camera_info message in as it arrives and hands each *resolved* colour frame
(paired with its depth, or finally without it) to the newest-frame slot of the inference worker.

Rules (approximate time, depth stamps assumed non-decreasing as cameras publish them):

* A colour frame at stamp ``c`` is paired with the buffered depth nearest to ``c`` within
  ``slop_s``. It is resolved as soon as no closer depth can still arrive, i.e. once a depth with
  stamp ``>= c`` has been received.
* A colour frame goes without depth only when its depth can no longer arrive: a depth newer than
  ``c`` is already here and none lies within the slop, or ``wait_s`` has passed since the colour
  frame arrived (then the best depth within the slop is still used if there is one).
* When no depth at all arrived in the last ``stale_s`` seconds (no depth publisher, dead stream)
  colour frames are not held back: they are resolved at once, without depth, and say why.
* camera_info: the one nearest the depth's stamp within the slop, else the newest one.

Memory is bounded: at most ``depth_buffer`` depth images, ``max_pending`` colour frames waiting
for depth (the oldest is resolved first when more arrive) and ``info_buffer`` camera_infos.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

#: reasons a colour frame went without depth (keys of ``RgbdSync.unpaired_by_reason``)
NO_DEPTH_YET = 'no_depth'        # no depth image received (recently)
STAMP_GAP = 'stamp_gap'          # depth images arrive, but none within depth_slop of the colour
TIMEOUT = 'timeout'              # waited wait_s and no depth within the slop arrived
NO_CAMERA_INFO = 'no_camera_info'  # depth within the slop, but no camera_info received yet


def stamp_s(header: Any) -> float:
    """Header stamp in seconds (sec + nanosec * 1e-9); any object with ``stamp.sec/nanosec``."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def nearest(stamps_s: Sequence[float], target_s: float) -> tuple[int, float] | None:
    """(index, |stamp - target| in seconds) of the stamp nearest ``target_s``; None if empty."""
    if len(stamps_s) == 0:
        return None
    gaps = np.abs(np.asarray(stamps_s, dtype=np.float64) - target_s)
    best = int(np.argmin(gaps))
    return best, float(gaps[best])


def nearest_stamp(stamps_s: Sequence[float], target_s: float, slop_s: float) -> int | None:
    """Index of the stamp nearest to ``target_s`` if within ``slop_s`` seconds, else None."""
    found = nearest(stamps_s, target_s)
    return found[0] if found is not None and found[1] <= slop_s else None


@dataclass
class RgbdFrame:
    """One resolved colour frame.

    Attributes:
        color: the colour message.  color_stamp_s: its header stamp [s].
        depth: the paired depth message, or None.  depth_stamp_s: its stamp [s] (None without).
        info: the camera_info for the depth (None without depth).
        unpaired_reason: None when paired, else one of NO_DEPTH_YET, STAMP_GAP, TIMEOUT,
            NO_CAMERA_INFO.  gap_s: |colour - nearest depth| [s] when depth images were buffered.
    """

    color: Any
    color_stamp_s: float
    depth: Any = None
    depth_stamp_s: float | None = None
    info: Any = None
    unpaired_reason: str | None = None
    gap_s: float | None = None


class RgbdSync:
    """Approximate-time pairing of colour, depth and camera_info; thread-safe.

    ``add_color`` / ``add_depth`` / ``add_info`` / ``poll`` return the colour frames that became
    resolved by that call, oldest first (usually zero or one). Call ``poll`` periodically (the
    node does so from a timer) so frames whose depth never comes are released after ``wait_s``.
    """

    def __init__(self, slop_s: float, wait_s: float = 0.25, stale_s: float = 1.0,
                 depth_buffer: int = 10, max_pending: int = 4, info_buffer: int = 10,
                 clock: Callable[[], float] = time.monotonic):
        self.slop_s, self.wait_s, self.stale_s = float(slop_s), float(wait_s), float(stale_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._depths: collections.deque = collections.deque(maxlen=depth_buffer)  # (stamp, msg)
        self._infos: collections.deque = collections.deque(maxlen=info_buffer)    # (stamp, msg)
        self._pending: collections.deque = collections.deque()  # (stamp, arrival, msg)
        self._max_pending = max_pending
        self._last_depth_arrival: float | None = None
        self.paired = 0
        self.depth_received = 0
        self.unpaired = 0
        self.unpaired_by_reason: collections.Counter = collections.Counter()
        self._recent: collections.deque = collections.deque(maxlen=50)  # reason, None = paired
        self.last_gap_s: float | None = None  # colour-depth gap of the last STAMP_GAP frame

    # ------------------------------------------------------------------------------ inputs
    def add_color(self, stamp_s: float, msg: Any) -> list[RgbdFrame]:
        """A colour frame arrived; returns the frames resolved now."""
        now = self._clock()
        with self._lock:
            ready = self._expire(now)
            self._pending.append((float(stamp_s), now, msg))
            while len(self._pending) > self._max_pending:
                ready.append(self._resolve(self._pending.popleft(), timed_out=True))
            ready += self._resolve_decidable(now)
        return ready

    def add_depth(self, stamp_s: float, msg: Any) -> list[RgbdFrame]:
        """A depth image arrived; returns the colour frames resolved now."""
        now = self._clock()
        with self._lock:
            self._depths.append((float(stamp_s), msg))
            self.depth_received += 1
            self._last_depth_arrival = now
            return self._expire(now) + self._resolve_decidable(now)

    def add_info(self, stamp_s: float, msg: Any) -> None:
        """A camera_info arrived (kept for pairing with depth)."""
        with self._lock:
            self._infos.append((float(stamp_s), msg))

    def poll(self) -> list[RgbdFrame]:
        """Release colour frames that waited ``wait_s`` (or whose depth stream went stale)."""
        now = self._clock()
        with self._lock:
            return self._expire(now) + self._resolve_decidable(now)

    # ------------------------------------------------------------------------------ state
    def recent_unpaired_fraction(self) -> tuple[float, int]:
        """(fraction of the last <= 50 resolved frames that went without depth, their count)."""
        with self._lock:
            count = len(self._recent)
            unpaired = sum(reason is not None for reason in self._recent)
            return (unpaired / count if count else 0.0), count

    def recent_reason(self) -> str | None:
        """The most frequent reason among the last <= 50 resolved frames without depth."""
        with self._lock:
            reasons = collections.Counter(r for r in self._recent if r is not None)
        return reasons.most_common(1)[0][0] if reasons else None

    def has_depth(self) -> bool:
        """Whether any depth image has been received."""
        return self._last_depth_arrival is not None

    # ------------------------------------------------------------------------------ internals
    def _depth_stale(self, now: float) -> bool:
        return self._last_depth_arrival is None or now - self._last_depth_arrival > self.stale_s

    def _expire(self, now: float) -> list[RgbdFrame]:
        ready = []
        while self._pending and (now - self._pending[0][1] >= self.wait_s
                                 or self._depth_stale(now)):
            ready.append(self._resolve(self._pending.popleft(), timed_out=True))
        return ready

    def _resolve_decidable(self, now: float) -> list[RgbdFrame]:
        """Resolve pending frames (in order) whose pairing can no longer improve."""
        ready = []
        newest_depth = self._depths[-1][0] if self._depths else None
        while self._pending and newest_depth is not None and newest_depth >= self._pending[0][0]:
            ready.append(self._resolve(self._pending.popleft(), timed_out=False))
        if self._depth_stale(now):
            while self._pending:
                ready.append(self._resolve(self._pending.popleft(), timed_out=True))
        return ready

    def _resolve(self, pending: tuple[float, float, Any], timed_out: bool) -> RgbdFrame:
        stamp, _, msg = pending
        frame = RgbdFrame(color=msg, color_stamp_s=stamp)
        if self._depths:
            stamps = [s for s, _ in self._depths]
            best, frame.gap_s = nearest(stamps, stamp)
            if frame.gap_s <= self.slop_s:
                frame.depth_stamp_s, frame.depth = self._depths[best]
                frame.info = self._info_for(frame.depth_stamp_s)
                if frame.info is None:
                    frame.depth = frame.depth_stamp_s = None
                    frame.unpaired_reason = NO_CAMERA_INFO
            else:
                frame.unpaired_reason = TIMEOUT if timed_out and stamps[-1] < stamp else STAMP_GAP
                if frame.unpaired_reason == STAMP_GAP:
                    self.last_gap_s = frame.gap_s
        else:
            frame.unpaired_reason = NO_DEPTH_YET if self._last_depth_arrival is None else TIMEOUT
        if frame.unpaired_reason is None:
            self.paired += 1
        else:
            self.unpaired += 1
            self.unpaired_by_reason[frame.unpaired_reason] += 1
        self._recent.append(frame.unpaired_reason)
        return frame

    def _info_for(self, depth_stamp_s: float) -> Any:
        if not self._infos:
            return None
        best = min(self._infos, key=lambda item: abs(item[0] - depth_stamp_s))
        return best[1] if abs(best[0] - depth_stamp_s) <= self.slop_s else self._infos[-1][1]
