"""Every frame and its depth reach the model: the node (a separate process, shipped model, the
installed parameters file, default parameters) against real publishers over the middleware.

* a reliable synthetic RGB-D camera at 10 Hz for 20 s: >= 95 % of the colour frames received
  (the node's own diagnostics counter) and >= 95 % of the published instances with 3D;
* the same node, then a best-effort camera: ``input_reliability: auto`` re-subscribes best effort,
  says so in the log, and frames arrive;
* a 4096x3072 bgr8 frame from a reliable publisher is answered;
* a YAML/CLI QoS override of the image topic leaves the depth subscription's QoS alone;
* depth of another aspect ratio (camera_info matching the depth) gives has_position false and
  one error; 1,000 distinct bad encodings give a handful of log lines;
* a 16384x16384 PNG (under 1 MB) is refused without the node's memory growing.
"""

import pathlib
import re
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import PARAMS_FILE, node_command, start, stop  # noqa: E402

pytestmark = pytest.mark.ros
CAM = '/camera'
COLOR, DEPTH, INFO = (f'{CAM}/color/image_raw', f'{CAM}/aligned_depth_to_color/image_raw',
                      f'{CAM}/color/camera_info')
REMAPS = {'image': COLOR, 'depth': DEPTH, 'camera_info': INFO}
STREAM_FRAMES, STREAM_RATE_HZ = 200, 10.0


def wait_for(node, spin_until, predicate, proc, log, timeout_s):
    ok = spin_until(node, lambda: predicate() or proc.poll() is not None, timeout_s=timeout_s)
    assert proc.poll() is None, f'node exited:\n{log.read_text()[-3000:]}'
    return ok


def last_choice(log, topic: str) -> str | None:
    """The reliability the node last logged for its subscription to ``topic``."""
    found = re.findall(rf'{re.escape(topic)}: (?:subscribing|publishers changed:) (\w+)',
                       log.read_text())
    return found[-1] if found else None


def diagnostics_values(msgs) -> dict:
    return {kv.key: kv.value for kv in msgs[-1].status[0].values} if msgs else {}


@pytest.fixture(scope='module')
def depth_node(tmp_path_factory):
    """The node as the README starts it, depth on, every other parameter at its default."""
    log = tmp_path_factory.mktemp('input_path') / 'yolact.log'
    proc = start(node_command(params_file=PARAMS_FILE, parameters={'use_depth': True},
                              remaps=REMAPS), log)
    yield proc, log
    assert stop(proc) == 0, log.read_text()[-3000:]


@pytest.fixture
def listener(make_node):
    from diagnostic_msgs.msg import DiagnosticArray
    from instseg_msgs.msg import InstanceMaskArray
    node = make_node('input_path_listener')
    instances, diagnostics = [], []
    node.create_subscription(InstanceMaskArray, '/instances', instances.append, 50)
    node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    return node, instances, diagnostics


def run_camera(tmp_path, reliability: str, frames: int, rate_hz: float):
    return start(node_command(module='instseg_ros.ros.synthetic_camera',
                              node_name='synthetic_camera', namespace=CAM,
                              parameters={'rate': rate_hz, 'width': 640, 'height': 480,
                                          'pool_size': 10, 'seed': 4000,
                                          'reliability': reliability, 'max_frames': frames,
                                          # counted from the first frame the node can receive
                                          'wait_for_subscribers': True}),
                 tmp_path / f'camera_{reliability}.log')


def test_reliable_camera_every_frame_and_its_depth(depth_node, listener, spin_until, tmp_path):
    proc, log = depth_node
    node, instances, diagnostics = listener
    assert wait_for(node, spin_until, lambda: 'Ready' in log.read_text(), proc, log, 120)
    camera = run_camera(tmp_path, 'reliable', STREAM_FRAMES, STREAM_RATE_HZ)
    try:
        done = lambda: 'max_frames reached' in (tmp_path / 'camera_reliable.log').read_text()
        assert wait_for(node, spin_until, done, proc, log, STREAM_FRAMES / STREAM_RATE_HZ + 60)
        wait_for(node, spin_until, lambda: False, proc, log, 3.0)  # last frames + diagnostics
    finally:
        stop(camera)
    values = diagnostics_values(diagnostics)
    text = log.read_text()
    assert 'subscribing reliable' in text or 'changed: reliable' in text, text[-3000:]
    received = int(values['frames_received'])
    assert received >= 0.95 * STREAM_FRAMES, (values, text[-3000:])
    total = sum(len(m.instances) for m in instances)
    placed = sum(i.has_position for m in instances for i in m.instances)
    assert total > 100, (total, values)
    assert placed >= 0.95 * total, (placed, total, values, text[-3000:])
    print(f'received {received}/{STREAM_FRAMES} colour frames, {placed}/{total} instances with '
          f'3D, paired {values["frames_paired"]}, unpaired {values["frames_unpaired"]}, '
          f'processed {values["frames_processed"]}')


