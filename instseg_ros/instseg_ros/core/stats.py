"""Counters for diagnostics and benchmarks: event rates, per-stage times, latency percentiles."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np


class RunningStats:
    """Thread-safe sliding window of the last ``window`` samples per named series (e.g. stage ms)."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, collections.deque] = {}
        self._window = window

    def add(self, name: str, value: float) -> None:
        with self._lock:
            self._series.setdefault(name, collections.deque(maxlen=self._window)).append(value)

    def add_all(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.add(name, value)

    def summary(self) -> dict[str, dict[str, float]]:
        """{name: {'mean', 'p50', 'p99', 'max'}} over the window."""
        with self._lock:
            series = {k: np.asarray(v, dtype=np.float64) for k, v in self._series.items() if v}
        return {k: {'mean': float(v.mean()), 'p50': float(np.percentile(v, 50)),
                    'p99': float(np.percentile(v, 99)), 'max': float(v.max())}
                for k, v in series.items()}


class RateMeter:
    """Events per second over a sliding time window (monotonic clock)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._times: collections.deque = collections.deque()
        self._window_s = window_s
        self.count = 0

    def tick(self, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            self.count += 1
            self._times.append(now_s)
            self._trim(now_s)

    def rate_hz(self, now_s: float | None = None) -> float:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            self._trim(now_s)
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self, now_s: float) -> None:
        while self._times and now_s - self._times[0] > self._window_s:
            self._times.popleft()
