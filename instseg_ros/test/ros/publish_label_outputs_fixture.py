#!/usr/bin/env python3
"""Test fixture process: publishes /instances and the label outputs of generated frames.

Runs a moving-object sequence (instseg_ros.synth.sequences) through the core Tracker and
publishes, for every frame, the InstanceMaskArray (with track ids) and, through
ros/label_outputs.py, labels/class, labels/instance, label_info and, when vision_msgs is
importable (the test-only package of test_pkgs/ built into test_ws/), detections and
detections_3d. Started by test_label_outputs_crossprocess.py in its own process group.

Usage: publish_label_outputs_fixture.py --namespace /ns [--period 0.1]
"""

import argparse

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from instseg_msgs.msg import InstanceMaskArray
from rclpy.executors import ExternalShutdownException
from std_msgs.msg import Header

from instseg_ros.core.geometry import Instance3D
from instseg_ros.core.pipeline import FrameResult
from instseg_ros.core.tracking import Tracker, TrackerParams, positions_from_instances_3d
from instseg_ros.ros import qos
from instseg_ros.ros.conversions import InstancesPacker
from instseg_ros.ros.label_outputs import create_label_publishers
from instseg_ros.synth.sequences import lane_objects, render_sequence

CLASS_NAMES = ('ball', 'box', 'triangle', 'ring', 'star')
SIZE = (240, 320)


def frame_results(num_frames: int) -> list[FrameResult]:
    """FrameResults of a 4-object lane sequence; every second instance has 3D."""
    out = []
    for frame in render_sequence(lane_objects(4, speed_px=3.0, seed=5), num_frames):
        boxes = np.array([(x0, y0, x0 + c.shape[1], y0 + c.shape[0]) for x0, y0, c in frame.rois],
                         dtype=np.float32).reshape(-1, 4)
        items = [Instance3D(True, tuple(p), tuple(p + 0.01), (0.1, 0.2, 0.05), 100)
                 if i % 2 == 0 else Instance3D.invalid() for i, p in enumerate(frame.positions_m)]
        out.append(FrameResult(image_size=SIZE, boxes_xyxy=boxes, scores=frame.scores,
                               labels=frame.labels, rois=frame.rois, instances_3d=items))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--namespace', required=True)
    parser.add_argument('--period', type=float, default=0.1)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node('label_outputs_fixture', namespace=args.namespace)
    pub = node.create_publisher(InstanceMaskArray, 'instances', qos.result_output())
    outputs = create_label_publishers(node, CLASS_NAMES, 0.25)
    node.get_logger().info(f'vision_msgs: {outputs.has_vision_msgs}')
    tracker, packer = Tracker(TrackerParams(min_hits=2)), InstancesPacker()
    results, state = frame_results(200), {'i': 0}

    def tick():
        result = results[state['i'] % len(results)]
        if state['i'] % len(results) == 0:
            tracker.reset()
        state['i'] += 1
        header = Header(stamp=Time(sec=1000 + state['i'], nanosec=0), frame_id='cam_optical')
        ids, ages = tracker.update(result.rois, result.labels, result.scores,
                                   positions_from_instances_3d(result.instances_3d, len(result)),
                                   image_size=result.image_size)
        pub.publish(packer.pack(header, SIZE, result.rois, result.scores, result.labels,
                                CLASS_NAMES, result.instances_3d, track_ids=ids, track_ages=ages))
        outputs.publish(result, header, ids)

    node.create_timer(args.period, tick)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