def test_best_effort_camera_is_matched_best_effort(depth_node, listener, spin_until, tmp_path):
    proc, log = depth_node
    node, instances, diagnostics = listener
    camera = run_camera(tmp_path, 'best_effort', 60, STREAM_RATE_HZ)
    try:
        switched = lambda: re.search(r'image /camera/color/image_raw: publishers changed: '
                                     r'best_effort .*not every publisher is reliable',
                                     log.read_text())
        assert wait_for(node, spin_until, switched, proc, log, 30), log.read_text()[-3000:]
        assert wait_for(node, spin_until, lambda: len(instances) >= 3, proc, log, 30), \
            log.read_text()[-3000:]
    finally:
        stop(camera)


def test_4096x3072_frame_from_a_reliable_publisher(depth_node, listener, spin_until):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from instseg_ros.ros.conversions import numpy_to_image
    proc, log = depth_node
    node, instances, _ = listener
    pub = node.create_publisher(Image, COLOR, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE))
    # once only reliable publishers remain (the best-effort camera is gone), auto re-subscribes
    assert wait_for(node, spin_until, lambda: last_choice(log, COLOR) == 'reliable', proc, log,
                    30), log.read_text()[-2000:]
    image = np.zeros((3072, 4096, 3), np.uint8)
    image[1000:2000, 1500:2500] = (30, 200, 60)
    msg = numpy_to_image(image, 'bgr8')
    msg.header.stamp.sec, msg.header.frame_id = 777, 'big_optical'
    deadline = time.monotonic() + 60
    answered = lambda: any(m.header.stamp.sec == 777 for m in instances)
    while time.monotonic() < deadline and not answered():
        pub.publish(msg)
        wait_for(node, spin_until, answered, proc, log, 5.0)
    assert answered(), log.read_text()[-2000:]
    result = next(m for m in instances if m.header.stamp.sec == 777)
    assert (result.height, result.width, result.header.frame_id) == (3072, 4096, 'big_optical')


@pytest.fixture(scope='module')
def override_node(tmp_path_factory):
    """input_reliability best_effort, but the image topic overridden to reliable in the params."""
    log = tmp_path_factory.mktemp('override') / 'yolact.log'
    remaps = {'image': '/ovr/image', 'depth': '/ovr/depth', 'camera_info': '/ovr/info',
              'instances': '/ovr/instances'}
    proc = start(node_command(node_name='yolact_ovr', params_file=PARAMS_FILE, parameters={
        'use_depth': True, 'input_reliability': 'best_effort',
        'qos_overrides./ovr/image.subscription.reliability': 'reliable'}, remaps=remaps), log)
    yield proc, log
    assert stop(proc) == 0, log.read_text()[-3000:]


def test_qos_override_of_the_image_leaves_depth_alone(override_node, make_node, spin_until):
    proc, log = override_node
    node = make_node('override_probe')
    assert wait_for(node, spin_until, lambda: 'Ready' in log.read_text(), proc, log, 120)

    def reliability(topic):
        infos = [i for i in node.get_subscriptions_info_by_topic(topic)
                 if i.node_name == 'yolact_ovr']
        return [i.qos_profile.reliability.name for i in infos]
    # discovery of the node's subscriptions may take a moment on a loaded machine
    assert wait_for(node, spin_until, lambda: all(reliability(t) for t in (
        '/ovr/image', '/ovr/depth', '/ovr/info')), proc, log, 30)
    assert reliability('/ovr/image') == ['RELIABLE']
    assert reliability('/ovr/depth') == ['BEST_EFFORT']
    assert reliability('/ovr/info') == ['BEST_EFFORT']


def small_rgbd(stamp_sec: int, depth_hw=(90, 160)):
    """A 320x240 colour frame with one bright square, depth of the given size at 1.3 m."""
    from sensor_msgs.msg import CameraInfo

    from instseg_ros.ros.conversions import numpy_to_image
    from instseg_ros.synth.scene import Camera, render_scene
    scene = render_scene(31, Camera(320, 240))
    color = numpy_to_image(scene.image_bgr, 'bgr8')
    depth = numpy_to_image(np.full(depth_hw, 1304, np.uint16), '16UC1')
    info = CameraInfo(width=depth_hw[1], height=depth_hw[0])
    info.k = [100.0, 0.0, depth_hw[1] / 2, 0.0, 100.0, depth_hw[0] / 2, 0.0, 0.0, 1.0]
    for msg in (color, depth, info):
        msg.header.stamp.sec, msg.header.frame_id = stamp_sec, 'ovr_optical'
    return color, depth, info


