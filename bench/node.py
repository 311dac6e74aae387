"""Benchmark of the yolact node: end-to-end latency, host-side overhead, overload, message size, 3D.

Usage:  python bench/node.py [--out bench/results/node.json] [--quick]

Sections (all on this machine, CPU only, this checkout's sources):
1. ``e2e``: stamp -> InstanceMaskArray latency. The yolact node runs as its own process, started
   with the launch file's arguments (``--ros-args -r __node:=yolact --params-file config/yolact.yaml
   -p ... -r image:=...``); this process publishes one image at a time (stamped with the wall clock
   just before ``publish``), waits for its result and takes ``receive wall clock - stamp``.
   640x480 and 1280x720, same node, fixed model (yolact_small, random weights with seed 0 and the
   positive mask biases of test_node.py, so every frame has ``max_detections`` = 20 instances).
2. ``overhead``: everything the node does per frame except the forward pass, in this process
   (no middleware), 640x480, exactly 20 instances: Image -> bgr8, predictor preprocess and
   postprocess (masks straight to ROIs), instances_to_msg, overlay (draw + numpy_to_image),
   markers. Twice: the random-weight model above (every prior is an NMS candidate, small masks)
   and, as ``overhead_shipped_model``, the shipped model on a 20-object scene (object-sized masks).
3. ``overload``: the synthetic_camera process publishes 640x480 at 30 Hz (the model is much slower);
   stamp -> result latency over a window, dropped frames from the node's /diagnostics counters,
   latency in the first vs last third of the window, against the single-frame latency of (1).
4. ``message_size``: serialized /instances (ROI crops) vs the same with a full-frame mono8 mask
   per instance.
5. ``geometry``: depth projection of 20 instances (bench/geometry.py ``bench_projection``).

Every child process runs in its own session and is stopped with SIGINT to its group (SIGKILL
after a timeout), also when the benchmark fails or is interrupted. DDS stays on this machine
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST; ROS_DOMAIN_ID from the environment, else from the pid).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / 'instseg_ros'
# Benchmark this checkout's sources (not an installed copy), here and in the child processes.
sys.path.insert(0, str(PACKAGE_DIR))
sys.path.insert(0, str(PACKAGE_DIR / 'test' / 'ros'))
os.environ['PYTHONPATH'] = os.pathsep.join(
    [str(PACKAGE_DIR)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(10 + os.getpid() % 90))
os.environ.pop('ROS_STATIC_PEERS', None)
os.environ.pop('ROS_LOCALHOST_ONLY', None)

import torch
from instseg_ros.core.checkpoint import save_checkpoint
from instseg_ros.core.config import get_preset
from instseg_ros.core.model.yolact import Yolact
from instseg_ros.synth.scene import CLASS_NAMES, Camera, render_scene
from launch_args import PARAMS_FILE, node_command, start, stop

SEED = 0
NUM_INSTANCES = 20
SIZES = ((640, 480), (1280, 720))
NAMESPACE = '/bench'
CAMERA_NS = '/bench_cam'
IMAGE_TOPIC = f'{CAMERA_NS}/color/image_raw'
INFO_TOPIC = f'{CAMERA_NS}/color/camera_info'
INSTANCES_TOPIC = f'{NAMESPACE}/instances'
SHIPPED_WEIGHTS = PACKAGE_DIR / 'instseg_ros' / 'models' / 'yolact_small_synth.pth'
FRAME_ID = 'camera_color_optical_frame'
OVERHEAD_TARGET_MS = 10.0
#: extra parameters file: the node's image subscription reliable (a user QoS override, see
#: config/yolact.yaml), for the e2e section only
RELIABLE_INPUT_YAML = '''/**:
  ros__parameters:
    qos_overrides:
      {topic}:
        subscription:
          reliability: reliable
'''
PROJECTION_TARGET_MS = 5.0

#: full / quick settings
SETTINGS = {
    'full': {'e2e_warmup': 3, 'e2e_frames': {640: 40, 1280: 30}, 'gap_s': 0.2,
             'overhead_repeats': 40, 'stage_repeats': 50, 'overload_s': 25.0, 'settle_s': 4.0,
             'projection_repeats': 50, 'camera_pool': 10, 'probe_frames': 10, 'probe_timeout_s': 3.0},
    'quick': {'e2e_warmup': 1, 'e2e_frames': {640: 6, 1280: 4}, 'gap_s': 0.1,
              'overhead_repeats': 3, 'stage_repeats': 10, 'overload_s': 8.0, 'settle_s': 2.0,
              'projection_repeats': 10, 'camera_pool': 3, 'probe_frames': 3, 'probe_timeout_s': 3.0},
}


def log(text: str) -> None:
    print(f'[bench/node {time.strftime("%H:%M:%S")}] {text}', file=sys.stderr, flush=True)


def stats_ms(values) -> dict:
    """n, p50, p99, mean, min, max of a list of milliseconds (None values when empty)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return {'n': 0, 'p50': None, 'p99': None, 'mean': None, 'min': None, 'max': None}
    return {'n': int(arr.size), 'p50': round(float(np.percentile(arr, 50)), 2),
            'p99': round(float(np.percentile(arr, 99)), 2), 'mean': round(float(arr.mean()), 2),
            'min': round(float(arr.min()), 2), 'max': round(float(arr.max()), 2)}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        times.append((time.perf_counter() - begin) * 1e3)
    return round(float(np.median(times)), 3)


