"""The yolact node as a separate process over the real middleware, started with the arguments the
launch file produces (--ros-args -r __node:=yolact --params-file config/yolact.yaml -p ... -r ...).
"""

import pathlib
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import (PARAMS_FILE, make_small_checkpoint, node_command, start,  # noqa: E402
                         stop, wait_exit)

from instseg_ros.core.encoding import paste_roi  # noqa: E402
from instseg_ros.core.predictor import InferenceParams, Predictor  # noqa: E402
from instseg_ros.synth.scene import CLASS_NAMES, Camera, render_scene  # noqa: E402

pytestmark = pytest.mark.ros
IMAGE_TOPIC = '/test_cam/image'
NAMESPACE = '/robot'
INSTANCES_TOPIC = f'{NAMESPACE}/instances'
NODE = f'{NAMESPACE}/yolact'


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> pathlib.Path:
    return make_small_checkpoint(tmp_path_factory.mktemp('weights') / 'yolact_small_test.pth', seed=0)


@pytest.fixture(scope='module')
def node_process(weights, tmp_path_factory):
    log = tmp_path_factory.mktemp('logs') / 'yolact.log'
    proc = start(node_command(namespace=NAMESPACE, params_file=PARAMS_FILE,
                              parameters={'weights': str(weights), 'device': 'cpu',
                                          'score_threshold': 0.05, 'max_detections': 8},
                              remaps={'image': IMAGE_TOPIC}), log)
    yield proc, log
    code = stop(proc)
    print(log.read_text()[-3000:])
    assert code == 0, 'the node must exit cleanly on SIGINT'


@pytest.fixture
def client(make_node, spin_until, node_process):
    """A test node with an image publisher and an /instances subscriber, matched to the node."""
    from instseg_msgs.msg import InstanceMaskArray
    from sensor_msgs.msg import Image

    proc, log = node_process
    node = make_node('node_test_client')
    received = []
    node.create_subscription(InstanceMaskArray, INSTANCES_TOPIC, received.append, 10)
    pub = node.create_publisher(Image, IMAGE_TOPIC, 10)
    matched = spin_until(node, lambda: pub.get_subscription_count() > 0
                         and node.count_publishers(INSTANCES_TOPIC) > 0 or proc.poll() is not None,
                         timeout_s=90)
    assert proc.poll() is None, f'node died at startup:\n{log.read_text()[-3000:]}'
    assert matched, 'node topics not discovered'
    return node, pub, received


def publish_until(node, spin_until, pub, msg, predicate, timeout_s=60.0, period_s=1.0):
    """Publish ``msg`` every ``period_s`` until ``predicate()`` holds (the node may still be
    re-subscribing to match this publisher's QoS when the first one goes out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.publish(msg)
        if spin_until(node, predicate, timeout_s=period_s):
            return True
    return False


def send_and_wait(client, spin_until, msg, timeout_s=60.0):
    """Publish ``msg`` until the result with its stamp arrives; returns that InstanceMaskArray."""
    node, pub, received = client

    def stamped(m):
        return (m.header.stamp.sec, m.header.stamp.nanosec) == (msg.header.stamp.sec,
                                                                 msg.header.stamp.nanosec)
    assert publish_until(node, spin_until, pub, msg, lambda: any(stamped(m) for m in received),
                         timeout_s), 'no InstanceMaskArray for the published image'
    return next(m for m in received if stamped(m))


def image_msg(image_bgr, sec, frame_id='cam_optical'):
    from instseg_ros.ros.conversions import numpy_to_image
    msg = numpy_to_image(image_bgr, 'bgr8')
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 123
    msg.header.frame_id = frame_id
    return msg


def set_params(node, spin_until, **values):
    """Set parameters of the node under test through its real parameter service."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    cli = node.create_client(SetParameters, f'{NODE}/set_parameters')
    assert spin_until(node, cli.service_is_ready, timeout_s=20)
    future = cli.call_async(SetParameters.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]))
    assert spin_until(node, future.done, timeout_s=20)
    node.destroy_client(cli)
    return future.result().results