def test_depth_of_another_aspect_ratio_is_rejected_once(override_node, make_node, spin_until):
    from instseg_msgs.msg import InstanceMaskArray
    from sensor_msgs.msg import CameraInfo, Image
    proc, log = override_node
    node = make_node('aspect_client')
    results = []
    node.create_subscription(InstanceMaskArray, '/ovr/instances', results.append, 50)
    pubs = [node.create_publisher(kind, topic, 10) for kind, topic in
            ((Image, '/ovr/image'), (Image, '/ovr/depth'), (CameraInfo, '/ovr/info'))]
    assert wait_for(node, spin_until, lambda: all(p.get_subscription_count() for p in pubs),
                    proc, log, 60)
    wait_for(node, spin_until, lambda: False, proc, log, 1.5)   # QoS check of the new publishers
    for sec in range(100, 112):                                  # 12 frames in ~3 s (< 5 s period)
        color, depth, info = small_rgbd(sec)
        pubs[2].publish(info)
        pubs[1].publish(depth)
        pubs[0].publish(color)
        wait_for(node, spin_until, lambda: False, proc, log, 0.25)
    assert wait_for(node, spin_until, lambda: any(m.header.stamp.sec >= 108 for m in results),
                    proc, log, 30), log.read_text()[-2000:]
    answered = [m for m in results if 100 <= m.header.stamp.sec < 112]
    assert answered and sum(len(m.instances) for m in answered) > 0
    assert not any(i.has_position for m in answered for i in m.instances)
    errors = [line for line in log.read_text().splitlines()
              if 'depth aspect ratio differs from the colour image' in line]
    assert len(errors) == 1, errors


@pytest.fixture(scope='module')
def plain_node(tmp_path_factory):
    """Colour only, every parameter at its default."""
    log = tmp_path_factory.mktemp('plain') / 'yolact.log'
    proc = start(node_command(node_name='yolact_plain', params_file=PARAMS_FILE,
                              remaps={'image': '/plain/image'}), log)
    yield proc, log
    assert stop(proc) == 0, log.read_text()[-3000:]


def test_distinct_bad_encodings_do_not_flood_the_log(plain_node, make_node, spin_until):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    proc, log = plain_node
    node = make_node('flood_client')
    pub = node.create_publisher(Image, '/plain/image', 100)
    diagnostics = []
    node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    assert wait_for(node, spin_until, lambda: 'Ready' in log.read_text()
                    and pub.get_subscription_count() > 0, proc, log, 120)
    before = log.read_text().count('\n')
    for i in range(1000):
        msg = Image(height=4, width=4, step=12, encoding=f'bogus_{i:04d}_' + 'x' * 900,
                    data=bytes(48))
        pub.publish(msg)
        if i % 5 == 0:  # ~100 per second: the reader's keep-last history keeps up
            wait_for(node, spin_until, lambda: False, proc, log, 0.05)

    def counter(key):
        values = [diagnostics_values([d]) for d in diagnostics
                  if d.status and d.status[0].name.startswith('yolact_plain')]
        return int(values[-1].get(f'frames_{key}', 0)) if values else 0
    wait_for(node, spin_until, lambda: counter('received') >= 1000, proc, log, 20)
    wait_for(node, spin_until, lambda: False, proc, log, 2.0)
    lines = log.read_text().splitlines()[before:]
    bad = [line for line in lines if 'bad input image' in line]
    assert counter('received') >= 900, counter('received')
    # the newest-frame slot drops most of the burst; the rest are decoded and refused
    assert counter('bad_input') >= 50, counter('bad_input')
    assert 1 <= len(bad) <= 3, bad                     # ... a handful of lines
    assert all(len(line) < 300 for line in bad), bad   # long encodings cut


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise AssertionError('no VmRSS')


def test_16384_squared_png_is_rejected_without_memory_growth(make_node, spin_until, tmp_path):
    from sensor_msgs.msg import CompressedImage
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'core'))
    from test_image_codec import huge_png
    log = tmp_path / 'png.log'
    proc = start(node_command(node_name='yolact_png', params_file=PARAMS_FILE,
                              parameters={'input_compressed': True},
                              remaps={'image': '/png_cam/image'}), log)
    try:
        node = make_node('png_client')
        pub = node.create_publisher(CompressedImage, '/png_cam/image/compressed', 10)
        assert wait_for(node, spin_until, lambda: 'Ready' in log.read_text()
                        and pub.get_subscription_count() > 0, proc, log, 120)
        wait_for(node, spin_until, lambda: False, proc, log, 1.5)
        before = rss_mib(proc.pid)
        msg = CompressedImage(format='png', data=huge_png(16384, 16384))
        assert len(msg.data) < 1_000_000
        deadline = time.monotonic() + 30
        refused = lambda: 'more than max_image_pixels' in log.read_text()
        while time.monotonic() < deadline and not refused():
            pub.publish(msg)
            wait_for(node, spin_until, refused, proc, log, 2.0)
        assert refused(), log.read_text()[-2000:]
        grown = rss_mib(proc.pid) - before
        assert grown < 200, f'RSS grew by {grown:.0f} MiB'
        assert '268435456 pixels' in log.read_text()
    finally:
        assert stop(proc) == 0
