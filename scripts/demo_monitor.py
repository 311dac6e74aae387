"""Watch the demo: /instances and /overlay for N seconds, then print a summary.

Latency = receive time - source image stamp (both on this machine), and the node's own latency
(stamp -> everything published) from its /diagnostics. Saves a few overlay PNGs.
"""

import argparse
import pathlib
import sys
import time

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from instseg_msgs.msg import InstanceMaskArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from instseg_ros.ros.conversions import image_to_bgr8

SAVE_EVERY_S = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--out', type=pathlib.Path, required=True)
    parser.add_argument('--node-log', type=pathlib.Path)
    parser.add_argument('--camera-rate', type=float, default=10.0,
                        help='rate of the camera [Hz]: frames sent in the window = rate * time')
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node('demo_monitor')
    latencies_ms, counts, overlays, diag = [], [], [], {}
    with_3d = [0]
    received = []  # (monotonic time, the node's frames_received counter)

    def on_instances(msg):
        now = node.get_clock().now().nanoseconds * 1e-9
        latencies_ms.append((now - msg.header.stamp.sec - msg.header.stamp.nanosec * 1e-9) * 1e3)
        counts.append(len(msg.instances))
        with_3d[0] += sum(1 for i in msg.instances if i.has_position)

    def on_overlay(msg):
        if not overlays or time.monotonic() - overlays[-1][0] >= SAVE_EVERY_S:
            path = args.out / f'overlay_{len(overlays):02d}.png'
            cv2.imwrite(str(path), image_to_bgr8(msg))
            overlays.append((time.monotonic(), path))

    def on_diag(msg):
        for status in msg.status:
            if 'yolact' in status.name:
                diag.update({kv.key: kv.value for kv in status.values})
                if 'frames_received' in diag:
                    received.append((time.monotonic(), int(diag['frames_received'])))

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(InstanceMaskArray, '/instances', on_instances, reliable)
    node.create_subscription(Image, '/overlay', on_overlay, reliable)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    print('[demo] waiting for the node (model load) ...', flush=True)
    start = time.monotonic()
    while not counts and time.monotonic() - start < 180:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not counts:
        print('[demo] ERROR: no /instances within 180 s. Node log:', file=sys.stderr)
        if args.node_log and args.node_log.exists():
            print(args.node_log.read_text()[-3000:], file=sys.stderr)
        return 1
    print(f'[demo] first result after {time.monotonic() - start:.1f} s; running {args.seconds:.0f} s',
          flush=True)
    latencies_ms.clear(), counts.clear(), received.clear()
    with_3d[0] = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()
    lat = np.asarray(latencies_ms)
    print('\n[demo] ===== summary =====')
    print(f'frames processed     : {len(counts)} in {args.seconds:.0f} s '
          f'({len(counts) / args.seconds:.1f} Hz; camera at 10 Hz, older frames are dropped)')
    if len(lat):
        print(f'latency stamp->result: mean {lat.mean():.0f} ms, p50 {np.percentile(lat, 50):.0f} ms, '
              f'p99 {np.percentile(lat, 99):.0f} ms')
    if len(received) >= 2:
        (t0, n0), (t1, n1) = received[0], received[-1]
        sent = (t1 - t0) * args.camera_rate
        print(f'frames received      : {(n1 - n0) / sent:.1%} ({n1 - n0} of ~{sent:.0f} sent at '
              f'{args.camera_rate:g} Hz, the node\'s frames_received counter)')
    total = int(np.sum(counts))
    print(f'instances per frame  : {np.mean(counts):.2f}; with 3D position: '
          f'{with_3d[0] / max(total, 1):.1%} of {total}')
    for key in ('device', 'qos_image', 'qos_depth', 'frames_dropped', 'frames_paired',
                'frames_unpaired', 'forward_ms_mean', 'overhead_ms_p50', 'depth_ms_mean',
                'latency_ms_p50', 'latency_ms_p99'):
        if key in diag:
            print(f'{key:21s}: {diag[key]}')
    print(f'overlay PNGs         : {len(overlays)} in {args.out}/ ' +
          ' '.join(p.name for _, p in overlays))
    return 0 if counts else 1


if __name__ == '__main__':
    sys.exit(main())