# ------------------------------------------------------------------------------------ model
def make_weights(directory: Path, use_shipped: bool) -> tuple[Path, str]:
    """The checkpoint the node and the in-process measurements use, and its description."""
    if use_shipped and SHIPPED_WEIGHTS.is_file():
        return SHIPPED_WEIGHTS, f'shipped model {SHIPPED_WEIGHTS.name} (trained on synthetic shapes)'
    torch.manual_seed(SEED)
    model = Yolact(get_preset('yolact_small', num_classes=len(CLASS_NAMES) + 1)).eval()
    with torch.no_grad():  # positive prototypes and coefficients: non-empty (box-shaped) masks
        model.proto_net[10].bias.fill_(1.0)
        model.prediction_layers[0].mask_layer.bias.fill_(1.0)
    path = directory / 'yolact_small_bench.pth'
    save_checkpoint(model, path)
    path.with_suffix('.json').write_text(json.dumps({'class_names': list(CLASS_NAMES)}))
    return path, (f'yolact_small, random weights (torch.manual_seed({SEED})), proto_net[10].bias '
                  'and prediction_layers[0].mask_layer.bias = 1.0 (non-empty masks)')


# ------------------------------------------------------------------------- 2. node overhead
def measure_overhead(weights: Path, settings: dict, scene_seed: int = SEED + 7,
                     num_objects: tuple[int, int] = (2, 6)) -> tuple[dict, object, object]:
    """Per-stage medians (ms) of the node's host-side work for one 640x480 frame, 20 instances.

    Returns (report, FrameResult, header) -- the result is reused for the message sizes.
    """
    from instseg_ros.core.geometry import CameraIntrinsics, DepthParams, depth_to_meters
    from instseg_ros.core.pipeline import DepthInput, FramePipeline
    from instseg_ros.core.predictor import InferenceParams, Predictor
    from instseg_ros.core.visualization import depth_texts, draw_overlay
    from instseg_ros.ros.conversions import InstancesPacker, image_to_bgr8, numpy_to_image
    from instseg_ros.ros.markers import MarkerBuilder
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    predictor = Predictor.from_checkpoint(str(weights), device='cpu', class_names=CLASS_NAMES)
    predictor.warmup()
    pipeline = FramePipeline(predictor)
    names = pipeline.class_names
    camera = Camera(640, 480)
    scene = render_scene(scene_seed, camera, num_objects=num_objects)
    header = Header(frame_id=FRAME_ID)
    header.stamp.sec, header.stamp.nanosec = 1700000000, 123
    msg = numpy_to_image(scene.image_bgr, 'bgr8', header)
    raw = serialize_message(msg)
    params = InferenceParams(score_threshold=0.0, max_detections=NUM_INSTANCES)
    repeats = settings['stage_repeats']
    marker_builder = MarkerBuilder()  # the node keeps one and reuses its messages

    # Depth (node defaults) so that markers and overlay depth texts are those of a 3D frame.
    depth = DepthInput(depth_m=depth_to_meters(scene.depth_mm, '16UC1'),
                       intrinsics=CameraIntrinsics.from_k(camera.k(), 640, 480))
    depth_params = DepthParams(min_depth_m=0.1, max_depth_m=10.0, mask_erosion_px=2, min_points=20)
    packer = InstancesPacker()  # the node reuses its InstanceMask messages too

    def timed(fn):
        begin = time.perf_counter()
        value = fn()
        return value, (time.perf_counter() - begin) * 1e3

    # Frame by frame as the node's worker does it (each host step runs after a forward pass, with
    # the caches that leaves), every output subscribed; the depth step is timed but not summed.
    names_of = ('image_to_bgr8', 'preprocess', 'postprocess', 'host_arrays', 'instances_to_msg',
                'overlay_draw_and_numpy_to_image', 'markers')
    times: dict[str, list[float]] = {name: [] for name in names_of + ('forward', 'depth')}
    frame_sums = []
    for iteration in range(settings['overhead_repeats'] + 1):  # the first one is a warm-up
        image, decode_ms = timed(lambda: image_to_bgr8(msg))
        result = pipeline.process(image, params)
        pipeline.add_depth(result, depth, depth_params)
        instances_msg, pack_ms = timed(lambda: packer.pack(
            header, result.image_size, result.rois, result.scores, result.labels, names,
            result.instances_3d))
        overlay_msg, overlay_ms = timed(lambda: numpy_to_image(draw_overlay(
            image, result.rois, result.boxes_xyxy, result.labels, result.scores, names, alpha=0.45,
            draw_boxes=True, draw_labels=True, font_scale=0.5,
            depth_text=depth_texts(result.instances_3d)),
            'bgr8', header))
        _, markers_ms = timed(lambda: marker_builder.build(result, header, names))
        frame = {'image_to_bgr8': decode_ms, 'preprocess': result.timings_ms['preprocess'],
                 'postprocess': result.timings_ms['postprocess'], 'host_arrays': result.timings_ms['encode'],
                 'instances_to_msg': pack_ms, 'overlay_draw_and_numpy_to_image': overlay_ms,
                 'markers': markers_ms, 'forward': result.timings_ms['forward'],
                 'depth': result.timings_ms['depth']}
        if iteration == 0:
            continue
        for name, value in frame.items():
            times[name].append(value)
        frame_sums.append(sum(frame[name] for name in names_of))
    if len(result) != NUM_INSTANCES:
        log(f'WARNING: {len(result)} instances instead of {NUM_INSTANCES}')
    stages = {name: round(float(np.median(times[name])), 3) for name in names_of}
    total = round(float(np.median(frame_sums)), 3)
    extra = {  # not in the sum: middleware copies done in C by rclpy, and the 3D step (section 5)
        'forward_ms': round(float(np.median(times['forward'])), 2),
        'deserialize_input_image_ms': median_ms(lambda: deserialize_message(raw, Image), repeats),
        'serialize_instances_ms': median_ms(lambda: serialize_message(instances_msg), repeats),
        'serialize_overlay_ms': median_ms(lambda: serialize_message(overlay_msg), repeats),
        'depth_projection_this_frame_ms': round(float(np.median(times['depth'])), 3),
    }
    report = {
        'image_size_wh': [640, 480], 'instances': len(result),
        'instances_with_3d': sum(bool(i.has_position) for i in result.instances_3d or []),
        'inference_params': 'score_threshold=0.0, max_detections=20 (others default)',
        'frames': settings['overhead_repeats'],
        'stages_median_ms': stages, 'sum_ms': total, 'sum_p90_ms': round(float(np.percentile(frame_sums, 90)), 3),
        'target_ms': OVERHEAD_TARGET_MS,
        'meets_target': total < OVERHEAD_TARGET_MS,
        'not_in_sum_median_ms': extra,
        'mask_roi_pixels_median': int(np.median([roi[2].size for roi in result.rois])) if result.rois else 0,
        'notes': ('per frame, in the order of the node worker (image_to_bgr8, FramePipeline.process, '
                  'depth, instances, overlay, markers) after a forward pass each time; sum_ms is the '
                  'median of the per-frame sums of the stages listed (forward and depth excluded), the '
                  'stages are per-stage medians. preprocess / postprocess (detection, NMS, masks straight '
                  "to tight ROIs) from Predictor.last_timings_ms, host_arrays = FrameResult.timings_ms['encode']; "
                  'one MarkerBuilder and InstancesPacker reused, as in the node; markers and overlay with 3D.'),
    }
    return report, result, header