def test_instances_match_predictor_and_keep_the_source_header(client, spin_until, weights):
    scene = render_scene(7, Camera(320, 240))
    msg = send_and_wait(client, spin_until, image_msg(scene.image_bgr, 41))
    assert msg.header.frame_id == 'cam_optical'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (41, 123)
    assert (msg.height, msg.width) == (240, 320)

    predictor = Predictor.from_checkpoint(weights, device='cpu', class_names=CLASS_NAMES)
    expected = predictor(scene.image_bgr, 'bgr', InferenceParams(score_threshold=0.05,
                                                                 max_detections=8))
    assert len(msg.instances) == len(expected) > 0
    for i, inst in enumerate(msg.instances):
        assert inst.id == i
        assert inst.class_id == int(expected.labels[i])
        assert inst.class_name == CLASS_NAMES[inst.class_id]
        assert inst.score == pytest.approx(float(expected.scores[i]), abs=1e-4)
        assert inst.mask.encoding == 'mono8'
        assert (inst.mask.height, inst.mask.width) == (inst.roi.height, inst.roi.width)
        crop = np.frombuffer(bytes(inst.mask.data), np.uint8).reshape(
            inst.roi.height, inst.roi.width) == 255
        full = paste_roi(inst.roi.x_offset, inst.roi.y_offset, crop, 240, 320)
        truth = expected.masks[i].numpy()
        iou = (full & truth).sum() / max((full | truth).sum(), 1)
        assert iou > 0.99
        assert not inst.has_position  # use_depth is off


def test_runtime_parameters_change_results_and_bad_values_are_rejected(client, spin_until):
    node, _pub, _received = client
    scene = render_scene(8, Camera(320, 240))
    baseline = send_and_wait(client, spin_until, image_msg(scene.image_bgr, 50))
    assert len(baseline.instances) > 0
    keep = baseline.instances[0].class_name

    results = set_params(node, spin_until, classes=[keep])
    assert results[0].successful
    filtered = send_and_wait(client, spin_until, image_msg(scene.image_bgr, 51))
    assert len(filtered.instances) > 0
    assert {i.class_name for i in filtered.instances} == {keep}

    results = set_params(node, spin_until, classes=['no_such_class'])
    assert not results[0].successful and 'no_such_class' in results[0].reason

    results = set_params(node, spin_until, score_threshold=1.5)
    assert not results[0].successful
    still = send_and_wait(client, spin_until, image_msg(scene.image_bgr, 52))
    assert len(still.instances) == len(filtered.instances)  # old threshold kept

    results = set_params(node, spin_until, classes=[], score_threshold=0.999)
    assert results[0].successful
    strict = send_and_wait(client, spin_until, image_msg(scene.image_bgr, 53))
    assert len(strict.instances) == 0

    results = set_params(node, spin_until, weights='/other.pth')
    assert not results[0].successful  # read-only
    assert set_params(node, spin_until, score_threshold=0.05)[0].successful


def test_bad_input_is_skipped_and_the_node_keeps_working(client, spin_until, node_process):
    from sensor_msgs.msg import Image
    node, pub, _received = client
    proc, log = node_process
    good = render_scene(9, Camera(320, 240)).image_bgr
    bad = []
    unsupported = image_msg(good, 60)
    unsupported.encoding = 'xyz_unknown'
    bad.append(unsupported)
    truncated = image_msg(good, 61)
    truncated.data = bytes(truncated.data)[: truncated.step * 10]
    bad.append(truncated)
    bad.append(Image(encoding='bgr8', height=0, width=0, step=0))
    expected_errors = ["unsupported image encoding 'xyz_unknown'",
                       'expected height*step=230400', 'has zero size']
    for msg, error in zip(bad, expected_errors):
        assert publish_until(node, spin_until, pub, msg, lambda: error in log.read_text(),
                             timeout_s=30, period_s=0.5), log.read_text()[-2000:]
    result = send_and_wait(client, spin_until, image_msg(good, 62))
    assert proc.poll() is None
    assert result.header.stamp.sec == 62


