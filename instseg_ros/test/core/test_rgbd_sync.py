"""RGB-D pairing in the callbacks (core.rgbd_sync): every rule with a hand-driven clock."""

import pytest

from instseg_ros.core import rgbd_sync
from instseg_ros.core.rgbd_sync import RgbdSync


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


def make(clock, **kwargs):
    sync = RgbdSync(slop_s=kwargs.pop('slop_s', 0.05), wait_s=kwargs.pop('wait_s', 0.25),
                    clock=clock, **kwargs)
    sync.add_info(0.0, 'info')
    return sync


def test_depth_before_colour_pairs_at_once(clock):
    sync = make(clock)
    assert sync.add_depth(10.0, 'd10') == []
    [frame] = sync.add_color(10.0, 'c10')
    assert (frame.color, frame.depth, frame.info, frame.unpaired_reason) == ('c10', 'd10', 'info',
                                                                             None)
    assert frame.depth_stamp_s == 10.0 and frame.gap_s == 0.0
    assert (sync.paired, sync.unpaired) == (1, 0)


def test_colour_waits_for_its_depth_then_pairs(clock):
    sync = make(clock)
    sync.add_depth(9.9, 'd9.9')
    assert sync.add_color(10.0, 'c10') == []        # a closer depth may still come
    clock.t += 0.1
    [frame] = sync.add_depth(10.0, 'd10')
    assert frame.depth == 'd10' and frame.unpaired_reason is None


def test_nearest_depth_within_slop_is_chosen(clock):
    sync = make(clock, slop_s=0.05)
    sync.add_depth(9.97, 'early')
    assert sync.add_color(10.0, 'c') == []
    [frame] = sync.add_depth(10.02, 'late')          # 0.02 away beats 0.03 away
    assert frame.depth == 'late'
    assert frame.gap_s == pytest.approx(0.02)


def test_newer_depth_outside_slop_gives_stamp_gap(clock):
    sync = make(clock, slop_s=0.05)
    sync.add_depth(9.0, 'old')
    assert sync.add_color(10.0, 'c') == []
    [frame] = sync.add_depth(10.5, 'new')
    assert frame.depth is None and frame.unpaired_reason == rgbd_sync.STAMP_GAP
    assert frame.gap_s == pytest.approx(0.5) and sync.last_gap_s == pytest.approx(0.5)


def test_colour_released_after_the_wait(clock):
    sync = make(clock, wait_s=0.25)
    sync.add_depth(9.9, 'd')
    assert sync.add_color(10.0, 'c') == []
    clock.t += 0.2
    assert sync.poll() == []
    clock.t += 0.06
    [frame] = sync.poll()
    assert frame.unpaired_reason == rgbd_sync.TIMEOUT and frame.depth is None


def test_timeout_still_uses_a_depth_within_slop(clock):
    sync = make(clock, slop_s=0.05)
    sync.add_depth(9.98, 'd')
    assert sync.add_color(10.0, 'c') == []
    clock.t += 0.3
    [frame] = sync.poll()
    assert frame.depth == 'd' and frame.unpaired_reason is None


def test_no_depth_stream_does_not_hold_colour_back(clock):
    sync = make(clock)
    [frame] = sync.add_color(10.0, 'c')              # no depth ever: no wait at all
    assert frame.unpaired_reason == rgbd_sync.NO_DEPTH_YET
    sync.add_depth(10.1, 'd')
    clock.t += 5.0                                   # depth stream went quiet (stale)
    [frame] = sync.add_color(15.0, 'c2')
    assert frame.depth is None and frame.unpaired_reason in (rgbd_sync.STAMP_GAP,
                                                             rgbd_sync.TIMEOUT)


def test_missing_camera_info(clock):
    sync = RgbdSync(slop_s=0.05, clock=clock)
    sync.add_depth(10.0, 'd')
    [frame] = sync.add_color(10.0, 'c')
    assert frame.depth is None and frame.unpaired_reason == rgbd_sync.NO_CAMERA_INFO


def test_camera_info_nearest_the_depth_else_newest(clock):
    sync = RgbdSync(slop_s=0.05, clock=clock)
    sync.add_info(9.0, 'info9')
    sync.add_info(10.0, 'info10')
    sync.add_info(11.0, 'info11')
    sync.add_depth(10.01, 'd')
    [frame] = sync.add_color(10.0, 'c')
    assert frame.info == 'info10'
    sync.add_depth(20.0, 'd20')
    [frame] = sync.add_color(20.0, 'c20')
    assert frame.info == 'info11'


def test_pending_colour_frames_are_bounded_and_resolved_in_order(clock):
    sync = make(clock, max_pending=2)
    sync.add_depth(9.0, 'd9')
    out = []
    for i in range(4):
        out += sync.add_color(10.0 + i * 0.1, f'c{i}')
    assert [f.color for f in out] == ['c0', 'c1']    # the oldest two had to go
    out = sync.add_depth(10.3, 'd10.3')
    assert [f.color for f in out] == ['c2', 'c3']
    assert out[1].depth == 'd10.3' and out[0].unpaired_reason == rgbd_sync.STAMP_GAP


def test_recent_fraction_and_reason(clock):
    sync = make(clock)
    for i in range(8):
        sync.add_depth(10.0 + i, 'd')
        sync.add_color(10.0 + i, 'c')
    for i in range(2):
        sync.add_depth(30.0 + i, 'd')
        sync.add_color(29.5 + i, 'c')                # 0.5 s off: stamp gap
    fraction, count = sync.recent_unpaired_fraction()
    assert (fraction, count) == (pytest.approx(0.2), 10)
    assert sync.recent_reason() == rgbd_sync.STAMP_GAP


def test_stream_at_camera_rate_with_jittered_arrival_pairs_every_frame(clock):
    """30 Hz colour + depth with the same stamps, depth arriving 0-20 ms before or after."""
    import random
    rng = random.Random(3)
    sync = make(clock)
    resolved = []
    for i in range(300):
        stamp = 50.0 + i / 30.0
        events = [('c', stamp), ('d', stamp)]
        rng.shuffle(events)
        for kind, s in events:
            clock.t += rng.uniform(0.0, 0.02)
            resolved += (sync.add_color if kind == 'c' else sync.add_depth)(s, f'{kind}{i}')
        resolved += sync.poll()
    assert len(resolved) == 300
    assert all(f.depth == 'd' + f.color[1:] for f in resolved)