# ---------------------------------------------------------------------------- 4. msg sizes
def full_frame_equivalent(msg, height: int, width: int):
    """The same InstanceMaskArray with every mask a full-frame mono8 image (ROI = whole frame)."""
    from copy import deepcopy

    from instseg_ros.core.encoding import paste_roi, roi_to_mono8
    from instseg_ros.ros.conversions import image_to_numpy
    from sensor_msgs.msg import Image, RegionOfInterest
    full = deepcopy(msg)
    for inst in full.instances:
        crop = image_to_numpy(inst.mask) > 127
        frame = paste_roi(inst.roi.x_offset, inst.roi.y_offset, crop, height, width)
        mask = Image(header=inst.mask.header, height=height, width=width, encoding='mono8',
                     is_bigendian=0, step=width)
        mask.data = roi_to_mono8(frame).tobytes()
        inst.mask = mask
        inst.roi = RegionOfInterest(x_offset=0, y_offset=0, height=height, width=width)
    return full


def message_sizes(result, header, geometry_module) -> dict:
    from instseg_ros.ros.conversions import instances_to_msg
    from rclpy.serialization import serialize_message

    def sizes(msg, height, width, label):
        roi_bytes = len(serialize_message(msg))
        full_bytes = len(serialize_message(full_frame_equivalent(msg, height, width)))
        crops = sum(i.mask.height * i.mask.width for i in msg.instances)
        return {'source': label, 'image_size_wh': [width, height],
                'instances': len(msg.instances), 'mask_crop_pixels': int(crops),
                'roi_bytes': roi_bytes, 'full_frame_bytes': full_bytes,
                'full_frame_mask_payload_bytes': len(msg.instances) * height * width,
                'ratio_full_over_roi': round(full_bytes / roi_bytes, 1)}

    height, width = result.image_size
    model_msg = instances_to_msg(header, result.image_size, result.rois, result.scores,
                                 result.labels, CLASS_NAMES, result.instances_3d)
    out = {'model_frame': sizes(model_msg, height, width,
                                'the 20-instance frame of section 2 (random-weight model: small '
                                'box-shaped masks)')}
    _depth, _k, rois = geometry_module.synthetic_frame(640, 480)
    geo_msg = instances_to_msg(header, (480, 640), rois, np.linspace(0.9, 0.5, len(rois)),
                               np.arange(len(rois)) % len(CLASS_NAMES), CLASS_NAMES)
    out['object_sized_masks'] = sizes(geo_msg, 480, 640,
                                      'bench/geometry.py synthetic_frame: 20 elliptic masks, '
                                      'sides 40-140 px')
    return out


