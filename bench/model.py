"""Benchmark: YOLACT inference (random weights) per 640x480 frame, next to torchvision Mask R-CNN.

Usage:  python bench/model.py [--repeats 3] [--device cpu] [--out bench/results/model.json]

Every model runs in its own fresh (spawned) process, so its memory figure is not polluted by the others:
* CPU: peak RSS growth of that process (``resource.getrusage`` ``ru_maxrss`` after the run minus the
  value after importing torch, before building the model) -> weights + activations + allocator slack.
* CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, excludes the CUDA context and cache slack).
Times are medians over ``--repeats`` runs after ``--warmup`` runs, on one synthetic image.

Random weights give arbitrary scores, so by default both models are pushed to their detection cap
(YOLACT ``conf/score_threshold=0``, ``max_detections=100``; Mask R-CNN ``box_score_thresh=0``,
``box_detections_per_img=100``): post-processing is timed at its worst case, with masks pasted at
640x480 for 100 instances in both. The number of detections is reported.
Mask R-CNN resizes internally to its default ``min_size=800`` (800x1066); its "forward" includes its own
pre/post-processing (resize, normalisation, mask pasting), its "preprocess" is the host->tensor step.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

# Benchmark this checkout's sources, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'instseg_ros'))
from instseg_ros.core.config import get_preset  # noqa: E402
from instseg_ros.core.model.yolact import Yolact, init_weights_  # noqa: E402
from instseg_ros.core.predictor import InferenceParams, Predictor  # noqa: E402

MASKRCNN = 'maskrcnn_resnet50_fpn'
STAGES = ('preprocess', 'forward', 'postprocess')


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 BGR [H, W, 3]: smooth gradients plus a few flat rectangles and mild noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    image = np.stack([cols * 255 / width, rows * 255 / height, (rows + cols) * 127 / (height + width)], -1)
    for _ in range(6):
        y0, x0 = rng.integers(0, height - 60), rng.integers(0, width - 60)
        h, w = rng.integers(40, min(200, height - y0)), rng.integers(40, min(250, width - x0))
        image[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
    image += rng.normal(0.0, 4.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _run_yolact(name: str, device: torch.device, image: np.ndarray, warmup: int, repeats: int):
    """-> (per-stage list of ms, detections, parameter count)."""
    cfg = get_preset(name)
    with torch.device(device):
        model = Yolact(cfg)
    init_weights_(model, torch.Generator(device=device).manual_seed(0))
    predictor = Predictor(model, cfg, device=device)
    params = InferenceParams(score_threshold=0.0, conf_threshold=0.0, max_detections=100)
    times = {stage: [] for stage in STAGES}
    for i in range(warmup + repeats):
        instances = predictor(image, color_order='bgr', params=params)
        if i >= warmup:
            for stage in STAGES:
                times[stage].append(predictor.last_timings_ms[stage])
    return times, len(instances), sum(p.numel() for p in model.parameters())


def _run_maskrcnn(device: torch.device, image: np.ndarray, warmup: int, repeats: int):
    """-> (per-stage list of ms, detections, parameter count); postprocess is inside forward."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    torch.manual_seed(0)  # torchvision initialises from the global generator; this is a separate process
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0,
                                  box_detections_per_img=100).to(device).eval()
    times = {'preprocess': [], 'forward': []}  # no separate post-processing stage
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            tensor = torch.from_numpy(image[:, :, ::-1].copy()).to(device).permute(2, 0, 1).float() / 255
            _sync(device)
            uploaded = time.perf_counter()
            detections = model([tensor])[0]
            _sync(device)
            done = time.perf_counter()
            if i >= warmup:
                times['preprocess'].append((uploaded - start) * 1e3)
                times['forward'].append((done - uploaded) * 1e3)
    return times, int(detections['scores'].shape[0]), sum(p.numel() for p in model.parameters())


def measure(name: str, device_name: str, height: int, width: int, warmup: int, repeats: int,
            threads: int | None) -> dict:
    """Run one model in this process; returns medians (ms), detections, memory and parameter count."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    image = synthetic_image(height, width)
    rss_before = _peak_rss_mib()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    if name == MASKRCNN:
        times, detections, num_params = _run_maskrcnn(device, image, warmup, repeats)
    else:
        times, detections, num_params = _run_yolact(name, device, image, warmup, repeats)
    medians = {f'{stage}_ms': statistics.median(times[stage]) if stage in times else None
               for stage in STAGES}
    totals = [sum(v) for v in zip(*times.values())]
    memory = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == 'cuda'
              else _peak_rss_mib() - rss_before)
    return {**medians, 'total_ms': statistics.median(totals), 'detections': detections,
            'peak_memory_mib': round(memory, 1), 'params_m': round(num_params / 1e6, 2),
            'threads': torch.get_num_threads()}


def measure_in_subprocess(name: str, args: argparse.Namespace) -> dict:
    """``measure`` in a fresh spawned process (clean peak-RSS baseline)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context('spawn')) as pool:
        return pool.submit(measure, name, args.device, args.height, args.width, args.warmup,
                           args.repeats, args.threads).result()


def markdown_table(results: dict[str, dict], memory_label: str) -> str:
    header = ('| model | params (M) | preprocess ms | forward ms | postprocess ms | total ms | detections '
              f'| {memory_label} |')
    lines = [header, '|' + '---|' * 8]
    for name, r in results.items():
        post = 'in forward' if r['postprocess_ms'] is None else f"{r['postprocess_ms']:.1f}"
        lines.append(f"| {name} | {r['params_m']:.2f} | {r['preprocess_ms']:.1f} | {r['forward_ms']:.1f} "
                     f"| {post} | {r['total_ms']:.1f} | {r['detections']} | {r['peak_memory_mib']:.0f} |")
    return '\n'.join(lines)


def ratios(results: dict[str, dict]) -> dict[str, float]:
    """Mask R-CNN total time / YOLACT total time, per YOLACT model."""
    if MASKRCNN not in results:
        return {}
    reference = results[MASKRCNN]['total_ms']
    return {f'{MASKRCNN}_over_{name}': round(reference / r['total_ms'], 2)
            for name, r in results.items() if name != MASKRCNN}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['yolact_resnet50', 'yolact_base'])
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per model (median)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs before timing')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:N]'")
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch)')
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--no-maskrcnn', action='store_true', help='skip the Mask R-CNN comparison')
    parser.add_argument('--out', type=Path, default=Path(__file__).resolve().parent / 'results' / 'model.json')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    names = list(args.models) + ([] if args.no_maskrcnn else [MASKRCNN])
    results = {}
    for name in names:
        print(f'measuring {name} ...', file=sys.stderr, flush=True)
        results[name] = measure_in_subprocess(name, args)
    on_cuda = torch.device(args.device).type == 'cuda'
    memory_method = ('torch.cuda.max_memory_allocated' if on_cuda
                     else 'ru_maxrss growth of a fresh process (after importing torch)')
    report = {'image_size_hw': [args.height, args.width], 'device': args.device,
              'repeats': args.repeats, 'warmup': args.warmup, 'torch': torch.__version__,
              'cpu': platform.processor() or platform.machine(), 'memory_method': memory_method,
              'detection_params': 'thresholds 0, 100 detections per image (worst-case post-processing)',
              'models': results, 'ratios_total_time': ratios(results)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    print(markdown_table(results, 'peak MiB (GPU alloc)' if on_cuda else 'peak RSS growth MiB'))
    for key, value in report['ratios_total_time'].items():
        print(f'- {key}: {value:.2f}x')
    return report


if __name__ == '__main__':
    main()
