"""Log throttling by kind (core.throttle) and the newest-frame slot's preference (core.latest)."""

from instseg_ros.core.latest import LatestSlot
from instseg_ros.core.throttle import KindThrottle


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_one_line_per_kind_per_period_and_suppressed_count():
    clock = Clock()
    throttle = KindThrottle(period_s=5.0, clock=clock)
    assert throttle.admit('image') == 0
    assert [throttle.admit('image') for _ in range(999)] == [None] * 999
    assert throttle.admit('depth') == 0                  # another kind is independent
    clock.t = 5.0
    assert throttle.admit('image') == 999                # the next line says how many were hidden
    assert throttle.admit('image') is None


def test_kind_table_is_bounded():
    throttle = KindThrottle(period_s=5.0, max_kinds=8, clock=Clock())
    for i in range(1000):
        throttle.admit(f'kind{i}')
    assert len(throttle) == 8


def test_slot_keeps_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.take(0.0) == 2 and slot.dropped == 1
    assert slot.take(0.0) is None


def test_slot_prefers_a_complete_frame_for_a_bounded_time():
    clock = Clock()
    slot = LatestSlot(prefer=lambda item: item.endswith('+depth'), max_hold_s=0.5, clock=clock)
    slot.put('a+depth')
    clock.t = 0.1
    slot.put('b')                                        # newer but incomplete: dropped
    assert slot.dropped == 1
    assert slot.take(0.0) == 'a+depth'
    slot.put('c+depth')
    clock.t = 0.7
    slot.put('d')                                        # the held one is too old now
    assert slot.take(0.0) == 'd'
    slot.put('e')
    slot.put('f+depth')                                  # complete replaces incomplete
    assert slot.take(0.0) == 'f+depth' and slot.dropped == 3


def test_take_waits_a_bounded_time_for_a_preferred_item():
    import threading
    import time
    slot = LatestSlot(prefer=lambda item: item.endswith('+depth'), max_hold_s=0.3)
    slot.put('a')
    began = time.monotonic()
    assert slot.take(1.0) == 'a'                         # nothing better came: after the hold
    assert 0.25 <= time.monotonic() - began < 1.0
    slot.put('b')
    threading.Timer(0.05, slot.put, args=('c+depth',)).start()
    began = time.monotonic()
    assert slot.take(1.0) == 'c+depth'                   # a complete frame ends the wait early
    assert time.monotonic() - began < 0.25
    for item in ('d', 'e', 'f'):                         # replacements do not extend the hold
        slot.put(item)
        time.sleep(0.12)
    began = time.monotonic()
    assert slot.take(1.0) == 'f' and time.monotonic() - began < 0.1