def load_geometry_bench():
    spec = importlib.util.spec_from_file_location('bench_geometry',
                                                  Path(__file__).resolve().parent / 'geometry.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- ROS client
class Client:
    """This process's ROS side: image publisher, /instances, /diagnostics, camera_info counter."""

    def __init__(self, context):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from visualization_msgs.msg import MarkerArray

        from instseg_msgs.msg import InstanceMaskArray

        self.node = rclpy.create_node('node_bench_client', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.results: list[tuple[int, int, int]] = []  # (stamp ns, receive ns, instances)
        self.diagnostics: list[tuple[int, dict]] = []  # (receive ns, key -> value)
        self.info_stamps: list[int] = []
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                              reliability=ReliabilityPolicy.RELIABLE)
        best_effort = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                                 reliability=ReliabilityPolicy.BEST_EFFORT)
        self.node.create_subscription(InstanceMaskArray, INSTANCES_TOPIC, self._on_result,
                                      reliable)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.node.create_subscription(CameraInfo, INFO_TOPIC, self._on_info, best_effort)
        # like a user with RViz open: the node renders the overlay and markers only for subscribers
        self.overlays = self.marker_arrays = 0
        self.node.create_subscription(Image, f'{NAMESPACE}/overlay', self._on_overlay, best_effort)
        self.node.create_subscription(MarkerArray, f'{NAMESPACE}/markers', self._on_markers, best_effort)
        self.pub = self.node.create_publisher(Image, IMAGE_TOPIC, QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE))

    def _on_result(self, msg) -> None:
        received = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.results.append((stamp, received, len(msg.instances)))

    def _on_diag(self, msg) -> None:
        received = time.time_ns()
        for status in msg.status:
            if status.name.startswith(NAMESPACE.lstrip('/') + '/yolact'):
                self.diagnostics.append((received, {kv.key: kv.value for kv in status.values}))

    def _on_overlay(self, _msg) -> None:
        self.overlays += 1

    def _on_markers(self, _msg) -> None:
        self.marker_arrays += 1

    def _on_info(self, msg) -> None:
        self.info_stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)

    def spin_until(self, predicate, timeout_s: float, procs=()) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f'child process {proc.args[:3]} exited with {proc.returncode}')
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.02, max(0.0, deadline - time.monotonic())))

    def fresh_diagnostics(self, after_ns: int, timeout_s: float = 5.0) -> dict | None:
        self.spin_until(lambda: self.diagnostics and self.diagnostics[-1][0] > after_ns, timeout_s)
        return self.diagnostics[-1][1] if self.diagnostics else None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


# ------------------------------------------------------------------------------- 1. e2e
def size_messages(width: int, height: int) -> list:
    """A few bgr8 Image messages of synthetic scenes at this size (stamped when published)."""
    from instseg_ros.ros.conversions import numpy_to_image
    msgs = [numpy_to_image(render_scene(SEED + 100 + i, Camera(width, height)).image_bgr, 'bgr8')
            for i in range(3)]
    for msg in msgs:
        msg.header.frame_id = FRAME_ID
    return msgs


def send_one(client: Client, node_proc, msg, timeout_s: float) -> tuple[float, int] | None:
    """Stamp ``msg`` with the wall clock, publish it, wait for its result.

    Returns (latency ms = receive wall clock - stamp, instances), or None on timeout.
    """
    stamp = time.time_ns()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    client.pub.publish(msg)
    if not client.spin_until(lambda: any(r[0] == stamp for r in client.results[-3:]),
                             timeout_s=timeout_s, procs=(node_proc,)):
        return None
    _, received, count = next(r for r in client.results if r[0] == stamp)
    return (received - stamp) / 1e6, count


