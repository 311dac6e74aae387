"""Benchmark of core.geometry.project_instances (per-frame 3D localisation, CPU, numpy).

Usage:  python bench/geometry.py   -> prints JSON (median ms per frame).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

# Benchmark this checkout's sources, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'instseg_ros'))
from instseg_ros.core import geometry  # noqa: E402

NUM_INSTANCES = 20
SIZES = ((640, 480), (1280, 720))
# Box side of the instances at 640x480, pixels (scaled with sqrt(area) for other sizes):
# 20 elliptic masks then cover ~1/3 of the image, a busy scene.
MIN_SIDE_PX, MAX_SIDE_PX = 32, 128


def synthetic_frame(width: int, height: int, num_instances: int = NUM_INSTANCES, seed: int = 0):
    """(uint16 mm depth [H, W], intrinsics, ROIs) with elliptic masks at 1-4 m.

    The depth is a 3 m background with each instance a slanted patch, 10 % of pixels 0
    (invalid), 2 % far outliers; each ROI is (x0, y0, bool crop) like the encoder emits.
    """
    rng = np.random.default_rng(seed)
    k = geometry.CameraIntrinsics(fx=525.0 * width / 640, fy=525.0 * width / 640,
                                  cx=(width - 1) / 2, cy=(height - 1) / 2,
                                  width=width, height=height)
    depth_m = np.full((height, width), 3.0, dtype=np.float32)
    side_scale = math.sqrt(width * height / (640 * 480))
    rois = []
    for _ in range(num_instances):
        w, h = (rng.integers(MIN_SIDE_PX, MAX_SIDE_PX, 2) * side_scale).astype(int)
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        rows, cols = np.ogrid[:h, :w]
        crop = ((rows - h / 2 + 0.5) / (h / 2)) ** 2 + ((cols - w / 2 + 0.5) / (w / 2)) ** 2 <= 1
        patch = rng.uniform(1.0, 2.5) + 0.002 * (cols - w / 2) + 0.001 * rows
        region = depth_m[y0:y0 + h, x0:x0 + w]
        region[crop] = np.broadcast_to(patch, crop.shape)[crop]
        rois.append((x0, y0, crop))
    noise = rng.random((height, width))
    depth_m[noise < 0.10] = 0.0
    depth_m[noise > 0.98] = rng.uniform(3.0, 6.0, int(np.count_nonzero(noise > 0.98)))
    return np.round(depth_m * 1000).astype(np.uint16), k, rois


def _time_ms(fn, repeats: int) -> tuple[float, float]:
    """(median, min) wall time of fn() in ms over ``repeats`` calls after a warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), float(np.min(times))


def bench_projection(repeats: int = 50) -> dict:
    """Median (and min) ms per frame of project_instances (20 instances) and depth_to_meters.

    Returns:
        {'geometry_<W>x<H>': {'project_instances_ms', 'project_instances_min_ms',
        'project_instances_points_ms' (with return_points), 'depth_to_meters_ms',
        'num_instances', 'mask_pixels'}} for 640x480 and 1280x720, default DepthParams.
    """
    params = geometry.DepthParams()
    results = {}
    for width, height in SIZES:
        depth_mm, k, rois = synthetic_frame(width, height)
        depth_m = geometry.depth_to_meters(depth_mm, '16UC1')
        project_ms, project_min_ms = _time_ms(
            lambda: geometry.project_instances(rois, depth_m, k, params), repeats)
        results[f'geometry_{width}x{height}'] = {
            'project_instances_ms': project_ms,
            'project_instances_min_ms': project_min_ms,
            'project_instances_points_ms': _time_ms(
                lambda: geometry.project_instances(rois, depth_m, k, params, return_points=True),
                repeats)[0],
            'depth_to_meters_ms': _time_ms(
                lambda: geometry.depth_to_meters(depth_mm, '16UC1'), repeats)[0],
            'num_instances': len(rois),
            'mask_pixels': int(sum(int(np.count_nonzero(c)) for _, _, c in rois)),
        }
    return results


if __name__ == '__main__':
    print(json.dumps(bench_projection(), indent=2))
