"""Tracking and the standard outputs end to end: the synthetic camera (moving scene) and the
yolact node with the shipped model, each a process of its own, over the real middleware.

- the same object keeps the same track id across >= 20 consecutive /instances messages;
- labels/class pixels equal class_id + 1 of the highest-scored mask covering them (0 elsewhere),
  for the same stamp as /instances;
- a subscriber created late still receives label_info (transient local), class map
  0 = background, k + 1 = class k, with the node's score threshold.

"""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import PARAMS_FILE, expected_class_image, node_command, start, stop  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CAM = '/trackcam'
NS = '/tracking'


@pytest.fixture(scope='module')
def processes(tmp_path_factory):
    logs = tmp_path_factory.mktemp('logs')
    camera = start(node_command(module='instseg_ros.ros.synthetic_camera',
                                node_name='synthetic_camera', namespace=CAM,
                                parameters={'rate': 5.0, 'width': 320, 'height': 240,
                                            'pool_size': 1, 'seed': 1003, 'motion_px': 2.0,
                                            'motion_range_px': 30.0}),
                   logs / 'camera.log')
    node = start(node_command(namespace=NS, params_file=PARAMS_FILE,
                              parameters={'device': 'cpu', 'num_threads': 1,
                                          'score_threshold': 0.3, 'track_enabled': True,
                                          'track_min_hits': 2, 'track_max_age': 10,
                                          'publish_labels': True, 'publish_detections': True,
                                          'publish_overlay': False, 'publish_markers': False},
                              remaps={'image': f'{CAM}/color/image_raw'}),
                 logs / 'yolact.log')
    yield camera, node, logs
    stop(node)
    stop(camera)


def longest_run(messages) -> tuple[int, int]:
    """(track id, length) of the longest run of consecutive messages sharing a track id, with
    a constant class and a box that moves at most 12 px between consecutive messages."""
    best, runs = (0, 0), {}
    for msg in messages:
        seen = {i.track_id: i for i in msg.instances if i.track_id}
        for track_id in list(runs):
            if track_id not in seen:
                del runs[track_id]
        for track_id, inst in seen.items():
            box = (inst.roi.x_offset, inst.roi.y_offset, inst.class_id)
            count, last = runs.get(track_id, (0, None))
            ok = last is None or (last[2] == box[2] and abs(last[0] - box[0]) <= 12
                                  and abs(last[1] - box[1]) <= 12)
            runs[track_id] = (count + 1 if ok else 1, box)
            if runs[track_id][0] > best[1]:
                best = (track_id, runs[track_id][0])
    return best


def test_track_ids_labels_and_late_label_info(processes, make_node, spin_until):
    from instseg_msgs.msg import InstanceMaskArray
    from sensor_msgs.msg import Image

    from instseg_ros.ros.conversions import image_to_numpy
    from instseg_ros.ros.label_outputs import label_info_qos, label_info_types
    _camera, node_proc, logs = processes
    node = make_node('tracking_test_client')
    instances, class_images = [], {}
    node.create_subscription(InstanceMaskArray, f'{NS}/instances', instances.append, 50)
    node.create_subscription(Image, f'{NS}/labels/class', lambda m: class_images.__setitem__(
        (m.header.stamp.sec, m.header.stamp.nanosec), m), 50)
    ok = spin_until(node, lambda: longest_run(instances)[1] >= 20 or len(instances) >= 80
                    or node_proc.poll() is not None, timeout_s=180)
    ok = ok and longest_run(instances)[1] >= 20
    assert node_proc.poll() is None, (logs / 'yolact.log').read_text()[-3000:]
    assert ok, f'longest run {longest_run(instances)} in {len(instances)} messages'

    compared = 0
    for msg in instances[-10:]:
        image = class_images.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if image is None:
            continue
        assert image.encoding == 'mono8' and image.header.frame_id == msg.header.frame_id
        labels = image_to_numpy(image)
        assert (labels == expected_class_image(msg, labels.shape)).all()
        compared += 1
    assert compared >= 3

    late = make_node('tracking_test_late_subscriber')
    infos = []
    label_info_cls, _ = label_info_types()
    late.create_subscription(label_info_cls, f'{NS}/label_info', infos.append, label_info_qos())
    assert spin_until(late, lambda: bool(infos), timeout_s=20)
    info = infos[-1]
    assert (info.class_map[0].class_id, info.class_map[0].class_name) == (0, 'background')
    assert [c.class_name for c in info.class_map[1:]] == ['ball', 'box', 'triangle', 'ring',
                                                          'star']
    assert [c.class_id for c in info.class_map] == list(range(6))
    assert info.threshold == pytest.approx(0.3)
