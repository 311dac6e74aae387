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
from instseg_ros.synth.scene import Camera, render_scene
from instseg_ros.tools.bag_types import IMAGE, INSTANCE_MASK_ARRAY, make_typestore
from instseg_ros.tools.synth_bag import COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC, write_synth_bag

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


def reference(pipeline, scene, image_bgr, max_detections=100):
    """The node's calls for one frame (batch 1) with the default parameters."""
    result = pipeline.process(image_bgr, InferenceParams(score_threshold=SCORE,
                                                         max_detections=max_detections),
                              min_mask_area=0)
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


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default action. A shell that starts a job in
    the background (``bash .ci/run &``, nohup) ignores SIGINT, the ignore is inherited, and Python
    then keeps it ignored instead of raising KeyboardInterrupt, as a terminal's Ctrl-C would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_leaves_closed_bag_with_frames_done(tmp_path, store, sig):
    """SIGINT (Ctrl-C) or SIGTERM (kill, timeout, container stop) mid-run: exit 130, the message
    names the signal, the output bag is at its final path and opens with the frames done so far (the
    first k input frames, in order), and no hidden partial folder is left."""
    bag = write_synth_bag(tmp_path / 'in', 200, seeds=[0, 1], depth=False,
                          camera=Camera(160, 120))
    env = dict(os.environ, PYTHONPATH=f'{PACKAGE_ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    proc = subprocess.Popen([sys.executable, '-m', 'instseg_ros.tools.bag', str(tmp_path / 'in'),
                             str(tmp_path / 'out'), '--batch-size', '1', '--device', 'cpu',
                             '--progress'], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, preexec_fn=_default_sigint)
    seen = []
    progressed = threading.Event()

    def watch():
        for chunk in iter(lambda: proc.stderr.read(1), ''):
            seen.append(chunk)
            if len(seen) % 16 == 0 and re.search(r'\b([3-9]|\d\d)/200\b', ''.join(seen[-400:])):
                progressed.set()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert progressed.wait(120), ''.join(seen)
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    watcher.join(5)
    err = ''.join(seen)
    assert proc.returncode == 130, err
    name = 'SIGINT' if sig == signal.SIGINT else 'SIGTERM'
    assert f'interrupted ({name})' in err and 'complete, closed bag' in err, err
    assert 'Traceback' not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in', 'out']  # no hidden partial
    written = read_instances(tmp_path / 'out', store)
    assert 3 <= len(written) < 200
    assert [t for t, _, _ in written] == bag.timestamps_ns[:len(written)]
    assert f'{len(written)} frames written' in err
    assert f'instseg-bag: {len(written)} frames -> ' in proc.stdout.read()


def write_image_bag(path: Path, store, messages) -> None:
    """A bag of sensor_msgs/Image messages: ``messages`` is [(topic, timestamp_ns, Image or raw
    CDR bytes)], one connection per topic."""
    from rosbags.rosbag2 import Writer

    with Writer(path, version=Writer.VERSION_LATEST) as writer:
        conns = {}
        for topic, t_ns, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, IMAGE, typestore=store)
            raw = msg if isinstance(msg, bytes) else store.serialize_cdr(msg, IMAGE)
            writer.write(conns[topic], t_ns, raw)


def image_msg(store, t_ns: int, image=None, *, encoding='bgr8', height=None, width=None,
              data=None):
    """A sensor_msgs/Image (rosbags) of ``image`` (uint8 HxWx3), fields overridable."""
    types = store.types
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=t_ns // 10**9, nanosec=t_ns % 10**9),
        frame_id='cam')
    h, w = image.shape[:2] if image is not None else (0, 0)
    height, width = h if height is None else height, w if width is None else width
    if data is None:
        data = np.zeros(0, np.uint8) if image is None else np.ascontiguousarray(image).reshape(-1)
    return types[IMAGE](header=header, height=height, width=width, encoding=encoding,
                        is_bigendian=0, step=width * 3, data=np.asarray(data, np.uint8))


