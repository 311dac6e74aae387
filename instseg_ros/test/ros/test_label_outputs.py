"""Label images, class map and vision_msgs detections (ros/label_outputs.py).

In-process: message contents from hand-made and generated frames (instseg_msgs types).
Across processes: a fixture process publishes /instances + the label outputs of a tracked
generated sequence; a second process with vision_msgs (the test-only package of test_pkgs/,
built into test_ws/ by scripts/build_test_msgs.sh on first use, ~30 s, then ~1 s) receives
Detection2DArray / Detection3DArray and a late label_info; this process receives /instances and
labels/class and checks them field by field against each other.
"""

import json
import os
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import expected_class_image, start, stop  # noqa: E402

pytestmark = pytest.mark.ros

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent.parent
REPO = PACKAGE_ROOT.parent
NAMES = ('ball', 'box', 'triangle')


def hand_made_result():
    block = np.ones((2, 3), dtype=bool)
    ell = np.array([[1, 0], [1, 1]], dtype=bool)
    return SimpleNamespace(image_size=(4, 6), rois=[(0, 0, block), (2, 1, ell)],
                           scores=np.array([0.5, 0.9], np.float32), labels=np.array([2, 0]),
                           instances_3d=None)


def test_label_info_maps_pixel_values_to_names():
    from instseg_msgs.msg import LabelInfo, VisionClass

    from instseg_ros.ros.label_outputs import label_info_msg
    msg = label_info_msg(NAMES, 0.25, types=(LabelInfo, VisionClass))
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [
        (0, 'background'), (1, 'ball'), (2, 'box'), (3, 'triangle')]
    assert msg.threshold == pytest.approx(0.25)


