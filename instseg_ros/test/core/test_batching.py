"""Batches of the newest frame of several cameras (core.batching): fairness, bounds, preference."""

import threading
import time

import pytest

from instseg_ros.core.batching import BatchScheduler


def test_one_batch_holds_the_newest_frame_of_every_camera():
    scheduler = BatchScheduler(3, max_batch=4)
    for cam, frames in enumerate((['a1', 'a2'], ['b1'], ['c1', 'c2', 'c3'])):
        for frame in frames:
            scheduler.slots[cam].put(frame)
    assert scheduler.take(0.1) == [(0, 'a2'), (1, 'b1'), (2, 'c3')]
    assert scheduler.dropped == [1, 0, 2]
    assert scheduler.take(0.05) == []


def test_round_robin_when_the_batch_is_smaller_than_the_cameras():
    scheduler = BatchScheduler(3, max_batch=1)
    served = []
    for _ in range(6):
        for cam in range(3):
            scheduler.slots[cam].put(f'cam{cam}')   # every camera always has a frame
        served += [cam for cam, _ in scheduler.take(0.1)]
    assert served == [0, 1, 2, 0, 1, 2]


def test_a_fast_camera_does_not_starve_a_slow_one():
    """Camera 0 at ~200 Hz, camera 1 at ~10 Hz, batches of one: camera 1 is served every time it
    has a frame."""
    scheduler = BatchScheduler(2, max_batch=1)
    stop = threading.Event()

    def publish(cam, period_s):
        i = 0
        while not stop.is_set():
            scheduler.slots[cam].put((cam, i))
            i += 1
            time.sleep(period_s)
    threads = [threading.Thread(target=publish, args=(0, 0.005)),
               threading.Thread(target=publish, args=(1, 0.1))]
    for thread in threads:
        thread.start()
    served = {0: set(), 1: set()}
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for cam, (_, index) in scheduler.take(0.2):
            served[cam].add(index)
            time.sleep(0.02)                       # a "forward pass"
    stop.set()
    for thread in threads:
        thread.join()
    assert len(served[1]) >= 12                     # ~15 published by camera 1, all but the last
    assert len(served[0]) >= 20


def test_waits_briefly_for_the_other_cameras():
    scheduler = BatchScheduler(2, max_batch=2, wait_s=0.2)
    scheduler.slots[0].put('a')
    threading.Timer(0.05, scheduler.slots[1].put, args=('b',)).start()
    began = time.monotonic()
    assert scheduler.take(1.0) == [(0, 'a'), (1, 'b')]
    assert time.monotonic() - began < 0.2
    scheduler.slots[0].put('c')
    began = time.monotonic()
    assert scheduler.take(1.0) == [(0, 'c')]        # the wait is bounded
    assert 0.15 <= time.monotonic() - began < 0.5


def test_prefers_complete_frames_for_a_bounded_time_and_closes():
    scheduler = BatchScheduler(1, prefer=lambda item: item.endswith('+depth'), max_hold_s=0.2)
    scheduler.slots[0].put('no depth')
    began = time.monotonic()
    assert scheduler.take(1.0) == [(0, 'no depth')]
    assert time.monotonic() - began >= 0.15
    scheduler.close()
    assert scheduler.take(1.0) == []


def test_rejects_nonsense():
    with pytest.raises(ValueError):
        BatchScheduler(0)
    with pytest.raises(ValueError):
        BatchScheduler(2, max_batch=0)
