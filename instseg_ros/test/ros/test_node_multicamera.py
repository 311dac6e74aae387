"""One node, one model, two cameras (``cameras: [front, rear]``), every process separate, over the
real middleware: two synthetic cameras of different scenes, sizes and rates (front 320x240 at
30 Hz, rear 640x480 at 2 Hz, each repeating one scene). Checks: each camera's /instances carry
that camera's header and size only; both are served (the slow camera is not starved by the fast
one); every result equals the single-camera pipeline's result for the same image (the shared
FramePipeline called directly in this process, one frame at a time): same classes, scores within
1e-5, masks equal (IoU 1.0; at least 0.99 tolerated for batched float rounding)."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import PARAMS_FILE, node_command, start, stop  # noqa: E402

pytestmark = pytest.mark.ros
CAMERAS = {'front': {'rate': 30.0, 'width': 320, 'height': 240, 'seed': 2101},
           'rear': {'rate': 2.0, 'width': 640, 'height': 480, 'seed': 2202}}
RUN_S = 12.0


@pytest.fixture(scope='module')
def processes(tmp_path_factory):
    logs = tmp_path_factory.mktemp('multicam')
    cams = [start(node_command(module='instseg_ros.ros.synthetic_camera',
                               node_name='synthetic_camera', namespace=f'/cam_{name}',
                               parameters={**cfg, 'pool_size': 1,
                                           'frame_id': f'{name}_optical'}),
                  logs / f'camera_{name}.log') for name, cfg in CAMERAS.items()]
    remaps = {f'{name}/color/image_raw': f'/cam_{name}/color/image_raw' for name in CAMERAS}
    node = start(node_command(params_file=PARAMS_FILE, namespace='/multi',
                              parameters={'cameras': '[front, rear]', 'score_threshold': 0.2},
                              remaps=remaps), logs / 'yolact.log')
    yield node, logs
    assert stop(node) == 0, (logs / 'yolact.log').read_text()[-3000:]
    for cam in cams:
        stop(cam)


def crops(msg):
    return [(i.class_id, i.score, i.roi.x_offset, i.roi.y_offset,
             np.frombuffer(bytes(i.mask.data), np.uint8).reshape(i.roi.height, i.roi.width) > 127)
            for i in msg.instances]


def mask_iou(a, b):
    """IoU of two ROI masks (x0, y0, crop) in a common frame."""
    (ax, ay, am), (bx, by, bm) = a, b
    height = max(ay + am.shape[0], by + bm.shape[0])
    width = max(ax + am.shape[1], bx + bm.shape[1])
    fa, fb = np.zeros((height, width), bool), np.zeros((height, width), bool)
    fa[ay:ay + am.shape[0], ax:ax + am.shape[1]] = am
    fb[by:by + bm.shape[0], bx:bx + bm.shape[1]] = bm
    union = np.logical_or(fa, fb).sum()
    return 1.0 if union == 0 else np.logical_and(fa, fb).sum() / union


def test_two_cameras_one_model(processes, make_node, spin_until):
    from diagnostic_msgs.msg import DiagnosticArray
    from instseg_msgs.msg import InstanceMaskArray

    from instseg_ros.core.pipeline import FramePipeline
    from instseg_ros.core.predictor import InferenceParams, Predictor
    from instseg_ros.ros.model_loading import SHIPPED_WEIGHTS
    from instseg_ros.synth.scene import Camera, render_scene
    node_proc, logs = processes
    node = make_node('multicam_client')
    results = {name: [] for name in CAMERAS}
    for name in CAMERAS:
        node.create_subscription(InstanceMaskArray, f'/multi/{name}/instances',
                                 results[name].append, 50)
    diagnostics = []
    node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    log = logs / 'yolact.log'
    assert spin_until(node, lambda: all(results.values()) or node_proc.poll() is not None,
                      timeout_s=120), log.read_text()[-3000:]
    assert node_proc.poll() is None, log.read_text()[-3000:]
    counts_before = {name: len(r) for name, r in results.items()}
    spin_until(node, lambda: node_proc.poll() is not None, timeout_s=RUN_S)
    assert node_proc.poll() is None, log.read_text()[-3000:]
    served = {name: len(r) - counts_before[name] for name, r in results.items()}
    # not starved: the 2 Hz camera is in (nearly) every batch while it has a frame, although the
    # other one sends 15 times as many: it gets its frames, or as many batches as the front one
    # when the model is slower than 2 Hz on this machine
    rear_sent = RUN_S * CAMERAS['rear']['rate']
    assert served['front'] >= 3 and served['rear'] >= 0.8 * min(rear_sent, served['front']), served
    for name, cfg in CAMERAS.items():
        assert {(m.header.frame_id, m.height, m.width) for m in results[name]} == {
            (f'{name}_optical', cfg['height'], cfg['width'])}
    names = {s.name for d in diagnostics for s in d.status}
    assert {'multi/yolact front: inference', 'multi/yolact rear: inference'} <= names, names

    predictor = Predictor.from_checkpoint(str(SHIPPED_WEIGHTS), device='cpu')
    pipeline = FramePipeline(predictor)
    params = InferenceParams(score_threshold=0.2, nms_threshold=0.5, top_k=200,
                             max_detections=100)
    ious = []
    for name, cfg in CAMERAS.items():
        image = render_scene(cfg['seed'], Camera(cfg['width'], cfg['height'])).image_bgr
        expected = pipeline.process(image, params)
        want = [(int(label), float(score), x0, y0, crop) for label, score, (x0, y0, crop)
                in zip(expected.labels, expected.scores, expected.rois)]
        assert want, f'no instance in the {name} scene'
        for msg in results[name][-5:]:
            got = crops(msg)
            assert [g[0] for g in got] == [w[0] for w in want], name
            assert np.allclose([g[1] for g in got], [w[1] for w in want], atol=1e-5), name
            ious += [mask_iou(g[2:], w[2:]) for g, w in zip(got, want)]
    print(f'served {served}; mask IoU vs single-camera min {min(ious):.4f}, '
          f'{np.mean(np.equal(ious, 1.0)):.0%} identical')
    assert min(ious) >= 0.99


def test_a_heavy_camera_slows_but_never_starves_another(tmp_path, make_node, spin_until):
    """The fairness the node gives (README, "Several cameras"): every batch holds the newest
    waiting frame of every camera, so cameras at the same rate get the same number of processed
    frames even when one camera's frames (here 16 times the pixels) make each batch slow. Counted
    from the node's own diagnostics (frames received and processed per camera over the same
    window): a camera can only be served the frames that reached the node, and on a loaded
    machine the 1280x960 stream delivers fewer than the batches (CI: 23 vs 29 served)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from instseg_msgs.msg import InstanceMaskArray
    cams = {'big': {'rate': 10.0, 'width': 1280, 'height': 960, 'seed': 31},
            'small': {'rate': 10.0, 'width': 320, 'height': 240, 'seed': 32}}
    procs = [start(node_command(module='instseg_ros.ros.synthetic_camera',
                                node_name='synthetic_camera', namespace=f'/fair_{name}',
                                parameters={**cfg, 'pool_size': 1}), tmp_path / f'{name}.log')
             for name, cfg in cams.items()]
    remaps = {f'{name}/color/image_raw': f'/fair_{name}/color/image_raw' for name in cams}
    log = tmp_path / 'yolact.log'
    node_proc = start(node_command(params_file=PARAMS_FILE, namespace='/fair',
                                   parameters={'cameras': '[big, small]'}, remaps=remaps), log)
    try:
        node = make_node('fairness_client')
        results = {name: [] for name in cams}
        counters = {}  # camera -> {'frames_received': n, 'frames_processed': n}, latest

        def on_diagnostics(msg):
            for status in msg.status:
                for name in cams:
                    if status.name == f'fair/yolact {name}: inference':
                        values = {kv.key: kv.value for kv in status.values}
                        counters[name] = {k: int(values[k]) for k in ('frames_received',
                                                                      'frames_processed')}
        node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
        for name in cams:
            node.create_subscription(InstanceMaskArray, f'/fair/{name}/instances',
                                     results[name].append, 50)
        assert spin_until(node, lambda: (all(results.values()) and len(counters) == len(cams))
                          or node_proc.poll() is not None, timeout_s=120), log.read_text()[-3000:]
        before = {name: len(r) for name, r in results.items()}
        start_counts = {name: dict(c) for name, c in counters.items()}
        spin_until(node, lambda: node_proc.poll() is not None, timeout_s=10.0)
        assert node_proc.poll() is None, log.read_text()[-3000:]
        served = {name: len(r) - before[name] for name, r in results.items()}
        delta = {name: {k: counters[name][k] - start_counts[name][k] for k in counters[name]}
                 for name in cams}
        print(f'served in 10 s at 10 Hz each: {served}; node counters over the window: {delta}')
        assert served['big'] >= 3, served
        for name, other in (('big', 'small'), ('small', 'big')):
            processed, received = delta[name]['frames_processed'], delta[name]['frames_received']
            batches = delta[other]['frames_processed']
            assert processed >= min(received, batches) - max(2, 0.15 * batches), delta
    finally:
        assert stop(node_proc) == 0, log.read_text()[-3000:]
        for proc in procs:
            stop(proc)
