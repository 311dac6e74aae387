#!/usr/bin/env python3
"""Test fixture process: receives vision_msgs detections / label_info and writes them as JSON.

Needs vision_msgs importable (test_ws/install sourced). Subscribes <ns>/detections,
<ns>/detections_3d and, after the first detections arrived (a late joiner), <ns>/label_info
(transient local); writes every field the test compares to --out and exits once it has
--count frames of both detection types and the class map.

Usage: listen_vision_msgs_fixture.py --namespace /ns --out result.json [--count 5]
"""

import argparse
import json
import sys
import time

import rclpy
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo

from instseg_ros.ros.label_outputs import label_info_qos


def stamp(header) -> str:
    return f'{header.stamp.sec}.{header.stamp.nanosec:09d}'


def hypothesis(det) -> dict:
    return {'class_id': det.results[0].hypothesis.class_id,
            'score': det.results[0].hypothesis.score, 'n_results': len(det.results)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--namespace', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--count', type=int, default=5)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node('vision_msgs_listener')
    data = {'d2': {}, 'd3': {}, 'label_info': None}

    def on_2d(msg):
        data['d2'][stamp(msg.header)] = [dict(
            id=d.id, cx=d.bbox.center.position.x, cy=d.bbox.center.position.y,
            theta=d.bbox.center.theta, sx=d.bbox.size_x, sy=d.bbox.size_y,
            frame_id=d.header.frame_id, **hypothesis(d)) for d in msg.detections]

    def on_3d(msg):
        data['d3'][stamp(msg.header)] = [dict(
            id=d.id, center=[d.bbox.center.position.x, d.bbox.center.position.y,
                             d.bbox.center.position.z],
            orientation_w=d.bbox.center.orientation.w,
            size=[d.bbox.size.x, d.bbox.size.y, d.bbox.size.z],
            position=[d.results[0].pose.pose.position.x, d.results[0].pose.pose.position.y,
                      d.results[0].pose.pose.position.z], **hypothesis(d)) for d in msg.detections]

    def on_info(msg):
        data['label_info'] = {'classes': [[c.class_id, c.class_name] for c in msg.class_map],
                              'threshold': msg.threshold, 'type': type(msg).__module__}

    node.create_subscription(Detection2DArray, f'{args.namespace}/detections', on_2d, 10)
    node.create_subscription(Detection3DArray, f'{args.namespace}/detections_3d', on_3d, 10)
    info_sub = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if info_sub is None and data['d2']:
            info_sub = node.create_subscription(LabelInfo, f'{args.namespace}/label_info',
                                                on_info, label_info_qos())
        if len(data['d2']) >= args.count and len(data['d3']) >= args.count and data['label_info']:
            break
    with open(args.out, 'w') as handle:
        json.dump(data, handle)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if data['label_info'] else 1


if __name__ == '__main__':
    sys.exit(main())