def test_bad_input_exits_2_with_one_line(tmp_path, store, capsys):
    """Topics or options that do not fit the bag: one line on stderr, exit 2, no output (run in
    this process: main() is the console script's entry point)."""
    from instseg_ros.tools.bag import main

    write_synth_bag(tmp_path / 'in', 1, camera=Camera(160, 120))
    image = render_scene(0, Camera(160, 120)).image_bgr
    write_image_bag(tmp_path / 'two', store, [
        (topic, 1, image_msg(store, 1, image)) for topic in ('/left/image', '/right/image')])
    (tmp_path / 'exists').mkdir()
    cases = [
        ((tmp_path / 'in', tmp_path / 'o4', '--image-topic', '/nope'),
         "image topics: /camera/color/image_raw (Image), /camera/depth/image_raw (Image)"),
        ((tmp_path / 'in', tmp_path / 'o5', '--image-topic', '/camera/color/camera_info'),
         'has type sensor_msgs/msg/CameraInfo'),
        ((tmp_path / 'in', tmp_path / 'exists'), 'exists: pass --overwrite'),
        ((tmp_path / 'two', tmp_path / 'o6'),
         'give --image-topic: the bag has 2 colour image topics (image topics: /left/image '
         '(Image), /right/image (Image))'),
        ((tmp_path / 'in', tmp_path / 'o7', '--image-topic', '/camera/color/image_raw',
          '--depth-topic', '/camera/color/camera_info'), "depth topic '/camera/color/camera_info' has type"),
        ((tmp_path / 'in', tmp_path / 'o8', '--classes', 'giraffe'),
         "unknown class name(s) ['giraffe']"),
        ((tmp_path / 'in', tmp_path / 'o9', '--camera-info-topic', '/nope'),
         "camera_info topic '/nope' is not a sensor_msgs/msg/CameraInfo topic of the bag; "
         'CameraInfo topics: /camera/color/camera_info'),
    ]
    for args, expected in cases:
        capsys.readouterr()
        code = main([*map(str, args), '--device', 'cpu'])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, (args, err)
        assert lines[-1].startswith('instseg-bag: error: ') and expected in lines[-1], (args, lines)
        assert not any(p.name.startswith('o') for p in tmp_path.iterdir()), args
        assert not list(tmp_path.glob('.*partial')), args
    assert list((tmp_path / 'exists').iterdir()) == []


def test_not_a_bag_exits_2_with_one_line(tmp_path, capsys):
    """Inputs that are not a bag (missing, an empty folder, a folder without metadata.yaml, a
    corrupt metadata.yaml, a garbage .mcap): exactly one line on stderr, exit 2, no output."""
    from instseg_ros.tools.bag import main

    (tmp_path / 'empty').mkdir()
    (tmp_path / 'notes').mkdir()
    (tmp_path / 'notes' / 'readme.txt').write_text('not a bag')
    (tmp_path / 'unindexed').mkdir()
    (tmp_path / 'unindexed' / 'run_0.mcap').write_bytes(b'\x00' * 16)
    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    (corrupt / 'metadata.yaml').write_text('rosbag2_bagfile_information: [not, a, bag\n')
    (tmp_path / 'garbage.mcap').write_bytes(b'\x00' * 100)
    cases = [
        ('missing', f"input bag '{tmp_path / 'missing'}' does not exist"),
        ('empty', f"input '{tmp_path / 'empty'}' is not a rosbag2 folder: no metadata.yaml; "
                  'it holds no .mcap / .db3 file'),
        ('notes', f"input '{tmp_path / 'notes'}' is not a rosbag2 folder: no metadata.yaml; "
                  'it holds no .mcap / .db3 file'),
        ('unindexed', f"input '{tmp_path / 'unindexed'}' is not a rosbag2 folder: no "
                      'metadata.yaml; it holds run_0.mcap: pass one of those files'),
        ('corrupt', f"cannot open input bag '{corrupt}': "),
        ('garbage.mcap', f"cannot open input bag '{tmp_path / 'garbage.mcap'}': "),
    ]
    for name, expected in cases:
        capsys.readouterr()
        code = main([str(tmp_path / name), str(tmp_path / 'out'), '--device', 'cpu'])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert err.count('\n') == 1 and err.startswith('instseg-bag: error: ' + expected), (
            name, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            'corrupt', 'empty', 'garbage.mcap', 'notes', 'unindexed'], name


def test_bad_frames_are_throttled_and_counted(tmp_path, store):
    """200 bad frames of several kinds (unsupported encoding, data shorter than its size, zero size,
    an absurd size, a truncated message) between 2 good ones: a few problem lines (one per kind of
    problem per 5 s), the good frames written, and the counts at the end."""
    image = render_scene(0, Camera(160, 120)).image_bgr
    messages = [('/cam/image', 0, image_msg(store, 0, image))]
    good_raw = bytes(store.serialize_cdr(image_msg(store, 1, image), IMAGE))
    for i in range(1, 201):
        t = i * 1000
        bad = [image_msg(store, t, image, encoding=f'weird{i}'),       # unsupported encoding
               image_msg(store, t, image, data=image.reshape(-1)[:100 + i]),  # truncated data
               image_msg(store, t, None, width=0, height=0),           # zero size
               image_msg(store, t, None, width=50000 + i, height=50000),  # too large
               good_raw[:40 + i % 20]][i % 5]                          # truncated message
        messages.append(('/cam/image', t, bad))
    messages.append(('/cam/image', 201_000, image_msg(store, 201_000, image)))
    write_image_bag(tmp_path / 'in', store, messages)

    proc = run_tool(tmp_path / 'in', tmp_path / 'out', '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr
    assert 'Traceback' not in proc.stderr
    problem_lines = [line for line in proc.stderr.splitlines() if 'skipped' in line]
    # one line per kind: image (encoding, truncated data, zero size), image_too_large,
    # image_message; a run longer than 5 s may let a second line of a kind through
    assert 3 <= len(problem_lines) <= 6, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        'instseg-bag: 200 frame problems: image 120, image_message 40, image_too_large 40 '
        '(lines per kind throttled to one every 5 s)')
    assert 'instseg-bag: 2 frames -> ' in proc.stdout
    assert '200 skipped (undecodable)' in proc.stdout
    assert len(read_instances(tmp_path / 'out', store)) == 2


