"""``instseg-echo``: print what the node publishes, for a shell without the ``ros2`` CLI.

Waits (up to ``--timeout`` seconds) for a publisher of ``instances``, prints one line per
InstanceMaskArray (stamp, frame, size, then class, score, mask ROI and 3D position of each
instance) for ``--count`` messages and, with ``--overlay-out``, saves the newest ``overlay`` image
as a PNG. Subscriptions are reliable (the node's outputs are). Exit 0 when ``--count`` messages
arrived, 1 on time-out (one line saying what was seen), 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ['main', 'describe']


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='instseg-echo', formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description='Print /instances messages (and save the overlay) without the ros2 CLI.')
    parser.add_argument('--topic', default='/instances', help='InstanceMaskArray topic')
    parser.add_argument('--count', type=int, default=3, help='messages to print, then exit')
    parser.add_argument('--timeout', type=float, default=120.0,
                        help='seconds to wait for the node and the messages')
    parser.add_argument('--overlay-topic', default='/overlay', help='overlay image topic')
    parser.add_argument('--overlay-out', default=None,
                        help='save the newest overlay image as this PNG (not saved when omitted)')
    return parser


def describe(msg) -> str:
    """One line for an InstanceMaskArray: stamp, frame, size and every instance."""
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    parts = []
    for inst in msg.instances:
        roi = inst.roi
        where = (f' at ({inst.position.x:.2f}, {inst.position.y:.2f}, {inst.position.z:.2f}) m'
                 if inst.has_position else '')
        parts.append(f'{inst.class_name} {inst.score:.2f} roi {roi.width}x{roi.height}+{roi.x_offset}'
                     f'+{roi.y_offset}{where}')
    return (f'stamp {stamp:.3f} frame {msg.header.frame_id!r} {msg.width}x{msg.height}: '
            f'{len(msg.instances)} instance(s)' + (': ' + '; '.join(parts) if parts else ''))


def main(args=None) -> int:
    opts = _parser().parse_args(args)
    if opts.count < 1 or opts.timeout <= 0:
        print('instseg-echo: --count must be >= 1 and --timeout > 0', file=sys.stderr)
        return 2
    import rclpy
    from instseg_msgs.msg import InstanceMaskArray
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init(args=None)
    node = rclpy.create_node('instseg_echo')
    received, overlays = [], []
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(InstanceMaskArray, opts.topic, received.append, reliable)
    if opts.overlay_out:
        node.create_subscription(Image, opts.overlay_topic, overlays.append, reliable)
    deadline = time.monotonic() + opts.timeout
    printed = 0
    try:
        while printed < opts.count and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            while received and printed < opts.count:
                print(describe(received.pop(0)), flush=True)
                printed += 1
        if opts.overlay_out:
            end = min(deadline, time.monotonic() + 5.0)
            while not overlays and time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.1)
            _save_overlay(overlays, opts.overlay_out)
        if printed < opts.count:
            publishers = node.count_publishers(opts.topic)
            print(f'instseg-echo: {printed} of {opts.count} messages on {opts.topic} within '
                  f'{opts.timeout:g} s ({publishers} publisher(s)); is the node running and its '
                  'camera publishing?', file=sys.stderr)
            return 1
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C, SIGTERM (e.g. timeout)
        return 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _save_overlay(overlays: list, path: str) -> None:
    import cv2

    from instseg_ros.ros.conversions import image_to_bgr8
    if not overlays:
        print('instseg-echo: no overlay image received', file=sys.stderr)
        return
    cv2.imwrite(path, image_to_bgr8(overlays[-1]))
    print(f'overlay saved to {path}', flush=True)


if __name__ == '__main__':
    sys.exit(main())
