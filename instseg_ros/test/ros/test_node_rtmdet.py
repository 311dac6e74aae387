"""The node with an RTMDet-Ins-tiny checkpoint saved as mmdetection publishes it (random weights,
{'meta', 'state_dict'}, COCO class names in meta), over the real middleware, the node a separate
process started with the default params file: the Ready line names the family and the preset,
and a published synthetic scene comes back as instances equal to the pipeline's own result (the
same classes and scores; instances whose mask is empty are dropped by both). Also on OpenVINO
(bf16 asked: OpenVINO's own bf16 where the CPU has it), the checkpoint exported into the cache at
startup."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import PARAMS_FILE, node_command, start, stop, wait_for_text  # noqa: E402

pytestmark = pytest.mark.ros
NAME = 'rtmdet-ins_tiny_8xb32-300e_coco_20221130_151134-random.pth'


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> pathlib.Path:
    import torch

    from instseg_ros.core.classes import COCO_CLASSES
    from instseg_ros.core.models.rtmdet.config import get_config
    from instseg_ros.core.models.rtmdet.testing import calibrated_state_dict
    state_dict = calibrated_state_dict(get_config('rtmdet_ins_tiny'), seed=0, cls_bias=0.0)
    path = tmp_path_factory.mktemp('rtmdet') / NAME
    torch.save({'meta': {'mmdet_version': '3.3.0', 'dataset_meta': {'classes': COCO_CLASSES}},
                'state_dict': state_dict}, path)
    return path


@pytest.mark.parametrize('backend', ['torch', 'openvino'])
def test_node_runs_an_mmdetection_rtmdet_ins_checkpoint(backend, weights, tmp_path, make_node, spin_until,
                                                        monkeypatch):
    if backend == 'openvino':
        pytest.importorskip('openvino')
        pytest.importorskip('onnx')
    monkeypatch.setenv('INSTSEG_CACHE_DIR', str(tmp_path / 'cache'))
    from instseg_msgs.msg import InstanceMaskArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from instseg_ros.core.classes import COCO_CLASSES
    from instseg_ros.core.pipeline import FramePipeline
    from instseg_ros.core.postprocess import InferenceParams
    from instseg_ros.core.segmenter import load_segmenter
    from instseg_ros.ros.conversions import numpy_to_image
    from instseg_ros.synth.scene import Camera, render_scene
    log = tmp_path / 'yolact.log'
    proc = start(node_command(namespace='/rtm', params_file=PARAMS_FILE,
                              parameters={'weights': str(weights), 'device': 'cpu', 'backend': backend,
                                          'precision': 'bf16' if backend == 'openvino' else 'fp32'},
                              remaps={'image': '/rtm_cam/image'}), log)
    try:
        assert wait_for_text(log, 'Ready: model', proc, 240), log.read_text()[-3000:]
        runs = 'torch fp32' if backend == 'torch' else 'openvino bf16'
        assert (f'Ready: model rtmdet_ins_tiny on cpu ({runs}), RTMDet-Ins (mmdetection), '
                '80 classes') in log.read_text(), log.read_text()[-3000:]
        node = make_node('rtmdet_client')
        results = []
        node.create_subscription(InstanceMaskArray, '/rtm/instances', results.append, 10)
        pub = node.create_publisher(Image, '/rtm_cam/image',
                                    QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        image_bgr = render_scene(3, Camera(320, 240)).image_bgr
        msg = numpy_to_image(image_bgr, 'bgr8')
        msg.header.frame_id = 'cam'
        for sec in range(60):
            msg.header.stamp.sec = 100 + sec
            pub.publish(msg)
            if spin_until(node, lambda: bool(results), timeout_s=2.0):
                break
        assert results, log.read_text()[-3000:]
        got = results[0]
        assert (got.height, got.width, got.header.frame_id) == (240, 320, 'cam')
        params = InferenceParams(score_threshold=0.3, nms_threshold=0.5, top_k=200,
                                 max_detections=100)      # the params file's
        options = {'backend': 'openvino', 'precision': 'bf16'} if backend == 'openvino' else {}
        expected = FramePipeline(load_segmenter(weights, **options)).process(image_bgr, params)
        assert len(got.instances) == len(expected.scores) > 0
        assert [i.class_name for i in got.instances] == [COCO_CLASSES[k] for k in expected.labels]
        assert np.allclose([i.score for i in got.instances], expected.scores, atol=1e-4)
        assert proc.poll() is None and 'Traceback' not in log.read_text()
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
