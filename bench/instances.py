"""Benchmark: end-to-end time per frame vs the number of instances, YOLACT vs Mask R-CNN.

Usage:  python bench/instances.py [--counts 1 5 20 50 100] [--repeats 2] [--device cpu]
            [--out bench/results/instances.json] [--plot bench/results/instances.png]

The claim under test: YOLACT assembles every mask with one matrix product over shared prototypes,
so its cost is nearly constant in the number of instances, while Mask R-CNN runs its mask head
(four 3x3 convs + deconv on a 14x14 RoIAlign crop) once per detection.

Method: random weights (no file needed); the number of detections N is forced by thresholds
(score/conf threshold 0, max_detections = N; random weights score every candidate, so exactly N come
out, checked and reported; mask biases are made positive so no mask is empty and all N are
published). Scene content does not matter for random weights; one synthetic 640x480
image is used. Each frame goes through the same path as the node: ``FramePipeline.process`` (the
segmenter, masks to tight ROIs, host arrays). Counts are measured round-robin (one frame of each count
per round, after one warm-up round), so slow drifts of a shared machine's load hit every count alike;
the median per count is reported, and the least-squares slope (ms per extra instance) of the total,
of each stage and of everything beyond the backbone (timed by hooks on ``model.backbone``: the
ResNet for YOLACT, ResNet + FPN for Mask R-CNN): the backbone does not depend on the instance count,
and on a loaded machine its jitter dominates the total, so ``beyond_backbone`` is the cleaner
measure of the per-instance cost. ``per_instance_part`` times only the stages whose work depends
on the number of detections: YOLACT's post-processing (decode, NMS, coefficients x prototypes,
crop, masks to ROIs) and, for Mask R-CNN, additionally its mask branch (RoIAlign, mask head, mask
predictor, hooked) -- both models' networks before that do not know N. NMS threshold 1.0 keeps
every candidate, so the cap N is always reached. Mask R-CNN runs at ``--maskrcnn-min-size`` (default 480: the 640x480 image at its
own size; torchvision's COCO default 800 would upscale it and cost ~2.8x the backbone time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'instseg_ros'))
from instseg_ros.core.pipeline import FramePipeline  # noqa: E402
from instseg_ros.core.segmenter import InferenceParams  # noqa: E402

MODELS = ('yolact_resnet50', 'yolact_base', 'maskrcnn_resnet50_fpn', 'maskrcnn_resnet50_fpn_v2')
STAGES = ('preprocess', 'forward', 'postprocess', 'encode')


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 BGR [H, W, 3]: gradients, flat rectangles and mild noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    image = np.stack([cols * 255 / width, rows * 255 / height, (rows + cols) * 127 / (height + width)], -1)
    for _ in range(12):
        y0, x0 = rng.integers(0, height - 60), rng.integers(0, width - 60)
        image[y0:y0 + rng.integers(20, 60), x0:x0 + rng.integers(20, 60)] = rng.integers(0, 256, 3)
    image += rng.normal(0.0, 4.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def build_segmenter(name: str, device: torch.device, maskrcnn_min_size: int):
    """A segmenter with random weights (seed 0)."""
    torch.manual_seed(0)
    if name.startswith('maskrcnn'):
        from instseg_ros.core.models.maskrcnn import MaskRcnnConfig, MaskRcnnSegmenter, build_model
        cfg = MaskRcnnConfig(name, min_size=maskrcnn_min_size,
                             max_size=round(maskrcnn_min_size * 1333 / 800))
        model = build_model(cfg).eval()
        with torch.no_grad():  # non-empty masks, so every forced detection is published
            model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(1e-2)
            model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(1.0)
        return MaskRcnnSegmenter(model, cfg, device=device)
    from instseg_ros.core.config import get_preset
    from instseg_ros.core.models.yolact import Yolact, YolactSegmenter, init_weights_
    from instseg_ros.core.predictor import Predictor
    cfg = get_preset(name)
    model = Yolact(cfg)
    init_weights_(model, torch.Generator().manual_seed(0))
    with torch.no_grad():  # positive prototypes and coefficients: non-empty (box-shaped) masks
        model.proto_net[-1].bias.fill_(1.0)
        for layer in model.prediction_layers:
            layer.mask_layer.bias.fill_(1.0)
    return YolactSegmenter(Predictor(model, cfg, device=device))


def forced(count: int) -> InferenceParams:
    """Thresholds that let exactly ``count`` detections through random weights."""
    return InferenceParams(score_threshold=0.0, conf_threshold=0.0, nms_threshold=1.0, top_k=200,
                           max_detections=count)


def slope(xs, ys) -> float:
    """Least-squares slope of ys over xs."""
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


class StageClock:
    """Milliseconds spent in ``modules`` (forward pre/post hooks) since the last ``take()``."""

    def __init__(self, modules, device: torch.device):
        self.device, self.ms, self._start = device, 0.0, 0.0
        for module in modules:
            module.register_forward_pre_hook(self._begin)
            module.register_forward_hook(self._end)

    def _sync(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _begin(self, *_):
        self._sync()
        self._start = time.perf_counter()

    def _end(self, *_):
        self._sync()
        self.ms += (time.perf_counter() - self._start) * 1e3

    def take(self) -> float:
        value, self.ms = self.ms, 0.0
        return value


def measure(name: str, args, image: np.ndarray) -> dict:
    device = torch.device(args.device)
    segmenter = build_segmenter(name, device, args.maskrcnn_min_size)
    clock = StageClock([segmenter.model.backbone], device)
    heads = getattr(segmenter.model, 'roi_heads', None)
    mask_clock = StageClock([heads.mask_roi_pool, heads.mask_head, heads.mask_predictor]
                            if heads is not None else [], device)
    pipeline = FramePipeline(segmenter)
    samples = {n: {'total': [], 'backbone': [], 'beyond_backbone': [], 'mask_branch': [],
                   'per_instance_part': [], **{s: [] for s in STAGES}} for n in args.counts}
    detections = {}
    for round_index in range(args.repeats + 1):  # round 0: warm-up
        for count in args.counts:
            clock.take()
            mask_clock.take()
            start = time.perf_counter()
            result = pipeline.process(image, forced(count))
            total = (time.perf_counter() - start) * 1e3
            backbone, mask_branch = clock.take(), mask_clock.take()
            detections[count] = len(result)
            if round_index == 0:
                continue
            samples[count]['total'].append(total)
            samples[count]['backbone'].append(backbone)
            samples[count]['beyond_backbone'].append(total - backbone)
            samples[count]['mask_branch'].append(mask_branch)
            samples[count]['per_instance_part'].append(
                mask_branch + result.timings_ms['postprocess'] + result.timings_ms['encode'])
            for stage in STAGES:
                samples[count][stage].append(result.timings_ms.get(stage, 0.0))
    medians = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    counts = list(args.counts)
    return {
        'detections': {str(n): detections[n] for n in counts},
        'median_ms': {str(n): {k: round(v, 2) for k, v in medians[n].items()} for n in counts},
        'slope_ms_per_instance': {k: round(slope(counts, [medians[n][k] for n in counts]), 3)
                                  for k in ('total', 'beyond_backbone', 'per_instance_part',
                                            'mask_branch', *STAGES)},
        'spread_ms': {str(n): round(max(samples[n]['total']) - min(samples[n]['total']), 1)
                      for n in counts},
    }


def plot(report: dict, path: Path) -> None:
    """Two panels: end-to-end totals, and the instance-dependent stages alone."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for name, r in report['models'].items():
        counts = [int(n) for n in r['median_ms']]
        slopes = r['slope_ms_per_instance']
        left.plot(counts, [r['median_ms'][str(n)]['total'] for n in counts], marker='o',
                  label=f"{name} ({slopes['total']:+.1f} ms/inst.)")
        right.plot(counts, [r['median_ms'][str(n)]['per_instance_part'] for n in counts], marker='o',
                   label=f"{name} ({slopes['per_instance_part']:+.2f} ms/inst.)")
    left.set_title('end to end (FramePipeline.process)', fontsize=9)
    right.set_title('instance-dependent stages only', fontsize=9)
    for ax in (left, right):
        ax.set_xlabel('instances in the frame (forced detections)')
        ax.set_ylabel('ms per frame (median)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['image_size_hw'][1]}x{report['image_size_hw'][0]}, {report['device']}, "
                 f"random weights, load avg {report['load_avg_before'][0]:.1f} -> "
                 f"{report['load_avg_after'][0]:.1f} ({report['machine']['cores']} cores)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parse_args(argv=None):
    results = Path(__file__).resolve().parent / 'results'
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=list(MODELS))
    parser.add_argument('--counts', nargs='+', type=int, default=[1, 5, 20, 50, 100])
    parser.add_argument('--repeats', type=int, default=2, help='timed rounds (median per count)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--maskrcnn-min-size', type=int, default=480)
    parser.add_argument('--out', type=Path, default=results / 'instances.json')
    parser.add_argument('--plot', type=Path, default=results / 'instances.png')
    parser.add_argument('--replot', action='store_true', help='only redraw --plot from --out')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.replot:
        report = json.loads(args.out.read_text())
        plot(report, args.plot)
        return report
    if args.threads:
        torch.set_num_threads(args.threads)
    image = synthetic_image(args.height, args.width)
    report = {'command': ' '.join([Path(sys.executable).name, *sys.argv]),
              'machine': {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(),
                          'torch': torch.__version__, 'threads': torch.get_num_threads()},
              'device': args.device, 'image_size_hw': [args.height, args.width],
              'maskrcnn_min_size': args.maskrcnn_min_size, 'repeats': args.repeats,
              'load_avg_before': [round(v, 2) for v in os.getloadavg()], 'models': {}}
    started = time.perf_counter()
    for name in args.models:
        print(f'measuring {name} ...', file=sys.stderr, flush=True)
        report['models'][name] = measure(name, args, image)
        r = report['models'][name]
        print(f"  {name}: " + ', '.join(f"{n}: {v['total']:.0f} ms" for n, v in r['median_ms'].items())
              + f"; slope {r['slope_ms_per_instance']['total']:+.2f} ms/instance", file=sys.stderr)
    report['load_avg_after'] = [round(v, 2) for v in os.getloadavg()]
    report['wall_s'] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    plot(report, args.plot)
    return report


if __name__ == '__main__':
    main()
