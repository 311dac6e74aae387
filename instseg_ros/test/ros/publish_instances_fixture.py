#!/usr/bin/env python3
"""Test fixture process: publishes one fixed InstanceMaskArray over and over.

Used by test_msgs_crossprocess.py (started in its own session, killed as a process group).
The message is built with ``instseg_ros.ros.conversions.instances_to_msg``; the test compares
what it receives with literal expected values, so keep the constants below in sync with it.

Usage: publish_instances_fixture.py --topic /some/topic [--period 0.2]
"""

import argparse
from types import SimpleNamespace

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from instseg_msgs.msg import InstanceMaskArray
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from instseg_ros.ros.conversions import instances_to_msg

IMAGE_SIZE = (48, 64)  # (height, width)


def build_message() -> InstanceMaskArray:
    """Two instances: a 10x20 box with a hole (3D set) and a 3x4 pattern (no 3D)."""
    big = np.ones((10, 20), dtype=bool)
    big[3:6, 8:12] = False
    small = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)
    header = Header(stamp=Time(sec=1700000123, nanosec=456789012), frame_id='camera_optical')
    item3d = SimpleNamespace(has_position=True, position_m=(0.25, -0.5, 2.0),
                             box_center_m=(0.3, -0.45, 2.125), box_size_m=(0.5, 1.5, 0.25),
                             num_points=1234)
    return instances_to_msg(header, IMAGE_SIZE, [(5, 7, big), (60, 44, small)],
                            scores=[0.875, 0.5], labels=[0, 2],
                            class_names=['person', 'bicycle', 'car'],
                            instance3d=[item3d, None])


def main() -> None:
    """Publish build_message() on --topic every --period seconds until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--topic', required=True)
    parser.add_argument('--period', type=float, default=0.2)
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node('instseg_fixture_publisher')
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = node.create_publisher(InstanceMaskArray, args.topic, qos)
    msg = build_message()
    publisher.publish(msg)
    node.create_timer(args.period, lambda: publisher.publish(msg))
    print(f'publishing on {args.topic}', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
