"""Benchmark of core.tracking.Tracker.update: cost per frame (CPU, numpy + scipy).

Sequences: 20 objects (and 50 for scale) moving on separate lanes at 640x480 and 1280x720, and
20 large objects moving in 2D that overlap and occlude each other at 640x480 ('dense'),
generated with exact truth (instseg_ros.synth.sequences); 3D positions given (the 3D gate and
cost are exercised) and not given (IoU only). Reports per-frame median / p90 / max in ms and the
MOTA / IDF1 reached, so speed and quality are measured on the same frames. Target: < 2 ms per
frame for 20 instances.

Usage:  python bench/tracking.py [--frames 150] [--out bench/results/tracking.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

# Benchmark this checkout's sources, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'instseg_ros'))
from instseg_ros.core.mot_metrics import mot_summary  # noqa: E402
from instseg_ros.core.tracking import Tracker, TrackerParams  # noqa: E402
from instseg_ros.synth.sequences import MovingObject, lane_objects, render_sequence  # noqa: E402

#: (layout, instances, width, height): 'lanes' = separate lanes (no overlaps), 'dense' = random
#: 2D motion with large, overlapping, occluding objects (many mask-IoU pairs per frame).
CASES = (('lanes', 20, 640, 480), ('dense', 20, 640, 480), ('lanes', 20, 1280, 720),
         ('lanes', 50, 1280, 720))


def dense_objects(count: int, width: int, height: int, seed: int) -> list[MovingObject]:
    """``count`` objects of radius 30-60 px (at 640 wide) anywhere, bouncing in 2D."""
    rng = np.random.default_rng(seed)
    scale = width / 640
    return [MovingObject(gt_id=i + 1, label=int(rng.integers(5)),
                         start_xy=(float(rng.uniform(0, width)), float(rng.uniform(0, height))),
                         velocity_xy=tuple(float(v) for v in rng.uniform(-5, 5, 2) * scale),
                         radius_px=float(rng.uniform(30, 60) * scale),
                         depth_m=float(rng.uniform(0.8, 3.0)), shape=('disc', 'rect')[i % 2])
            for i in range(count)]


def bench_case(layout: str, count: int, width: int, height: int, frames: int,
               use_depth: bool) -> dict:
    """Time Tracker.update frame by frame over one generated sequence."""
    objects = (lane_objects(count, width, height, speed_px=6.0, seed=count) if layout == 'lanes'
               else dense_objects(count, width, height, seed=count))
    sequence = render_sequence(objects, frames, width=width, height=height,
                               fx=525.0 * width / 640)
    tracker, times_ms, pairs = Tracker(TrackerParams()), [], []
    for frame in sequence:
        positions = frame.positions_m if use_depth else None
        start = time.perf_counter()
        ids, _ = tracker.update(frame.rois, frame.labels, frame.scores, positions,
                                image_size=(height, width))
        times_ms.append((time.perf_counter() - start) * 1e3)
        pairs.append((frame.gt_ids, ids))
    summary = mot_summary(pairs)
    times = np.asarray(times_ms[5:])  # the first frames have no tracks yet
    mean_side = float(np.mean([np.sqrt(c.shape[0] * c.shape[1]) for _, _, c in sequence[0].rois]))
    return {'layout': layout, 'instances': count,
            'visible_per_frame': round(float(np.mean([len(f.rois) for f in sequence])), 1),
            'image': f'{width}x{height}', 'depth': use_depth,
            'frames': frames, 'mean_roi_side_px': round(mean_side, 1),
            'median_ms': round(float(np.median(times)), 3),
            'p90_ms': round(float(np.percentile(times, 90)), 3),
            'max_ms': round(float(times.max()), 3),
            'mota': round(summary.mota, 4), 'idf1': round(summary.idf1, 4),
            'id_switches': summary.id_switches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=150)
    parser.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results'
                                              / 'tracking.json'))
    args = parser.parse_args()
    import scipy
    report = {'command': ' '.join([Path(sys.executable).name, *sys.argv]),
              'machine': {'platform': platform.platform(), 'python': platform.python_version(),
                          'cpu': platform.processor() or platform.machine(),
                          'cpu_count': os.cpu_count(), 'numpy': np.__version__,
                          'scipy': scipy.__version__,
                          'load_average_start': [round(v, 2) for v in os.getloadavg()]},
              'target_ms_20_instances': 2.0, 'results': []}
    for layout, count, width, height in CASES:
        for use_depth in (True, False):
            report['results'].append(bench_case(layout, count, width, height, args.frames,
                                                use_depth))
    report['machine']['load_average_end'] = [round(v, 2) for v in os.getloadavg()]
    worst_20 = max(r['median_ms'] for r in report['results'] if r['instances'] == 20)
    report['target_met'] = worst_20 < report['target_ms_20_instances']
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + '\n')
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
