"""``synthetic_camera``: an RGB-D camera made of synthetic scenes (synth.scene), for demos and tests.

Publishes, with one stamp per frame and frame_id ``camera_color_optical_frame``:
  color/image_raw (bgr8), color/camera_info, aligned_depth_to_color/image_raw (16UC1 mm or 32FC1 m)
camera_info and depth first, colour ``color_delay_ms`` later (real RGB-D cameras deliver their
streams separately; with Fast DDS's default 512 kB shared-memory segment, a publisher that sends
colour and depth of 640x480 back to back loses the earlier samples of the burst on a loaded
machine, before any subscriber sees them). ``reliability`` (reliable | best_effort) and
``history_depth`` set the publishers' QoS; ``max_frames`` stops after that many frames.
``motion_px`` > 0 gives a moving scene instead (the first scene sliding left and right, for
tracking demos and tests). Run under namespace ``camera`` to match the launch file's default remappings
(``/camera/color/image_raw`` ...). Scenes are pre-rendered into a pool and cycled, so the rate is
not limited by rendering.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from instseg_ros.ros.cli import node_help, wants_help
from instseg_ros.ros.conversions import bgr8_to_compressed, numpy_to_image
from instseg_ros.ros.entry import spin_node
from instseg_ros.ros.errors import StartupError
from instseg_ros.ros.params import ParamSpec, declare, help_rows
from instseg_ros.synth.scene import Camera, render_scene

_RELIABILITY = {'reliable': ReliabilityPolicy.RELIABLE,
                'best_effort': ReliabilityPolicy.BEST_EFFORT}

#: the camera's parameters (declared with params.declare: an integer for a double is fine)
CAMERA_PARAMETERS = (
    ParamSpec('rate', 10.0, 'Frames per second.', min_value=0.1, max_value=1000.0),
    ParamSpec('width', 640, 'Image width [px].', min_value=16, max_value=8192),
    ParamSpec('height', 480, 'Image height [px].', min_value=16, max_value=8192),
    ParamSpec('seed', 1000, 'Seed of the first scene (scene i uses seed + i).',
              min_value=0, max_value=2**31 - 1),
    ParamSpec('pool_size', 20, 'Scenes rendered up front and cycled.', min_value=1,
              max_value=10_000),
    ParamSpec('frame_id', 'camera_color_optical_frame', 'frame_id of every header.'),
    ParamSpec('depth_encoding', '16UC1', 'Depth encoding: 16UC1 (mm) or 32FC1 (m).',
              choices=('16UC1', '32FC1')),
    ParamSpec('publish_compressed', False, 'Also publish color/image_raw/compressed (JPEG).'),
    ParamSpec('reliability', 'reliable', 'Publisher reliability: reliable (most drivers) or '
              'best_effort.', choices=tuple(_RELIABILITY)),
    ParamSpec('history_depth', 5, 'Publisher keep-last depth.', min_value=1, max_value=1000),
    ParamSpec('color_delay_ms', 15.0, 'Colour is published this long after depth, as from a '
              'camera whose sensors deliver separately; 0 = one burst.', min_value=0.0,
              max_value=1000.0),
    ParamSpec('max_frames', 0, 'Stop after this many frames (0 = never).', min_value=0,
              max_value=2**31 - 1),
    ParamSpec('wait_for_subscribers', False, 'Start publishing only once colour, depth and '
              'camera_info each have a subscriber (tests that count every frame sent).'),
    ParamSpec('motion_px', 0.0, '> 0: a moving scene instead of the pool: the first scene slides '
              'left and right by this many pixels per frame (tracking demos and tests).',
              min_value=0.0, max_value=1000.0),
    ParamSpec('motion_range_px', 40.0, 'Amplitude of the moving scene [px].', min_value=0.0,
              max_value=10000.0),
)


def camera_qos(reliability: str, depth: int = 5) -> QoSProfile:
    """Publisher QoS of real drivers: keep last ``depth``, reliable (most) or best effort."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=_RELIABILITY[reliability])


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
        values = {spec.name: declare(self, spec) for spec in CAMERA_PARAMETERS}
        self.rate = values['rate']
        width, height = values['width'], values['height']
        seed, pool = values['seed'], values['pool_size']
        self.frame_id = values['frame_id']
        self.depth_encoding = values['depth_encoding']
        self.compressed = values['publish_compressed']
        self.max_frames = values['max_frames']
        self.wait_for_subscribers = values['wait_for_subscribers']
        self.motion_px, self.motion_range_px = values['motion_px'], values['motion_range_px']
        self.color_delay_s = values['color_delay_ms'] / 1e3
        reliability = values['reliability']
        qos = camera_qos(reliability, values['history_depth'])
        self.camera = Camera(width=width, height=height)
        self.scenes = [render_scene(seed + i, self.camera) for i in range(max(1, pool))]
        self.pub_image = self.create_publisher(Image, 'color/image_raw', qos)
        self.pub_compressed = (self.create_publisher(CompressedImage,
                                                     'color/image_raw/compressed', qos)
                               if self.compressed else None)
        self.pub_info = self.create_publisher(CameraInfo, 'color/camera_info', qos)
        self.pub_depth = self.create_publisher(Image, 'aligned_depth_to_color/image_raw',
                                               qos)
        self.frame = 0
        self.timer = self.create_timer(1.0 / self.rate, self.publish_frame)
        self.get_logger().info(f'Publishing {len(self.scenes)} synthetic {width}x{height} RGB-D '
                               f'scenes at {self.rate} Hz, {reliability} (seeds {seed}..{seed + len(self.scenes) - 1})')

    def publish_frame(self) -> None:
        if self.max_frames and self.frame >= self.max_frames:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
                self.get_logger().info(f'Published {self.frame} frames (max_frames reached)')
            return
        if self.wait_for_subscribers and self.frame == 0 and not all(
                pub.get_subscription_count() for pub in (self.pub_image, self.pub_depth,
                                                         self.pub_info)):
            return
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
        if self.color_delay_s > 0:
            time.sleep(self.color_delay_s)
        self.pub_image.publish(image)
        if self.pub_compressed is not None:
            compressed = bgr8_to_compressed(scene.image_bgr, 'jpeg')
            compressed.header = image.header
            self.pub_compressed.publish(compressed)


def main(args=None) -> int:
    """Entry point (executable ``synthetic_camera``); exit code 2 when it cannot start."""
    if wants_help(args):
        print(node_help('synthetic_camera', __doc__, help_rows(CAMERA_PARAMETERS),
                        'synthetic_camera --ros-args -r __ns:=/camera -p rate:=15.0'))
        return 0
    return spin_node(SyntheticCamera, args, fatal=(StartupError,), name='synthetic_camera')


if __name__ == '__main__':
    sys.exit(main())
