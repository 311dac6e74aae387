"""instseg-bag end to end: synthetic bags written with rosbags, the tool run as a subprocess
(``python -m instseg_ros.tools.bag``, the module of the ``instseg-bag`` console script), the output
read back with rosbags.

Reference: the shared pipeline called directly in this test process (``FramePipeline.process`` frame
by frame, batch 1, as the node calls it, then ``add_depth`` with the frame's own depth image and
camera intrinsics), with the shipped model and the same parameters: the node runs exactly these
calls on each frame it processes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

import instseg_ros
from instseg_ros.core.encoding import paste_roi
from instseg_ros.core.geometry import CameraIntrinsics, DepthParams, depth_to_meters
from instseg_ros.core.pipeline import DepthInput
from instseg_ros.core.predictor import InferenceParams
from instseg_ros.tools.bag_types import INSTANCE_MASK_ARRAY, make_typestore
from instseg_ros.tools.synth_bag import DEPTH_TOPIC, write_synth_bag

PACKAGE_ROOT = Path(instseg_ros.__file__).resolve().parents[1]
INSTANCES = '/yolact/instances'
SCORE = 0.3


def run_tool(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f'{PACKAGE_ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    return subprocess.run([sys.executable, '-m', 'instseg_ros.tools.bag', *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def read_instances(path: Path, store) -> list[tuple[int, bytes, object]]:
    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.topic == INSTANCES]
        assert conns and conns[0].msgtype == INSTANCE_MASK_ARRAY
        return [(t, bytes(raw), store.deserialize_cdr(raw, INSTANCE_MASK_ARRAY))
                for _, t, raw in reader.messages(conns)]


@pytest.fixture(scope='module')
def store():
    return make_typestore()


@pytest.fixture(scope='module')
def pipeline():
    from instseg_ros.ros.model_loading import load_pipeline
    from instseg_ros.tools.bag_options import resolve_params
    from instseg_ros.tools.bag import build_parser

    params = resolve_params(build_parser().parse_args(['in', 'out', '--device', 'cpu']))

    class Quiet:
        def info(self, text):
            pass

    return load_pipeline(params, Quiet())


def reference(pipeline, scene, image_bgr):
    """The node's calls for one frame (batch 1) with the default parameters."""
    result = pipeline.process(image_bgr, InferenceParams(score_threshold=SCORE), min_mask_area=0)
    depth_m = depth_to_meters(scene.depth_mm, '16UC1')
    cam = scene.camera
    pipeline.add_depth(result, DepthInput(depth_m, CameraIntrinsics.from_k(cam.k(), cam.width,
                                                                            cam.height)),
                       DepthParams(min_depth_m=0.1, max_depth_m=10.0, mask_erosion_px=2,
                                   min_points=20))
    return result


def mask_of(instance, height, width) -> np.ndarray:
    crop = np.frombuffer(bytes(instance.mask.data), np.uint8).reshape(
        instance.mask.height, instance.mask.width) > 127
    return paste_roi(instance.roi.x_offset, instance.roi.y_offset, crop, height, width)


def assert_matches(msg, result, class_names):
    assert len(msg.instances) == len(result) > 0
    height, width = result.image_size
    assert (msg.height, msg.width) == (height, width)
    for i, inst in enumerate(msg.instances):
        assert inst.id == i
        assert inst.class_id == int(result.labels[i])
        assert inst.class_name == class_names[int(result.labels[i])]
        assert abs(inst.score - float(result.scores[i])) < 1e-5
        assert inst.mask.encoding == 'mono8'
        x0, y0, crop = result.rois[i]
        ref = paste_roi(x0, y0, crop, height, width)
        got = mask_of(inst, height, width)
        iou = (ref & got).sum() / max(1, (ref | got).sum())
        assert iou > 0.99, (i, iou)
        ref3d = result.instances_3d[i]
        assert inst.has_position == ref3d.has_position
        for field, ref_value in (('position', ref3d.position_m), ('box_center', ref3d.box_center_m),
                                 ('box_size', ref3d.box_size_m)):
            value = getattr(inst, field)
            assert np.allclose([value.x, value.y, value.z], ref_value, atol=1e-3), field