def measure_e2e(client: Client, node_proc, settings: dict) -> dict:
    out = {}
    for width, height in SIZES:
        msgs = size_messages(width, height)
        frames = settings['e2e_frames'][width]
        latencies, counts, lost = [], [], 0
        for i in range(settings['e2e_warmup'] + frames):
            got = send_one(client, node_proc, msgs[i % len(msgs)], timeout_s=20.0)
            if got is None:
                lost += 1
                log(f'{width}x{height}: no result for frame {i} within 20 s')
                continue
            if i >= settings['e2e_warmup']:
                latencies.append(got[0])
                counts.append(got[1])
            client.spin_for(settings['gap_s'])  # low rate: the node is idle when the next one comes
        out[f'{width}x{height}'] = {'latency_ms': stats_ms(latencies),
                                    'instances_per_frame': sorted(set(counts)),
                                    'warmup_frames': settings['e2e_warmup'], 'lost_frames': lost}
        if width == 640:  # the node's own per-stage statistics (window: the frames sent so far)
            diag = client.fresh_diagnostics(time.time_ns()) or {}
            out['node_measured_640x480'] = {
                key: float(diag[key]) for key in sorted(diag)
                if key.endswith(('_ms_p50', '_ms_p99', '_ms_mean')) or key == 'instances_per_frame'}
            out['node_measured_640x480']['overlays_received'] = client.overlays
            out['node_measured_640x480']['marker_arrays_received'] = client.marker_arrays
        log(f'e2e {width}x{height}: {out[f"{width}x{height}"]["latency_ms"]}')
    out['node_diagnostics_after'] = client.fresh_diagnostics(time.time_ns())
    return out


def measure_delivery(client: Client, node_proc, settings: dict) -> dict:
    """Low-rate frames to a node with the default input QoS (input_reliability auto, which
    follows this reliable publisher): how many produce a result within probe_timeout_s."""
    out = {}
    for width, height in SIZES:
        msgs = size_messages(width, height)
        delivered = 0
        for i in range(settings['probe_frames']):
            if send_one(client, node_proc, msgs[i % len(msgs)], settings['probe_timeout_s']):
                delivered += 1
                client.spin_for(settings['gap_s'])
        out[f'{width}x{height}'] = {'sent': settings['probe_frames'], 'delivered': delivered}
        log(f'default-QoS delivery {width}x{height}: {delivered}/{settings["probe_frames"]}')
    return out


def endpoint_qos(client: Client, topic: str) -> list[str]:
    """Reliability of the yolact node's subscriptions on ``topic`` (as seen by discovery)."""
    from rclpy.qos import ReliabilityPolicy
    return [ReliabilityPolicy(int(info.qos_profile.reliability)).name.lower()
            for info in client.node.get_subscriptions_info_by_topic(topic)
            if info.node_name == 'yolact']


def start_node(client: Client, command: list[str], log_path: Path, procs: list):
    """Start the yolact node and wait until its image subscription and /instances are matched."""
    proc = start(command, log_path)
    procs.append(proc)
    began = time.monotonic()
    if not client.spin_until(lambda: client.pub.get_subscription_count() > 0
                             and client.node.count_publishers(INSTANCES_TOPIC) > 0,
                             180.0, procs=(proc,)):
        raise RuntimeError('yolact node not discovered:\n' + log_path.read_text()[-2000:])
    startup = round(time.monotonic() - began, 1)
    client.spin_for(1.0)  # let discovery settle in both directions
    return proc, startup


def stop_node(proc, log_path: Path, procs: list) -> int | None:
    code = stop(proc, timeout_s=20.0)
    procs.remove(proc)
    if code != 0:
        log(f'node exit code {code}:\n' + log_path.read_text()[-2000:])
    return code


# --------------------------------------------------------------------------- 3. overload
def overload_frames(settings: dict) -> int:
    """Frames the 30 Hz camera publishes in the overload section (then it stops by itself)."""
    return int(30 * (settings['settle_s'] + settings['overload_s'] + 8))


