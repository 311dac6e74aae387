"""``synthetic_camera``: an RGB-D camera made of synthetic scenes (synth.scene), for demos and tests.

Publishes, with one stamp per frame and frame_id ``camera_color_optical_frame``:
  color/image_raw (bgr8), color/camera_info, aligned_depth_to_color/image_raw (16UC1 mm or 32FC1 m)
``motion_px`` > 0 gives a moving scene instead (the first scene sliding left and right, for
tracking demos and tests). Run under namespace ``camera`` to match the launch file's default remappings
(``/camera/color/image_raw`` ...). Scenes are pre-rendered into a pool and cycled, so the rate is
not limited by rendering.
"""

from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from instseg_ros.ros.conversions import bgr8_to_compressed, numpy_to_image
from instseg_ros.ros.entry import spin_node
from instseg_ros.synth.scene import Camera, render_scene

CAMERA_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                        reliability=ReliabilityPolicy.RELIABLE)


def camera_info_msg(camera: Camera, header) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera."""
    info = CameraInfo(header=header, width=camera.width, height=camera.height,
                      distortion_model='plumb_bob')
    info.d = [0.0] * 5
    info.k = [float(v) for v in camera.k()]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def motion_offset_px(frame: int, step_px: float, range_px: float) -> int:
    """Horizontal shift of the moving scene at ``frame``: a triangle wave going 0 -> +range ->
    -range -> 0 at ``step_px`` pixels per frame (0 when either is not positive)."""
    if step_px <= 0 or range_px <= 0:
        return 0
    period = 4.0 * range_px
    phase = (frame * step_px) % period
    value = phase if phase <= range_px else (
        2 * range_px - phase if phase <= 3 * range_px else phase - period)
    return int(round(value))


class SyntheticCamera(Node):
    """Publishes pre-rendered synthetic RGB-D frames at ``rate`` Hz."""

    def __init__(self, **kwargs):
        super().__init__('synthetic_camera', **kwargs)
        self.rate = self.declare_parameter('rate', 10.0).value
        width = self.declare_parameter('width', 640).value
        height = self.declare_parameter('height', 480).value
        seed = self.declare_parameter('seed', 1000).value
        pool = self.declare_parameter('pool_size', 20).value
        self.frame_id = self.declare_parameter('frame_id', 'camera_color_optical_frame').value
        self.depth_encoding = self.declare_parameter('depth_encoding', '16UC1').value
        self.compressed = self.declare_parameter('publish_compressed', False).value
        # moving scene: > 0 slides the first scene left and right by this many pixels per frame
        # (wrapping at the image border), within +-motion_range_px, instead of cycling the pool
        self.motion_px = float(self.declare_parameter('motion_px', 0.0).value)
        self.motion_range_px = float(self.declare_parameter('motion_range_px', 40.0).value)
        if self.depth_encoding not in ('16UC1', '32FC1'):
            raise ValueError(f"depth_encoding must be 16UC1 or 32FC1, not {self.depth_encoding!r}")
        self.camera = Camera(width=width, height=height)
        self.scenes = [render_scene(seed + i, self.camera) for i in range(max(1, pool))]
        self.pub_image = self.create_publisher(Image, 'color/image_raw', CAMERA_QOS)
        self.pub_compressed = (self.create_publisher(CompressedImage,
                                                     'color/image_raw/compressed', CAMERA_QOS)
                               if self.compressed else None)
        self.pub_info = self.create_publisher(CameraInfo, 'color/camera_info', CAMERA_QOS)
        self.pub_depth = self.create_publisher(Image, 'aligned_depth_to_color/image_raw',
                                               CAMERA_QOS)
        self.frame = 0
        self.timer = self.create_timer(1.0 / self.rate, self.publish_frame)
        self.get_logger().info(f'Publishing {len(self.scenes)} synthetic {width}x{height} RGB-D '
                               f'scenes at {self.rate} Hz (seeds {seed}..{seed + len(self.scenes) - 1})')

    def publish_frame(self) -> None:
        scene = self.scenes[self.frame % len(self.scenes)]
        self.frame += 1
        stamp = self.get_clock().now().to_msg()
        image_bgr, depth_mm, depth_m = scene.image_bgr, scene.depth_mm, scene.depth_m
        if self.motion_px > 0:
            shift = motion_offset_px(self.frame - 1, self.motion_px, self.motion_range_px)
            scene = self.scenes[0]
            image_bgr, depth_mm, depth_m = (np.roll(a, shift, axis=1) for a in
                                            (scene.image_bgr, scene.depth_mm, scene.depth_m))
        image = numpy_to_image(image_bgr, 'bgr8')
        image.header.stamp, image.header.frame_id = stamp, self.frame_id
        if self.depth_encoding == '16UC1':
            depth = numpy_to_image(depth_mm, '16UC1')
        else:
            depth = numpy_to_image(np.where(depth_mm > 0, depth_m, np.nan).astype(np.float32),
                                   '32FC1')
        depth.header = image.header
        self.pub_info.publish(camera_info_msg(self.camera, image.header))
        self.pub_depth.publish(depth)
        self.pub_image.publish(image)
        if self.pub_compressed is not None:
            compressed = bgr8_to_compressed(scene.image_bgr, 'jpeg')
            compressed.header = image.header
            self.pub_compressed.publish(compressed)


def main(args=None) -> int:
    """Entry point (executable ``synthetic_camera``)."""
    return spin_node(SyntheticCamera, args, fatal=(ValueError,))


if __name__ == '__main__':
    sys.exit(main())