def test_label_images_from_rois():
    from std_msgs.msg import Header

    from instseg_ros.ros.conversions import image_to_numpy
    from instseg_ros.ros.label_outputs import label_image_msgs
    header = Header(frame_id='cam')
    class_msg, instance_msg = label_image_msgs(hand_made_result(), header, len(NAMES), [7, 0])
    assert class_msg.encoding == 'mono8' and instance_msg.encoding == 'mono16'
    assert class_msg.header.frame_id == instance_msg.header.frame_id == 'cam'
    assert image_to_numpy(class_msg).tolist() == [[3, 3, 3, 0, 0, 0], [3, 3, 1, 0, 0, 0],
                                                  [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]]
    assert image_to_numpy(instance_msg).tolist() == [[7, 7, 7, 0, 0, 0], [7, 7, 0, 0, 0, 0],
                                                     [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    none_msg, index_msg = label_image_msgs(hand_made_result(), header, 300, None,
                                           want_class=False)
    assert none_msg is None and image_to_numpy(index_msg)[1, 2] == 2
    big, _ = label_image_msgs(hand_made_result(), header, 300, want_instance=False)
    assert big.encoding == 'mono16'


def test_packer_fills_track_fields_and_keeps_its_old_signature():
    from std_msgs.msg import Header

    from instseg_ros.ros.conversions import InstancesPacker, instances_to_msg
    result, header = hand_made_result(), Header()
    packer = InstancesPacker()
    msg = packer.pack(header, result.image_size, result.rois, result.scores, result.labels, NAMES,
                      None, track_ids=np.array([12, 0]), track_ages=np.array([30, 1], np.int32))
    assert [(i.id, i.track_id, i.track_age) for i in msg.instances] == [(0, 12, 30), (1, 0, 1)]
    msg = packer.pack(header, result.image_size, result.rois, result.scores, result.labels, NAMES)
    assert [(i.track_id, i.track_age) for i in msg.instances] == [(0, 0), (0, 0)]
    with pytest.raises(ValueError):
        instances_to_msg(header, result.image_size, result.rois, result.scores, result.labels,
                         NAMES, track_ids=[1])


def test_tracker_params_from_node_params():
    import yaml

    from instseg_ros.ros.params import NodeParams
    values = yaml.safe_load((PACKAGE_ROOT / 'config' / 'yolact.yaml').read_text())
    params = NodeParams.from_values(values['/**']['ros__parameters'])
    tracker = params.tracker_params()
    assert (tracker.enabled, tracker.min_hits, tracker.max_age) == (True, 3, 15)
    assert tracker.max_distance_m == pytest.approx(0.3)


# ------------------------------------------------------------------------------ cross-process

@pytest.fixture(scope='module')
def test_ws():
    """test_ws/install with the test-only vision_msgs (built here on first use)."""
    proc = subprocess.run(['bash', str(REPO / 'scripts' / 'build_test_msgs.sh')],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return REPO / 'test_ws' / 'install'


def with_workspace(install: pathlib.Path, script: pathlib.Path, *args: str) -> list[str]:
    """bash command running ``script`` with ``install`` sourced (vision_msgs importable)."""
    quoted = ' '.join(f"'{a}'" for a in (sys.executable, str(script), *args))
    return ['bash', '-c', f"source '{install}/setup.bash' && exec {quoted}"]


def test_vision_msgs_detections_match_instances_across_processes(test_ws, tmp_path, make_node,
                                                                 spin_until):
    from instseg_msgs.msg import InstanceMaskArray
    from sensor_msgs.msg import Image

    from instseg_ros.ros.conversions import image_to_numpy
    ns = f'/labels_test_{os.getpid()}'
    env = {'PYTHONPATH': os.pathsep.join(p for p in (str(PACKAGE_ROOT),
                                                     os.environ.get('PYTHONPATH')) if p)}
    publisher = start(with_workspace(test_ws, HERE / 'publish_label_outputs_fixture.py',
                                     '--namespace', ns), tmp_path / 'publisher.log', env)
    out = tmp_path / 'vision.json'
    listener = None
    try:
        node = make_node('label_outputs_checker')
        instances, class_images = {}, {}

        def key(msg):
            return f'{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}'
        node.create_subscription(InstanceMaskArray, f'{ns}/instances',
                                 lambda m: instances.__setitem__(key(m), m), 50)
        node.create_subscription(Image, f'{ns}/labels/class',
                                 lambda m: class_images.__setitem__(key(m), m), 50)
        # this checker must already receive /instances while the listener records detections
        assert spin_until(node, lambda: len(instances) >= 2 and class_images
                          or publisher.poll() is not None, timeout_s=90), \
            (tmp_path / 'publisher.log').read_text()
        listener = start(with_workspace(test_ws, HERE / 'listen_vision_msgs_fixture.py',
                                        '--namespace', ns, '--out', str(out), '--count', '8'),
                         tmp_path / 'listener.log', env)
        assert spin_until(node, lambda: listener.poll() is not None, timeout_s=90), \
            (tmp_path / 'listener.log').read_text()
        assert listener.returncode == 0, (tmp_path / 'listener.log').read_text()
    finally:
        if listener is not None:
            stop(listener)
        stop(publisher)
    log = (tmp_path / 'publisher.log').read_text()
    assert 'vision_msgs: True' in log, log
    data = json.loads(out.read_text())
    assert data['label_info']['classes'][:3] == [[0, 'background'], [1, 'ball'], [2, 'box']]
    assert data['label_info']['threshold'] == pytest.approx(0.25)
    checked_2d = checked_3d = 0
    tracked = set()
    for stamp, dets in data['d2'].items():
        if stamp not in instances:
            continue
        msg = instances[stamp]
        assert len(dets) == len(msg.instances)
        for det, inst in zip(dets, msg.instances):
            roi = inst.roi
            assert det['cx'] == pytest.approx(roi.x_offset + roi.width / 2)
            assert det['cy'] == pytest.approx(roi.y_offset + roi.height / 2)
            assert (det['sx'], det['sy'], det['theta']) == (roi.width, roi.height, 0.0)
            assert det['id'] == (str(inst.track_id) if inst.track_id else '')
            assert det['class_id'] == str(inst.class_id + 1)
            assert det['score'] == pytest.approx(inst.score, abs=1e-6)
            assert det['frame_id'] == msg.header.frame_id == 'cam_optical'
            tracked.add(inst.track_id)
        checked_2d += 1
    for stamp, dets in data['d3'].items():
        if stamp not in instances:
            continue
        with_3d = [i for i in instances[stamp].instances if i.has_position]
        assert len(dets) == len(with_3d) > 0
        for det, inst in zip(dets, with_3d):
            assert det['center'] == pytest.approx([inst.box_center.x, inst.box_center.y,
                                                   inst.box_center.z])
            assert det['size'] == pytest.approx([inst.box_size.x, inst.box_size.y,
                                                 inst.box_size.z])
            assert det['position'] == pytest.approx([inst.position.x, inst.position.y,
                                                     inst.position.z])
            assert det['orientation_w'] == 1.0
            assert det['id'] == (str(inst.track_id) if inst.track_id else '')
            assert det['class_id'] == str(inst.class_id + 1)
        checked_3d += 1
    assert checked_2d >= 5 and checked_3d >= 5, (checked_2d, checked_3d)
    assert tracked - {0}, 'no tracked instance seen'
    # labels/class pixels equal the class (+1) of the covering mask of the same frame
    compared = 0
    for stamp, image in class_images.items():
        if stamp not in instances:
            continue
        msg = instances[stamp]
        labels = image_to_numpy(image)
        assert (labels == expected_class_image(msg, labels.shape)).all()
        compared += 1
    assert compared >= 3
