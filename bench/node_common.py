"""Shared part of the node benchmark (bench/node.py): paths, environment, settings,
constants, timing helpers, the test model and the machine description."""

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
from instseg_ros.core.models.yolact.yolact import Yolact
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


