"""Depth faults a user meets, over the real middleware with the node a separate process and the
test publishing colour, depth and camera_info itself at camera rate (reliable, as drivers do):
no camera_info is named in a warning; a depth image at twice the colour resolution (same aspect)
still gives 3D; the "no depth" warning stops once the camera stops."""

import pathlib
import sys
import time

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import PARAMS_FILE, make_small_checkpoint, node_command, start, stop  # noqa: E402

pytestmark = pytest.mark.ros
CAM = '/dfcam'
RATE_HZ = 10.0


@pytest.fixture(scope='module')
def node_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('depth_faults')
    weights = make_small_checkpoint(tmp / 'yolact_small_df.pth', seed=1)
    log = tmp / 'yolact.log'
    proc = start(node_command(namespace='/df', params_file=PARAMS_FILE,
                              parameters={'weights': str(weights), 'score_threshold': 0.05,
                                          'use_depth': True},
                              remaps={'image': f'{CAM}/image', 'depth': f'{CAM}/depth',
                                      'camera_info': f'{CAM}/info'}), log)
    yield proc, log
    assert stop(proc) == 0, log.read_text()[-3000:]


class Camera:
    """Publishes one synthetic scene as colour (+ depth, + camera_info) at RATE_HZ."""

    def __init__(self, node, color_size=(320, 240), depth_size=None, info_size=None):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        from instseg_ros.ros.conversions import numpy_to_image
        from instseg_ros.synth.scene import Camera as SceneCamera
        from instseg_ros.synth.scene import render_scene
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.node = node
        self.pubs = {'image': node.create_publisher(Image, f'{CAM}/image', qos),
                     'depth': node.create_publisher(Image, f'{CAM}/depth', qos),
                     'info': node.create_publisher(CameraInfo, f'{CAM}/info', qos)}
        scene = render_scene(11, SceneCamera(*color_size))
        self.color = numpy_to_image(scene.image_bgr, 'bgr8')
        self.depth = self.info = None
        if depth_size is not None:
            depth_mm = cv2.resize(scene.depth_mm, depth_size, interpolation=cv2.INTER_NEAREST)
            self.depth = numpy_to_image(depth_mm, '16UC1')
        if info_size is not None:
            cam = SceneCamera(*info_size)
            self.info = CameraInfo(width=cam.width, height=cam.height, k=[float(v) for v in cam.k()],
                                   distortion_model='plumb_bob', d=[0.0] * 5)
        self.sent = 0

    def run(self, spin_until, seconds: float) -> None:
        """Publish for ``seconds``, depth/info first (as RGB-D drivers), all with one stamp."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            stamp = self.node.get_clock().now().to_msg()
            for name, msg in (('info', self.info), ('depth', self.depth), ('image', self.color)):
                if msg is not None:
                    msg.header.stamp, msg.header.frame_id = stamp, 'cam_optical'
                    self.pubs[name].publish(msg)
            self.sent += 1
            spin_until(self.node, lambda: False, timeout_s=1.0 / RATE_HZ)


def _collect(make_node, name):
    from instseg_msgs.msg import InstanceMaskArray
    node = make_node(name)
    results = []
    node.create_subscription(InstanceMaskArray, '/df/instances', results.append, 10)
    return node, results


def _warnings(log: pathlib.Path, text: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if '[WARN]' in line and text in line]


def test_depth_without_camera_info_is_named(node_process, make_node, spin_until):
    proc, log = node_process
    node, results = _collect(make_node, 'df_noinfo')
    camera = Camera(node, depth_size=(320, 240), info_size=None)
    assert spin_until(node, lambda: camera.pubs['image'].get_subscription_count() > 0, 30)
    camera.run(spin_until, 4.0)
    spin_until(node, lambda: False, timeout_s=2.5)
    assert proc.poll() is None, log.read_text()[-3000:]
    assert len(results) >= 5
    assert not any(i.has_position for r in results for i in r.instances)
    lines = _warnings(log, 'camera_info')
    assert lines and f'{CAM}/info' in lines[0], log.read_text()[-3000:]


def test_depth_at_twice_the_colour_resolution_gives_3d(node_process, make_node, spin_until):
    proc, log = node_process
    for info_size in ((320, 240), (640, 480)):   # camera_info of the colour or of the depth image
        node, results = _collect(make_node, f'df_big_{info_size[0]}')
        camera = Camera(node, depth_size=(640, 480), info_size=info_size)
        assert spin_until(node, lambda: camera.pubs['image'].get_subscription_count() > 0, 30)
        camera.run(spin_until, 4.0)
        spin_until(node, lambda: False, timeout_s=1.0)
        with_instances = [r for r in results if r.instances]
        assert len(with_instances) >= 5, log.read_text()[-3000:]
        placed = [r for r in with_instances if any(i.has_position for i in r.instances)]
        assert len(placed) >= 0.8 * len(with_instances), (info_size, len(placed), len(with_instances),
                                                          log.read_text()[-3000:])
        node.destroy_node()


def test_no_depth_warning_stops_when_the_camera_stops(node_process, make_node, spin_until):
    proc, log = node_process
    node, results = _collect(make_node, 'df_colour_only')
    camera = Camera(node, depth_size=None, info_size=None)
    assert spin_until(node, lambda: camera.pubs['image'].get_subscription_count() > 0, 30)
    camera.run(spin_until, 3.0)
    spin_until(node, lambda: False, timeout_s=1.5)
    warned = len(_warnings(log, 'had no depth'))
    assert warned >= 1, log.read_text()[-3000:]
    time.sleep(12.0)                                    # > twice the 5 s warning period
    assert len(_warnings(log, 'had no depth')) == warned, log.read_text()[-3000:]