@pytest.mark.parametrize('storage,compressed', [('mcap', None), ('sqlite3', 'jpeg')])
def test_bag_matches_pipeline(tmp_path, store, pipeline, storage, compressed):
    """One InstanceMaskArray per input frame at its timestamp, equal to the pipeline's result; with
    a corrupt frame in the middle that is skipped, counted and reported on one line."""
    bag = write_synth_bag(tmp_path / 'in', 5, storage=storage, compressed=compressed,
                          corrupt_frames=(2,))
    out = tmp_path / 'out'
    proc = run_tool(tmp_path / 'in', out, '--depth-topic', DEPTH_TOPIC, '--batch-size', '3',
                    '--device', 'cpu', '--storage', storage, '--overlay',
                    '--summary-json', tmp_path / 'summary.json')
    assert proc.returncode == 0, proc.stderr
    skipped_lines = [line for line in proc.stderr.splitlines() if 'skipped' in line]
    assert len(skipped_lines) == 1 and 'frame at' in skipped_lines[0]
    assert 'Traceback' not in proc.stderr
    import json
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['frames'] == 4 and summary['skipped_undecodable'] == 1
    assert summary['frames_without_depth'] == 0
    assert not list(tmp_path.glob('.*partial'))

    written = read_instances(out, store)
    good = [i for i in range(5) if i != 2]
    assert [t for t, _, _ in written] == [bag.timestamps_ns[i] for i in good]
    for (t, _, msg), i in zip(written, good):
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t
        assert msg.header.frame_id == 'camera_color_optical_frame'
        scene = bag.scenes[i]
        image = (cv2.imdecode(np.frombuffer(bag.encoded[i], np.uint8), cv2.IMREAD_COLOR)
                 if compressed else scene.image_bgr)
        assert_matches(msg, reference(pipeline, scene, image), pipeline.class_names)
    with Reader(out) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts == {INSTANCES: 4, '/yolact/overlay': 4}


def test_rclpy_deserializes_to_equal_messages(tmp_path, store):
    """The bytes rosbags wrote deserialise with rclpy into instseg_msgs objects equal, field by
    field, to the ones rosbags wrote (CDR padding bytes are unspecified, so bytes are not compared
    the other way round)."""
    from instseg_msgs.msg import InstanceMaskArray
    from rclpy.serialization import deserialize_message

    write_synth_bag(tmp_path / 'in', 2)
    proc = run_tool(tmp_path / 'in', tmp_path / 'out', '--depth-topic', DEPTH_TOPIC,
                    '--device', 'cpu', '--storage', 'sqlite3')
    assert proc.returncode == 0, proc.stderr
    written = read_instances(tmp_path / 'out', store)
    assert len(written) == 2
    for _, raw, ours in written:
        msg = deserialize_message(raw, InstanceMaskArray)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
            ours.header.stamp.sec, ours.header.stamp.nanosec, ours.header.frame_id)
        assert (msg.height, msg.width, len(msg.instances)) == (ours.height, ours.width,
                                                               len(ours.instances))
        assert len(msg.instances) > 0 and any(i.has_position for i in msg.instances)
        for a, b in zip(msg.instances, ours.instances):
            assert (a.id, a.class_id, a.class_name, a.has_position, a.num_points) == (
                b.id, b.class_id, b.class_name, b.has_position, b.num_points)
            assert a.score == pytest.approx(b.score, abs=0)
            assert (a.roi.x_offset, a.roi.y_offset, a.roi.width, a.roi.height) == (
                b.roi.x_offset, b.roi.y_offset, b.roi.width, b.roi.height)
            assert (a.mask.height, a.mask.width, a.mask.step, a.mask.encoding) == (
                b.mask.height, b.mask.width, b.mask.step, b.mask.encoding)
            assert bytes(a.mask.data) == bytes(b.mask.data)
            for field in ('position', 'box_center', 'box_size'):
                pa, pb = getattr(a, field), getattr(b, field)
                assert (pa.x, pa.y, pa.z) == (pb.x, pb.y, pb.z)


