"""An InstanceMaskArray published by another process arrives intact over the real middleware.

The publisher is test/ros/publish_instances_fixture.py, run in its own session (process group)
with this session's ROS_DOMAIN_ID / LOCALHOST discovery (set by conftest.py) and killed at the end.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from instseg_msgs.msg import InstanceMaskArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

pytestmark = pytest.mark.ros

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent.parent  # instseg_ros/ (holds the instseg_ros python package)
PUBLISHER = HERE / 'publish_instances_fixture.py'


def _start_publisher(topic: str, log_path: Path) -> subprocess.Popen:
    """Start the fixture publisher in a new session; output goes to ``log_path``."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get('PYTHONPATH'))
                                        if p)
    with open(log_path, 'wb') as log:
        return subprocess.Popen([sys.executable, str(PUBLISHER), '--topic', topic], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGINT the publisher's process group, then SIGKILL it if it has not exited in 10 s."""
    for sig, grace_s in ((signal.SIGINT, 10.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue


def _expected_big_mask() -> bytes:
    """10x20 mono8 mask: all 255 except a 3x4 hole at rows 3..5, cols 8..11."""
    mask = np.full((10, 20), 255, np.uint8)
    mask[3:6, 8:12] = 0
    return mask.tobytes()


@pytest.fixture
def publisher_topic(tmp_path):
    """Run the fixture publisher on a topic unique to this process; yields (topic, proc, log)."""
    topic = f'/instseg_test_{os.getpid()}/instances'
    log_path = tmp_path / 'publisher.log'
    proc = _start_publisher(topic, log_path)
    try:
        yield topic, proc, log_path
    finally:
        _stop_process_group(proc)


def test_instance_mask_array_crosses_processes(publisher_topic, make_node, spin_until):
    topic, proc, log_path = publisher_topic
    node = make_node('instseg_crossprocess_listener')
    received = []
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(InstanceMaskArray, topic, received.append, qos)
    spin_until(node, lambda: bool(received) or proc.poll() is not None, timeout_s=20.0)
    assert received, (f'no InstanceMaskArray on {topic} within 20 s; publisher exit code '
                      f'{proc.poll()}; its output:\n{log_path.read_text(errors="replace")}')
    msg = received[0]

    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1700000123, 456789012)
    assert msg.header.frame_id == 'camera_optical'
    assert (msg.height, msg.width) == (48, 64)
    assert len(msg.instances) == 2
    big, small = msg.instances

    assert (big.id, big.class_id, big.class_name, big.score) == (0, 0, 'person', 0.875)
    assert (small.id, small.class_id, small.class_name, small.score) == (1, 2, 'car', 0.5)

    assert (big.roi.x_offset, big.roi.y_offset, big.roi.width, big.roi.height,
            big.roi.do_rectify) == (5, 7, 20, 10, False)
    assert (small.roi.x_offset, small.roi.y_offset, small.roi.width, small.roi.height,
            small.roi.do_rectify) == (60, 44, 4, 3, False)

    for instance, (height, width) in ((big, (10, 20)), (small, (3, 4))):
        mask = instance.mask
        assert (mask.encoding, mask.height, mask.width, mask.step, mask.is_bigendian) == \
            ('mono8', height, width, width, 0)
        assert (mask.header.stamp.sec, mask.header.stamp.nanosec, mask.header.frame_id) == \
            (1700000123, 456789012, 'camera_optical')
    assert bytes(big.mask.data) == _expected_big_mask()
    assert bytes(small.mask.data) == bytes([255, 0, 0, 255, 0, 255, 255, 0, 255, 255, 255, 255])

    assert big.has_position and big.num_points == 1234
    assert (big.position.x, big.position.y, big.position.z) == (0.25, -0.5, 2.0)
    assert (big.box_center.x, big.box_center.y, big.box_center.z) == (0.3, -0.45, 2.125)
    assert (big.box_size.x, big.box_size.y, big.box_size.z) == (0.5, 1.5, 0.25)
    assert not small.has_position and small.num_points == 0
    assert (small.position.x, small.position.y, small.position.z) == (0.0, 0.0, 0.0)
    assert (small.box_size.x, small.box_size.y, small.box_size.z) == (0.0, 0.0, 0.0)
