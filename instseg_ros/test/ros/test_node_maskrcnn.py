"""The node with a torchvision Mask R-CNN checkpoint, as a separate process over the real middleware
(started as the launch file does, weights:=<random maskrcnn_resnet50_fpn_v2 file>, preset auto):
same topics and messages as with YOLACT, results equal to the in-process segmenter."""

import pathlib
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import (PARAMS_FILE, make_maskrcnn_checkpoint, node_command, start,  # noqa: E402
                         stop)

from instseg_ros.core.encoding import paste_roi  # noqa: E402
from instseg_ros.core.segmenter import InferenceParams, load_segmenter  # noqa: E402

pytestmark = pytest.mark.ros
IMAGE_TOPIC = '/mrcnn_cam/image'
INSTANCES_TOPIC = '/instances'
MIN_SIZE = 240  # maskrcnn_min_size: a 240x320 image runs at its own size (max side 400)


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp('weights')
    return make_maskrcnn_checkpoint(folder / 'maskrcnn_resnet50_fpn_v2_coco-random.pth',
                                    'maskrcnn_resnet50_fpn_v2', seed=5)


def test_node_publishes_mask_rcnn_instances(weights, tmp_path, make_node, spin_until):
    from instseg_msgs.msg import InstanceMaskArray
    from sensor_msgs.msg import Image

    from instseg_ros.ros.conversions import numpy_to_image

    log = tmp_path / 'node.log'
    proc = start(node_command(params_file=PARAMS_FILE, parameters={
        'weights': str(weights), 'device': 'cpu', 'maskrcnn_min_size': MIN_SIZE,
        'score_threshold': 0.3, 'max_detections': 6, 'track_enabled': False},
        remaps={'image': IMAGE_TOPIC}), log)
    try:
        node = make_node('maskrcnn_test_client')
        received = []
        node.create_subscription(InstanceMaskArray, INSTANCES_TOPIC, received.append, 10)
        pub = node.create_publisher(Image, IMAGE_TOPIC, 10)
        matched = spin_until(node, lambda: pub.get_subscription_count() > 0
                             and node.count_publishers(INSTANCES_TOPIC) > 0 or proc.poll() is not None,
                             timeout_s=120)
        assert proc.poll() is None, f'node died at startup:\n{log.read_text()[-3000:]}'
        assert matched, 'node topics not discovered'
        rng = np.random.default_rng(4)
        image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        image[60:180, 80:240] = (40, 160, 220)
        msg = numpy_to_image(image, 'bgr8')
        msg.header.stamp.sec, msg.header.frame_id = 77, 'cam_optical'
        deadline = time.monotonic() + 90
        while not received and time.monotonic() < deadline:
            pub.publish(msg)
            spin_until(node, lambda: bool(received), timeout_s=3.0)
        assert received, f'no InstanceMaskArray:\n{log.read_text()[-3000:]}'
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert 'Ready: model maskrcnn_resnet50_fpn_v2 on cpu' in text

    out = received[0]
    assert (out.header.stamp.sec, out.header.frame_id) == (77, 'cam_optical')
    assert (out.height, out.width) == (240, 320)
    expected = load_segmenter(weights, device='cpu', min_size=MIN_SIZE, max_size=400).predict_rois(
        image, params=InferenceParams(score_threshold=0.3, max_detections=6))
    assert len(out.instances) == len(expected.scores) == 6
    for i, inst in enumerate(out.instances):
        assert inst.class_name == 'person' and inst.class_id == int(expected.labels[i]) == 0
        assert inst.score == pytest.approx(float(expected.scores[i]), abs=1e-4)
        assert inst.mask.encoding == 'mono8'
        crop = np.frombuffer(bytes(inst.mask.data), np.uint8).reshape(
            inst.roi.height, inst.roi.width) == 255
        x0, y0, want = expected.rois[i]
        assert (inst.roi.x_offset, inst.roi.y_offset) == (x0, y0)
        full = paste_roi(x0, y0, crop, 240, 320)
        truth = paste_roi(x0, y0, want, 240, 320)
        assert (full & truth).sum() / (full | truth).sum() > 0.99


def test_startup_errors_for_mask_rcnn_files_are_one_line_naming_the_fix(weights, tmp_path):
    from dataclasses import replace

    from instseg_ros.ros.model_loading import StartupError, load_pipeline
    from instseg_ros.ros.params import PARAMETERS, NodeParams

    class Logger:
        def info(self, text):
            pass

        warning = info

    params = replace(NodeParams.from_values({p.name: p.default for p in PARAMETERS}),
                     weights=str(weights), preset='maskrcnn_resnet50_fpn', device='cpu')
    with pytest.raises(StartupError) as error:
        load_pipeline(params, Logger())
    text = str(error.value)
    assert '\n' not in text
    assert "does not match preset 'maskrcnn_resnet50_fpn'" in text
    assert 'pass preset:=maskrcnn_resnet50_fpn_v2' in text
    assert 'maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth' in text  # the naming hint
    garbage = tmp_path / 'maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(StartupError, match='cannot read checkpoint'):
        load_pipeline(replace(params, weights=str(garbage), preset='auto'), Logger())