def test_sigint_leaves_closed_bag_with_frames_done(tmp_path, store):
    """SIGINT mid-run: exit 130, the message says so, and the output bag opens with the frames done
    so far (the first k input frames, in order)."""
    bag = write_synth_bag(tmp_path / 'in', 60, seeds=[0, 1], depth=False)
    env = dict(os.environ, PYTHONPATH=f'{PACKAGE_ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    proc = subprocess.Popen([sys.executable, '-m', 'instseg_ros.tools.bag', str(tmp_path / 'in'),
                             str(tmp_path / 'out'), '--batch-size', '1', '--device', 'cpu',
                             '--progress'], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    seen = []
    progressed = threading.Event()

    def watch():
        for chunk in iter(lambda: proc.stderr.read(1), ''):
            seen.append(chunk)
            if len(seen) % 16 == 0 and re.search(r'\b([3-9]|\d\d)/60\b', ''.join(seen[-400:])):
                progressed.set()
    threading.Thread(target=watch, daemon=True).start()
    try:
        assert progressed.wait(120), ''.join(seen)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    err = ''.join(seen)
    assert proc.returncode == 130, err
    assert 'interrupted' in err and 'complete, closed bag' in err and 'Traceback' not in err
    written = read_instances(tmp_path / 'out', store)
    assert 3 <= len(written) < 60
    assert [t for t, _, _ in written] == bag.timestamps_ns[:len(written)]
    assert f'{len(written)} frames written' in err


def test_bad_input_exits_2_with_one_line(tmp_path):
    write_synth_bag(tmp_path / 'in', 1)
    (tmp_path / 'exists').mkdir()
    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    (corrupt / 'metadata.yaml').write_text('rosbag2_bagfile_information: [not, a, bag\n')
    garbage = tmp_path / 'garbage.mcap'
    garbage.write_bytes(b'\x00' * 100)
    cases = [
        ((tmp_path / 'missing', tmp_path / 'o1'), 'does not exist'),
        ((corrupt, tmp_path / 'o2'), 'cannot open input bag'),
        ((garbage, tmp_path / 'o3'), 'cannot open input bag'),
        ((tmp_path / 'in', tmp_path / 'o4', '--image-topic', '/nope'),
         "image topics: /camera/color/image_raw (Image), /camera/depth/image_raw (Image)"),
        ((tmp_path / 'in', tmp_path / 'o5', '--image-topic', '/camera/color/camera_info'),
         'has type sensor_msgs/msg/CameraInfo'),
        ((tmp_path / 'in', tmp_path / 'exists'), 'exists: pass --overwrite'),
        ((tmp_path / 'in', tmp_path / 'o6'), 'give --image-topic'),
        ((tmp_path / 'in', tmp_path / 'o7', '--image-topic', '/camera/color/image_raw',
          '--depth-topic', '/camera/color/camera_info'), "depth topic '/camera/color/camera_info' has type"),
        ((tmp_path / 'in', tmp_path / 'o8', '--classes', 'giraffe',
          '--image-topic', '/camera/color/image_raw'), "unknown class name(s) ['giraffe']"),
    ]
    for args, expected in cases:
        proc = run_tool(*args, '--device', 'cpu')
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr)
        assert lines[-1].startswith('instseg-bag: error: ') and expected in lines[-1], (args, lines)
        assert 'Traceback' not in proc.stderr, args
        assert not any(p.name.startswith('o') for p in tmp_path.iterdir()), args
        assert not list(tmp_path.glob('.*partial')), args
    assert list((tmp_path / 'exists').iterdir()) == []
