"""bf16 vs fp32 masks on random official-format checkpoints of the YOLACT presets (CPU).

For each preset: a random checkpoint in the official layout (prototype and coefficient biases set
positive so random weights give object-sized masks, as the tests' small checkpoints do), saved
under the official file name, loaded twice (precision fp32 and bf16), run on the same synthetic
640x480 scenes. Instances are matched by their fp32 box (greedy, box IoU >= 0.5, same class);
reported: how many matched, the IoU distribution of their masks (min, p1, p5, median) and the
fraction with IoU > 0.95, plus the max |raw output| difference of the network. JSON with machine,
load average and command.

    python bench/bf16_masks.py --out bench/results/bf16_masks.json [--presets ...] [--scenes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'instseg_ros'))

from instseg_ros.core.checkpoint import save_checkpoint  # noqa: E402
from instseg_ros.core.config import get_preset  # noqa: E402
from instseg_ros.core.model.yolact import Yolact  # noqa: E402
from instseg_ros.core.postprocess import InferenceParams  # noqa: E402
from instseg_ros.core.predictor import Predictor  # noqa: E402
from instseg_ros.synth.scene import Camera, render_scene  # noqa: E402

FILE_NAMES = {'yolact_resnet50': 'yolact_resnet50_54_800000.pth',
              'yolact_base': 'yolact_base_54_800000.pth',
              'yolact_darknet53': 'yolact_darknet53_54_800000.pth',
              'yolact_im700': 'yolact_im700_54_800000.pth'}


def random_checkpoint(preset: str, directory: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = Yolact(get_preset(preset)).eval()
    with torch.no_grad():
        last = [m for m in model.proto_net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias.fill_(1.0)
        model.prediction_layers[0].mask_layer.bias.fill_(1.0)
    path = directory / FILE_NAMES[preset]
    save_checkpoint(model, path)
    return path


def mask_iou(a, b) -> float:
    (ax, ay, am), (bx, by, bm) = a, b
    x0, y0 = min(ax, bx), min(ay, by)
    x1, y1 = max(ax + am.shape[1], bx + bm.shape[1]), max(ay + am.shape[0], by + bm.shape[0])
    fa = np.zeros((y1 - y0, x1 - x0), bool)
    fb = np.zeros_like(fa)
    fa[ay - y0:ay - y0 + am.shape[0], ax - x0:ax - x0 + am.shape[1]] = am
    fb[by - y0:by - y0 + bm.shape[0], bx - x0:bx - x0 + bm.shape[1]] = bm
    union = np.logical_or(fa, fb).sum()
    return 1.0 if union == 0 else float(np.logical_and(fa, fb).sum() / union)


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(fp32, bf16) -> tuple[list[float], int]:
    """Mask IoUs of fp32 instances matched to bf16 ones; and the fp32 instance count."""
    used, ious = set(), []
    for i in range(len(fp32.scores)):
        if fp32.rois[i] is None:
            continue
        best, best_j = 0.5, None
        for j in range(len(bf16.scores)):
            if j in used or bf16.rois[j] is None or bf16.labels[j] != fp32.labels[i]:
                continue
            overlap = box_iou(fp32.boxes_xyxy[i], bf16.boxes_xyxy[j])
            if overlap >= best:
                best, best_j = overlap, j
        if best_j is not None:
            used.add(best_j)
            ious.append(mask_iou(fp32.rois[i], bf16.rois[best_j]))
    return ious, sum(r is not None for r in fp32.rois)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--presets', nargs='+', default=list(FILE_NAMES))
    parser.add_argument('--scenes', type=int, default=3)
    parser.add_argument('--score-threshold', type=float, default=0.0,
                        help='0: random weights score every class ~1/81; the top 100 are kept')
    parser.add_argument('--out', type=Path, default=Path('bench/results/bf16_masks.json'))
    args = parser.parse_args(argv)
    report = {'command': ' '.join(['python'] + sys.argv), 'date_utc': time.strftime(
        '%Y-%m-%d %H:%M', time.gmtime()),
        'machine': {'cpu_count': os.cpu_count(), 'platform': platform.platform(),
                    'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
                    'load_average_start': [round(v, 2) for v in os.getloadavg()]},
        'presets': {}}
    params = InferenceParams(score_threshold=args.score_threshold, max_detections=100,
                             conf_threshold=0.0)  # random weights: every score ~1/81
    images = [render_scene(7000 + i, Camera(640, 480)).image_bgr for i in range(args.scenes)]
    with tempfile.TemporaryDirectory() as tmp:
        for index, preset in enumerate(args.presets):
            path = random_checkpoint(preset, Path(tmp), seed=100 + index)
            runs = {p: Predictor.from_checkpoint(str(path), device='cpu', precision=p)
                    for p in ('fp32', 'bf16')}
            ious, total = [], 0
            for image in images:
                results = {p: pred.predict_rois(image, color_order='bgr', params=params)
                           for p, pred in runs.items()}
                got, count = compare(results['fp32'], results['bf16'])
                ious += got
                total += count
            ious_np = np.asarray(ious) if ious else np.zeros(0)
            entry = {'fp32_instances': total, 'matched': len(ious),
                     'matched_fraction': round(len(ious) / total, 4) if total else None}
            if len(ious_np):
                entry.update({'iou_min': round(float(ious_np.min()), 4),
                              'iou_p1': round(float(np.percentile(ious_np, 1)), 4),
                              'iou_p5': round(float(np.percentile(ious_np, 5)), 4),
                              'iou_median': round(float(np.median(ious_np)), 4),
                              'fraction_iou_above_0.95': round(float((ious_np > 0.95).mean()), 4)})
            report['presets'][preset] = entry
            print(preset, entry, flush=True)
    report['machine']['load_average_end'] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    return report


if __name__ == '__main__':
    main()