def measure_overload(client: Client, node_proc, camera_cmd, camera_log, settings: dict,
                     single_p50_ms: float | None, procs: list) -> dict:
    d_before = client.fresh_diagnostics(time.time_ns())
    camera_start = time.time_ns()
    camera = start(camera_cmd, camera_log)
    procs.append(camera)
    if not client.spin_until(lambda: client.info_stamps, 120.0, procs=(node_proc, camera)):
        raise RuntimeError('synthetic camera not publishing:\n' + camera_log.read_text()[-2000:])
    if not client.spin_until(lambda: any(r[0] > camera_start for r in client.results), 60.0,
                             procs=(node_proc, camera)):
        raise RuntimeError('no result for a camera frame')
    client.spin_for(settings['settle_s'])
    d0 = client.fresh_diagnostics(time.time_ns())
    t0 = time.time_ns()
    info0 = len(client.info_stamps)
    client.spin_until(lambda: False, settings['overload_s'], procs=(node_proc, camera))
    t1 = time.time_ns()
    info1 = len(client.info_stamps)
    d1 = client.fresh_diagnostics(t1)
    window = [(r[1], (r[1] - r[0]) / 1e6) for r in client.results
              if t0 <= r[1] <= t1 and r[0] > camera_start]
    latencies = [lat for _, lat in window]
    third = (t1 - t0) / 3
    first = [lat for rx, lat in window if rx < t0 + third]
    last = [lat for rx, lat in window if rx >= t1 - third]

    def counter(diag, key):
        return int(diag.get(f'frames_{key}', 0)) if diag else 0
    delta = {key: counter(d1, key) - counter(d0, key) for key in ('received', 'processed', 'dropped')}
    duration = (t1 - t0) / 1e9
    stats = stats_ms(latencies)
    report = {
        'camera': 'synthetic_camera process, 640x480, rate 30 Hz', 'window_s': round(duration, 2),
        'camera_frames_published': info1 - info0,
        'camera_rate_hz': round((info1 - info0) / duration, 2),
        'results_received': len(latencies),
        'output_rate_hz': round(len(latencies) / duration, 2),
        'latency_ms': stats,
        'latency_first_third_p50_ms': stats_ms(first)['p50'],
        'latency_last_third_p50_ms': stats_ms(last)['p50'],
        'node_counters_delta': delta,
        'dropped_fraction_of_received': (round(delta['dropped'] / delta['received'], 3)
                                         if delta['received'] else None),
        'node_diagnostics_end': d1,
        'single_frame_e2e_p50_ms': single_p50_ms,
        'p50_over_single': round(stats['p50'] / single_p50_ms, 2) if single_p50_ms and stats['p50'] else None,
        'p99_over_single': round(stats['p99'] / single_p50_ms, 2) if single_p50_ms and stats['p99'] else None,
        'notes': ('newest-frame-only: a frame waits at most for the inference in progress, so the '
                  'latency is bounded by ~2x one processing time (expected p50 ~1.5x) and does '
                  'not grow over time; a FIFO queue would grow by (1/output - 1/input rate) per '
                  'frame. Counter deltas are between two /diagnostics messages (1 s period) '
                  'bracketing the window. The camera process competes for the same 2 cores.'),
    }
    # the camera stops by itself after max_frames: frames received (node counter) / sent
    client.spin_until(lambda: 'max_frames reached' in camera_log.read_text(), 120.0,
                      procs=(node_proc,))
    client.spin_for(2.0)
    d_end = client.fresh_diagnostics(time.time_ns())
    sent = overload_frames(settings)
    got = counter(d_end, 'received') - counter(d_before, 'received')
    report['frames_sent'], report['frames_received'] = sent, got
    report['frames_received_of_sent'] = round(got / sent, 3)
    code = stop(camera, timeout_s=10.0)
    procs.remove(camera)
    report['camera_exit_code'] = code
    log(f'overload: {stats}, first/last third p50 {report["latency_first_third_p50_ms"]} / '
        f'{report["latency_last_third_p50_ms"]}, counters {delta}')
    return report


# ------------------------------------------------------------------------------- report
def machine_info(args) -> dict:
    return {
        'cpu_count': os.cpu_count(),
        'cpu_affinity': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
        'cpu': platform.processor() or platform.machine(),
        'platform': platform.platform(), 'python': platform.python_version(),
        'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
        'torch_threads_note': (
            'this process and the node (OMP_NUM_THREADS in its environment). Default 1: on this '
            '2-core machine shared with other jobs, 2 torch threads made the forward pass ~4x '
            'slower and erratic (OpenMP threads waiting for a descheduled peer)'
            if args.torch_threads > 0 else 'torch default in this process and the node'),
        'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS'),
        'device': 'cpu',
        'rmw_implementation': os.environ.get('RMW_IMPLEMENTATION', 'default (rmw_fastrtps_cpp)'),
        'ros_domain_id': os.environ['ROS_DOMAIN_ID'],
        'load_average_start': [round(v, 2) for v in os.getloadavg()],
    }