def test_overlay_markers_and_diagnostics(client, spin_until):
    """Subscribed outputs: the overlay (bgr8, source header, masks drawn), markers (no depth: only
    the DELETEALL that clears old boxes) and /diagnostics with rates, counters and stage times."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import Marker, MarkerArray

    from instseg_ros.ros.conversions import image_to_numpy
    node, pub, _received = client
    overlays, markers, statuses = [], [], []
    node.create_subscription(Image, f'{NAMESPACE}/overlay', overlays.append, 10)
    node.create_subscription(MarkerArray, f'{NAMESPACE}/markers', markers.append, 10)
    node.create_subscription(DiagnosticArray, '/diagnostics', lambda m: statuses.extend(
        s for s in m.status if s.name.startswith(NODE.lstrip('/'))), 10)
    scene = render_scene(11, Camera(320, 240))
    msg = image_msg(scene.image_bgr, 70)
    assert publish_until(node, spin_until, pub, msg, lambda: any(
        o.header.stamp.sec == 70 for o in overlays) and any(m.markers and m.markers[0].header.stamp.sec == 70
                                                             for m in markers), timeout_s=60)
    overlay = next(o for o in overlays if o.header.stamp.sec == 70)
    assert overlay.encoding == 'bgr8' and overlay.header.frame_id == 'cam_optical'
    drawn = image_to_numpy(overlay)
    assert drawn.shape == (240, 320, 3)
    assert (drawn != scene.image_bgr).any(axis=2).mean() > 0.01  # masks, boxes and labels drawn
    marker_msg = next(m for m in markers if m.markers and m.markers[0].header.stamp.sec == 70)
    assert [m.action for m in marker_msg.markers] == [Marker.DELETEALL]
    assert spin_until(node, lambda: any('overhead_ms_p50' in {kv.key for kv in s.values} for s in statuses),
                      timeout_s=10)
    values = {kv.key: kv.value for kv in statuses[-1].values}
    assert values['device'] == 'cpu' and int(values['frames_processed']) >= 1
    assert float(values['input_rate_hz']) >= 0.0 and int(values['frames_dropped']) >= 0
    for stage in ('decode', 'preprocess', 'forward', 'postprocess', 'publish', 'overhead', 'latency'):
        assert float(values[f'{stage}_ms_p50']) > 0.0, stage
    # the node's own work excludes the forward pass; both are part of the latency
    assert float(values['overhead_ms_p50']) < float(values['latency_ms_p50'])
    assert float(values['forward_ms_p50']) < float(values['latency_ms_p50'])


def test_missing_weights_exit_non_zero_with_instructions(tmp_path):
    log = tmp_path / 'missing.log'
    proc = start(node_command(params_file=PARAMS_FILE,
                              parameters={'weights': '/nonexistent/yolact_base_54_800000.pth'}),
                 log)
    code = wait_exit(proc, 60)
    text = log.read_text()
    assert code not in (0, None), text
    assert '/nonexistent/yolact_base_54_800000.pth' in text and 'weights:=' in text


def test_mismatched_weights_exit_non_zero_naming_the_preset(tmp_path, weights):
    log = tmp_path / 'mismatch.log'
    proc = start(node_command(params_file=PARAMS_FILE,
                              parameters={'weights': str(weights), 'preset': 'yolact_resnet50'}),
                 log)
    code = wait_exit(proc, 60)
    text = log.read_text()
    assert code not in (0, None), text
    assert 'yolact_resnet50' in text and str(weights) in text


def test_compressed_input_and_undecodable_data(make_node, spin_until, weights, tmp_path):
    """input_compressed:=true: garbage JPEG bytes are skipped with an error naming the format,
    the next good JPEG is answered with its header."""
    from instseg_msgs.msg import InstanceMaskArray
    from sensor_msgs.msg import CompressedImage

    from instseg_ros.ros.conversions import bgr8_to_compressed
    log = tmp_path / 'compressed.log'
    proc = start(node_command(node_name='yolact_jpeg', params_file=PARAMS_FILE,
                              parameters={'weights': str(weights), 'device': 'cpu',
                                          'input_compressed': True, 'score_threshold': 0.05},
                              remaps={'image': '/jpeg_cam/image',  # -> /jpeg_cam/image/compressed
                                      'instances': '/jpeg_cam/instances'}), log)
    try:
        node = make_node('compressed_client')
        received = []
        node.create_subscription(InstanceMaskArray, '/jpeg_cam/instances', received.append, 10)
        pub = node.create_publisher(CompressedImage, '/jpeg_cam/image/compressed', 10)
        assert spin_until(node, lambda: pub.get_subscription_count() > 0 or proc.poll() is not None,
                          timeout_s=90), log.read_text()[-2000:]
        assert proc.poll() is None, log.read_text()[-3000:]
        garbage = CompressedImage(format='jpeg', data=b'\xff\xd8 definitely not a jpeg')
        garbage.header.stamp.sec = 70
        error = "cannot decode CompressedImage with format 'jpeg'"
        assert publish_until(node, spin_until, pub, garbage, lambda: error in log.read_text(),
                             timeout_s=30, period_s=0.5), log.read_text()[-2000:]
        good = bgr8_to_compressed(render_scene(10, Camera(320, 240)).image_bgr, 'jpeg')
        good.header.stamp.sec, good.header.frame_id = 71, 'jpeg_optical'
        assert publish_until(node, spin_until, pub, good,
                             lambda: any(m.header.stamp.sec == 71 for m in received)), \
            log.read_text()[-3000:]
        result = next(m for m in received if m.header.stamp.sec == 71)
        assert result.header.frame_id == 'jpeg_optical' and (result.height, result.width) == (240, 320)
        assert not any(m.header.stamp.sec == 70 for m in received)
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
