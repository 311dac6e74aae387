"""SOLOv2 parity: this package's pure-PyTorch SOLOv2 against mmdetection 3.3.0's own inference.

Usage (mmdet installed apart from the venv, see bench/mmdet_reference.py):

    python bench/parity_solov2.py [--presets solov2_r50 solov2_light_r50] [--out bench/results/parity_solov2.json]

Per preset: mmdet's detector from its config with random weights, perturbed so that random
features give tens of detections (a few classes' ``conv_cls`` biases raised, its weights scaled),
saved as mmdet publishes checkpoints ({'meta', 'state_dict'}, file named like mmdet's), loaded by
``instseg_ros.core.models.solov2.build_segmenter`` (strict keys, preset from the file). On
synthetic scenes of several sizes both predict; instance ``i`` of each (both sorted by score) is
compared. Criteria: label equal, score within 1e-4, box (mmdet's ``mask2bbox`` of its masks)
within 0.5 px, mask IoU > 0.99 on >= 99 % of the instances.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / 'instseg_ros'))

import mmdet_reference as R  # noqa: E402

from instseg_ros.core.models.solov2 import build_segmenter  # noqa: E402
from instseg_ros.synth.scene import Camera, render_scene  # noqa: E402

CONFIGS = {'solov2_r50': ('solov2/solov2_r50_fpn_1x_coco.py', 'solov2_r50_fpn_1x_coco_parity.pth'),
           'solov2_light_r50': ('solov2/solov2-light_r50_fpn_ms-3x_coco.py',
                                'solov2-light_r50_fpn_ms-3x_coco_parity.pth')}
SIZES_HW = ((480, 640), (720, 1280), (375, 500))
SCORE_TOL, BOX_TOL_PX, MASK_IOU, MASK_FRACTION = 1e-4, 0.5, 0.99, 0.99


#: category bias of classes 0-5 per preset: tens of detections per image, below max_per_img (100)
DETECTING_BIAS = {'solov2_r50': -7.0, 'solov2_light_r50': -4.5}


def perturbed_reference(config: str, detecting_bias: float, seed: int = 0):
    """mmdet detector with random weights that detect: classes 0-5 get ``detecting_bias``, the
    others -12, conv_cls weights x5."""
    torch.manual_seed(seed)
    model, cfg = R.build_detector(config)
    head = model.mask_head
    with torch.no_grad():
        head.conv_cls.weight.mul_(5.0)
        head.conv_cls.bias.fill_(-12.0)
        head.conv_cls.bias[:6] = detecting_bias
    return model, cfg


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """mmdet's mask2bbox: float32 [N, 4] = [x0, y0, x1 + 1, y1 + 1], zeros for empty masks."""
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if ys.size:
            boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def roi_iou(roi, mask: np.ndarray) -> float:
    """IoU of an (x0, y0, crop) ROI (or None) with a full-frame bool mask."""
    full = np.zeros_like(mask)
    if roi is not None:
        x0, y0, crop = roi
        full[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    union = np.logical_or(full, mask).sum()
    return 1.0 if union == 0 else float(np.logical_and(full, mask).sum() / union)


def compare(ref, ours) -> dict:
    """Per-image figures: counts, worst score / box differences, mask IoUs, label mismatches."""
    masks = ref.masks.cpu().numpy().astype(bool)
    ref_scores, ref_labels = ref.scores.cpu().numpy(), ref.labels.cpu().numpy()
    ref_boxes = mask_boxes(masks)
    n = min(len(ref_scores), len(ours.scores))
    ious = [roi_iou(ours.rois[i], masks[i]) for i in range(n)]
    score_diff = np.abs(ref_scores[:n] - ours.scores[:n])
    box_diff = np.abs(ref_boxes[:n] - ours.boxes_xyxy[:n])
    return {'mmdet_instances': int(len(ref_scores)), 'our_instances': int(len(ours.scores)),
            'label_mismatches': int((ref_labels[:n] != ours.labels[:n]).sum()),
            'max_score_diff': float(score_diff.max()) if n else 0.0,
            'max_box_diff_px': float(box_diff.max()) if n else 0.0,
            'min_mask_iou': float(min(ious)) if n else 1.0,
            'mask_iou_above_0.99': float(np.mean(np.array(ious) > MASK_IOU)) if n else 1.0}


def passed(fig: dict) -> bool:
    return (fig['mmdet_instances'] == fig['our_instances'] and fig['label_mismatches'] == 0
            and fig['max_score_diff'] <= SCORE_TOL and fig['max_box_diff_px'] <= BOX_TOL_PX
            and fig['mask_iou_above_0.99'] >= MASK_FRACTION)


def run_preset(preset: str, sizes, tmp: Path) -> dict:
    config, file_name = CONFIGS[preset]
    model, cfg = perturbed_reference(config, DETECTING_BIAS[preset])
    path = tmp / file_name
    R.save_as_published(model, path, tuple(f'class_{i}' for i in range(80)))
    ours = build_segmenter(path, 'auto', device='cpu')
    assert ours.name == preset, ours.name
    images = []
    for index, (height, width) in enumerate(sizes):
        image = render_scene(7000 + index, Camera(width, height)).image_bgr
        start = time.perf_counter()
        ref = R.inference(model, cfg, image)
        ref_s = time.perf_counter() - start
        dets = ours.predict_rois(image)
        fig = compare(ref, dets)
        fig.update(image_hw=[height, width], mmdet_s=round(ref_s, 2),
                   ours_ms={k: round(v, 1) for k, v in ours.last_timings_ms.items()}, passed=passed(fig))
        print(preset, fig, flush=True)
        images.append(fig)
    return {'config': config, 'images': images, 'passed': all(f['passed'] for f in images)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--presets', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument('--out', default=str(HERE / 'results' / 'parity_solov2.json'))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    report = {'machine': f'{platform.node()} {platform.processor() or platform.machine()}, '
                         f'{torch.get_num_threads()} threads, torch {torch.__version__}',
              'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
              'command': 'python bench/parity_solov2.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
              'load_average_1_5_15min': [round(v, 2) for v in os.getloadavg()],
              'timing_note': 'shared 2-core machine (other users running tests): times are indicative only',
              'criteria': {'score_tol': SCORE_TOL, 'box_tol_px': BOX_TOL_PX, 'mask_iou': MASK_IOU,
                           'mask_fraction': MASK_FRACTION}, 'presets': {}}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            report['presets'][preset] = run_preset(preset, SIZES_HW, Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + '\n')
    ok = all(p['passed'] for p in report['presets'].values())
    print('PASS' if ok else 'FAIL', args.out)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