def fmt(value, digits=1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def markdown(report: dict) -> str:
    lines = ['| measurement | value |', '|---|---|']
    e2e = report.get('e2e', {})
    for size in ('640x480', '1280x720'):
        if size in e2e:
            lat = e2e[size]['latency_ms']
            lines.append(f'| e2e latency {size} (n={lat["n"]}), p50 / p99 / mean ms | '
                         f'{fmt(lat["p50"])} / {fmt(lat["p99"])} / {fmt(lat["mean"])} |')
    for key, label in (('overhead', 'random weights'), ('overhead_shipped_model', 'shipped model')):
        ov = report.get(key)
        if not ov:
            continue
        for stage, ms in ov['stages_median_ms'].items():
            lines.append(f'| overhead 640x480, {ov["instances"]} inst, {label}: {stage} ms | {fmt(ms, 2)} |')
        lines.append(f'| **overhead sum, {label}, median ROI {ov["mask_roi_pixels_median"]} px '
                     f'(target < {ov["target_ms"]:.0f} ms)** | '
                     f'**{fmt(ov["sum_ms"], 2)}** ({"met" if ov["meets_target"] else "NOT met"}) |')
    measured = e2e.get('node_measured_640x480')
    if measured and 'overhead_ms_p50' in measured:
        lines.append(f'| node-measured overhead 640x480 (its /diagnostics: all but forward), '
                     f'p50 / p99 ms | {fmt(measured["overhead_ms_p50"], 2)} / '
                     f'{fmt(measured["overhead_ms_p99"], 2)} |')
    ov = report.get('overhead')
    if ov:
        extra = ov['not_in_sum_median_ms']
        lines.append(f'| (not in sum) forward / deserialize image / serialize instances / '
                     f'serialize overlay ms | {fmt(extra["forward_ms"])} / '
                     f'{fmt(extra["deserialize_input_image_ms"], 2)} / '
                     f'{fmt(extra["serialize_instances_ms"], 2)} / '
                     f'{fmt(extra["serialize_overlay_ms"], 2)} |')
    ol = report.get('overload')
    if ol:
        lat = ol['latency_ms']
        lines.append(f'| overload 30 Hz, {ol["window_s"]:.0f} s: p50 / p99 ms (n={lat["n"]}) | '
                     f'{fmt(lat["p50"])} / {fmt(lat["p99"])} |')
        lines.append(f'| overload p50 / p99 vs single-frame p50 ({fmt(ol["single_frame_e2e_p50_ms"])} ms) '
                     f'| {fmt(ol["p50_over_single"], 2)}x / {fmt(ol["p99_over_single"], 2)}x |')
        lines.append(f'| overload p50 first third / last third ms | '
                     f'{fmt(ol["latency_first_third_p50_ms"])} / {fmt(ol["latency_last_third_p50_ms"])} |')
        d = ol['node_counters_delta']
        diag = ol.get('node_diagnostics_end') or {}
        lines.append(f'| overload: camera rate Hz / node forward mean ms (diag, last <=100 frames) | '
                     f'{ol["camera_rate_hz"]} / {diag.get("forward_ms_mean", "-")} |')
        lines.append(f'| overload: frames received by the node / sent by the camera | '
                     f'{ol.get("frames_received")} / {ol.get("frames_sent")} '
                     f'({ol.get("frames_received_of_sent")}) |')
        lines.append(f'| overload frames published / received / processed / dropped | '
                     f'{ol["camera_frames_published"]} / {d["received"]} / {d["processed"]} / '
                     f'{d["dropped"]} |')
    dq = report.get('default_qos', {}).get('delivery_low_rate')
    if dq:
        lines.append('| default input QoS (auto), low rate: delivered / sent | '
                     + ', '.join(f'{k} {v["delivered"]}/{v["sent"]}' for k, v in dq.items()) + ' |')
    sizes = report.get('message_size')
    if sizes:
        for key, s in sizes.items():
            lines.append(f'| /instances size, {key} ({s["instances"]} inst): ROI / full-frame bytes '
                         f'| {s["roi_bytes"]} / {s["full_frame_bytes"]} '
                         f'({s["ratio_full_over_roi"]:.1f}x) |')
    geo = report.get('geometry')
    if geo:
        for key, g in geo.items():
            if key.startswith('geometry_'):
                lines.append(f'| depth projection {key[9:]}, {g["num_instances"]} inst, median ms '
                             f'(target < {PROJECTION_TARGET_MS:.0f} at 640x480) | '
                             f'{fmt(g["project_instances_ms"], 2)}'
                             + (f' (min {fmt(g["project_instances_min_ms"], 2)})'
                                if 'project_instances_min_ms' in g else '') + ' |')
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path,
                        default=Path(__file__).resolve().parent / 'results' / 'node.json')
    parser.add_argument('--quick', action='store_true', help='smoke test (< 2 minutes)')
    parser.add_argument('--torch-threads', type=int, default=1,
                        help='torch intra-op threads of this process and (OMP_NUM_THREADS) of the '
                             'node; 0 = torch default (one per core)')
    parser.add_argument('--shipped-model', action='store_true',
                        help=f'use {SHIPPED_WEIGHTS.name} if it exists (default: random weights)')
    return parser.parse_args(argv)


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> dict:
    args = parse_args(argv)
    settings = SETTINGS['quick' if args.quick else 'full']
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
        cv2.setNumThreads(args.torch_threads)
        os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(args.torch_threads)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    began = time.monotonic()
    report = {'command': ' '.join(['python'] + [sys.argv[0]] + (sys.argv[1:] if argv is None
                                                                 else list(argv))),
              'mode': 'quick' if args.quick else 'full', 'settings': settings,
              'machine': machine_info(args)}
    procs: list = []
    context = client = None
    with tempfile.TemporaryDirectory(prefix='bench_node_') as tmp:
        tmp = Path(tmp)
        try:
            weights, description = make_weights(tmp, args.shipped_model)
            report['model'] = {'weights': description, 'preset': 'yolact_small',
                               'classes': list(CLASS_NAMES), 'max_detections': NUM_INSTANCES}

            log('section 2: node overhead (in-process)')
            report['overhead'], result, header = measure_overhead(weights, settings)
            report['overhead']['model'] = description
            log(f'overhead: {report["overhead"]["stages_median_ms"]} sum '
                f'{report["overhead"]["sum_ms"]} ms')
            if SHIPPED_WEIGHTS.is_file():  # object-sized masks: a trained model on a busy scene
                report['overhead_shipped_model'], _, _ = measure_overhead(
                    SHIPPED_WEIGHTS, settings, scene_seed=SEED + 1000, num_objects=(20, 20))
                report['overhead_shipped_model']['model'] = (
                    f'shipped model {SHIPPED_WEIGHTS.name}, synthetic scene with 20 objects')
                log(f'overhead (shipped model, 20 objects): '
                    f'{report["overhead_shipped_model"]["stages_median_ms"]} sum '
                    f'{report["overhead_shipped_model"]["sum_ms"]} ms')
            geometry_bench = load_geometry_bench()
            log('section 4: message size')
            report['message_size'] = message_sizes(result, header, geometry_bench)
            log('section 5: depth projection')
            report['geometry'] = geometry_bench.bench_projection(settings['projection_repeats'])
            report['geometry']['target_ms_640x480'] = PROJECTION_TARGET_MS
            report['geometry']['meets_target'] = (
                report['geometry']['geometry_640x480']['project_instances_ms'] < PROJECTION_TARGET_MS)

            import rclpy
            from rclpy.context import Context
            from rclpy.signals import SignalHandlerOptions
            context = Context()
            rclpy.init(context=context, domain_id=int(os.environ['ROS_DOMAIN_ID']),
                       signal_handler_options=SignalHandlerOptions.NO)
            client = Client(context)
            node_params = {'weights': str(weights), 'device': 'cpu', 'score_threshold': 0.0,
                           'max_detections': NUM_INSTANCES}
            default_cmd = node_command(namespace=NAMESPACE, params_file=PARAMS_FILE,
                                       parameters=node_params, remaps={'image': IMAGE_TOPIC})
            qos_file = tmp / 'reliable_input.yaml'
            qos_file.write_text(RELIABLE_INPUT_YAML.format(topic=IMAGE_TOPIC))
            reliable_cmd = default_cmd + ['--params-file', str(qos_file)]

            log('section 1: end-to-end latency (node with a reliable image subscription)')
            node_log = tmp / 'yolact_reliable.log'
            node_proc, startup = start_node(client, reliable_cmd, node_log, procs)
            report['e2e'] = {
                'node_command': ' '.join(reliable_cmd),
                'node_params_file_extra': qos_file.read_text(),
                'node_image_subscription_reliability': endpoint_qos(client, IMAGE_TOPIC),
                'node_startup_s': startup,
                'published_by': ('this process, one image at a time (stamp = wall clock just '
                                 'before publish), waiting for its result, then '
                                 f'{settings["gap_s"]} s idle'),
                'subscribed_outputs': ('/instances (reliable), overlay and markers (best effort), '
                                       'so the node renders every output'),
                'why_reliable': ('pinned reliable for this section; input_reliability auto '
                                 'picks the same for a reliable publisher (see default_qos)'),
            }
            report['e2e'].update(measure_e2e(client, node_proc, settings))
            report['e2e']['node_exit_code'] = stop_node(node_proc, node_log, procs)

            log('starting the yolact node with the launch-default QoS')
            node_log = tmp / 'yolact_default.log'
            node_proc, startup = start_node(client, default_cmd, node_log, procs)
            report['default_qos'] = {
                'node_command': ' '.join(default_cmd), 'node_startup_s': startup,
                'node_image_subscription_reliability': endpoint_qos(client, IMAGE_TOPIC)}
            log('default-QoS delivery probe')
            report['default_qos']['delivery_low_rate'] = measure_delivery(client, node_proc,
                                                                          settings)
            log('section 3: overload (camera at 30 Hz)')
            camera_cmd = node_command(module='instseg_ros.ros.synthetic_camera',
                                      node_name='synthetic_camera', namespace=CAMERA_NS,
                                      parameters={'rate': 30.0, 'width': 640, 'height': 480,
                                                  'pool_size': settings['camera_pool'],
                                                  'seed': 1000,
                                                  'max_frames': overload_frames(settings)})
            single = report['e2e']['640x480']['latency_ms']['p50']
            report['overload'] = measure_overload(client, node_proc, camera_cmd,
                                                  tmp / 'camera.log', settings, single, procs)
            report['overload']['node'] = 'node with the default input QoS (input_reliability auto)'
            report['overload']['camera_command'] = ' '.join(camera_cmd)
            report['default_qos']['node_exit_code'] = stop_node(node_proc, node_log, procs)
        finally:
            for proc in reversed(procs):
                stop(proc, timeout_s=20.0)
            if client is not None:
                client.close()
            if context is not None:
                context.try_shutdown()
    report['machine']['load_average_end'] = [round(v, 2) for v in os.getloadavg()]
    report['wall_time_s'] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    print(markdown(report))
    print(f'\n{report["mode"]} run, {report["wall_time_s"]} s; load average start '
          f'{report["machine"]["load_average_start"]} end {report["machine"]["load_average_end"]};'
          f' JSON: {args.out}')
    return report


if __name__ == '__main__':
    main()