def test_defaults_on_the_projects_rgbd_bag(tmp_path, store, pipeline):
    """instseg-synth-bag with its defaults (3 small frames) then instseg-bag with its defaults:
    the colour topic is found among the two Image topics, the depth and camera_info are used, every
    frame is written, and the instances equal the pipeline's with 3D."""
    from instseg_ros.tools.synth_bag import main as synth_bag_main  # instseg-synth-bag

    assert synth_bag_main([str(tmp_path / 'in'), '--frames', '3', '--width', '160',
                           '--height', '120']) == 0
    with Reader(tmp_path / 'in') as reader:
        assert sorted(reader.topics) == sorted([COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC])
        timestamps = [t for _, t, _ in reader.messages(
            [c for c in reader.connections if c.topic == COLOR_TOPIC])]

    proc = run_tool(tmp_path / 'in', tmp_path / 'out', '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr
    assert f'3D from depth {DEPTH_TOPIC} with {INFO_TOPIC}' in proc.stderr
    assert 'instseg-bag: 3 frames -> ' in proc.stdout and '0 without depth' in proc.stdout
    written = read_instances(tmp_path / 'out', store)
    assert [t for t, _, _ in written] == timestamps and len(timestamps) == 3
    for index, (_, _, msg) in enumerate(written):
        scene = render_scene(index, Camera(160, 120))
        assert_matches(msg, reference(pipeline, scene, scene.image_bgr), pipeline.class_names)
        assert all(inst.has_position and 0.3 < inst.position.z < 5.0 for inst in msg.instances)


RTMDET_NAME = 'rtmdet-ins_tiny_8xb32-300e_coco_20221130_151134-random.pth'


@pytest.fixture(scope='module')
def rtmdet_weights(tmp_path_factory) -> Path:
    """A random RTMDet-Ins-tiny file written as mmdetection publishes it (its file name selects the
    family and the preset). BatchNorm statistics are calibrated on the test bag's two scenes, so
    the scores there are spread (0.93-0.998, neighbours 1e-4 apart) instead of saturating at 1.0:
    with tied scores, which 20 survive depends on the top-k kernel and the batch size."""
    import torch

    from instseg_ros.core.classes import COCO_CLASSES
    from instseg_ros.core.models.rtmdet.config import get_config
    from instseg_ros.core.models.rtmdet.postprocess import preprocess
    from instseg_ros.core.models.rtmdet.testing import calibrated_state_dict
    cfg = get_config('rtmdet_ins_tiny')
    scenes = [render_scene(seed, Camera(160, 120)).image_bgr for seed in range(2)]
    inputs, _ = preprocess(scenes, cfg, torch.device('cpu'))
    path = tmp_path_factory.mktemp('rtmdet') / RTMDET_NAME
    torch.save({'meta': {'mmdet_version': '3.3.0', 'dataset_meta': {'classes': COCO_CLASSES}},
                'state_dict': calibrated_state_dict(cfg, seed=0, cls_bias=-4.0, images=inputs)},
               path)
    return path


def test_bag_with_an_mmdetection_rtmdet_ins_file(tmp_path, store, rtmdet_weights):
    """--weights <mmdet RTMDet-Ins-tiny file> (family and preset from its file name): the model line
    names the family, every frame gets instances (random calibrated weights detect), equal to the
    segmenter called directly on the same frame (classes, scores, masks, 3D), batch 2 vs batch 1;
    the summary records the preset and family."""
    import json

    from instseg_ros.ros.model_loading import load_pipeline
    from instseg_ros.tools.bag import build_parser
    from instseg_ros.tools.bag_options import resolve_params

    camera = Camera(160, 120)
    bag = write_synth_bag(tmp_path / 'in', 2, camera=camera)
    options = ['--device', 'cpu', '--weights', str(rtmdet_weights), '--max-detections', '20']
    proc = run_tool(tmp_path / 'in', tmp_path / 'out', '--batch-size', '2',
                    '--summary-json', tmp_path / 'summary.json', *options)
    assert proc.returncode == 0, proc.stderr
    assert ('[instseg-bag] model rtmdet_ins_tiny on cpu (torch fp32), RTMDet-Ins (mmdetection), '
            '80 classes') in proc.stderr, proc.stderr
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert (summary['model'], summary['family'], summary['frames']) == ('rtmdet_ins_tiny',
                                                                        'rtmdet_ins', 2)
    written = read_instances(tmp_path / 'out', store)
    assert [t for t, _, _ in written] == bag.timestamps_ns
    assert summary['instances'] == sum(len(msg.instances) for _, _, msg in written) > 0

    class Quiet:
        def info(self, text):
            pass

    params = resolve_params(build_parser().parse_args(['in', 'out', *options]))
    pipeline = load_pipeline(params, Quiet())
    assert pipeline.family == 'rtmdet_ins'
    for (_, _, msg), scene in zip(written, bag.scenes):
        expected = reference(pipeline, scene, scene.image_bgr, max_detections=20)
        assert 0 < len(expected) <= 20
        assert_matches(msg, expected, pipeline.class_names)
