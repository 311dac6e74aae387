#!/usr/bin/env python3
"""Parity of our pure-PyTorch dense instance segmenters with mmdetection 3.3.0's own inference.

For each preset: mmdet's detector from its config, filled with deterministic synthetic weights
(``testing.calibrated_state_dict``: seeded random tensors, BatchNorm statistics measured on the
parity images, class biases shifted so that every image has detections), saved as
mmdet publishes checkpoints, loaded by our builder; both run on synthetic scenes of several
sizes. A reference detection counts as matched when one of ours has the same class, a score
within 1e-4 and every box coordinate within 0.5 px; matched pairs report their mask IoU. Passing:
every reference detection matched (and no extra ones) and mask IoU > 0.99 on >= 99 % of them.

    MMDET_PATH=/work/scratch/mmlib python bench/parity_mmdet.py [--presets rtmdet_ins_tiny ...]
    python bench/parity_mmdet.py --family condinst [--sizes 480x640 333x250]
    python bench/parity_mmdet.py --golden instseg_ros/test/data/rtmdet_golden.json
    python bench/parity_mmdet.py --family condinst --golden instseg_ros/test/data/condinst_golden.json

Each run replaces its own presets in ``--out`` and keeps the other families' results.

Add a family (e.g. SOLOv2) with one :class:`Family` entry in ``FAMILIES``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / 'instseg_ros'))

import mmdet_reference as reference  # noqa: E402

IMAGE_SIZES_HW = ((480, 640), (720, 1280), (375, 500), (333, 250))  # last: portrait whose w/h scales differ
SCORE_TOL, BOX_TOL_PX, MASK_IOU_MIN, MASK_SHARE_MIN = 1e-4, 0.5, 0.99, 0.99


@dataclass(frozen=True)
class Family:
    """One model family: mmdet config per preset, our builder, the parameters that reproduce
    mmdet's test_cfg, and how to give random weights some detections."""

    configs: dict[str, str]
    build: Callable[..., object]          # (weights path) -> our Segmenter
    params: Callable[[], object]          # () -> InferenceParams equal to mmdet's test_cfg
    weights: Callable[..., dict]  # (preset, seed, images_bgr) -> state dict with detections
    golden: Callable[..., None] | None = None  # (path, seed) -> writes the family's test golden file


def _rtmdet_weights(preset: str, seed: int, images_bgr) -> dict:
    """Synthetic weights whose BatchNorm statistics are measured on the parity images."""
    from instseg_ros.core.models.rtmdet import get_config
    from instseg_ros.core.models.rtmdet.postprocess import preprocess
    from instseg_ros.core.models.rtmdet.testing import calibrated_state_dict, shift_class_biases
    cfg = get_config(preset)
    batch, _ = preprocess(images_bgr, cfg, torch.device('cpu'))
    return shift_class_biases(calibrated_state_dict(cfg, seed, cls_bias=-7.0, images=batch), cfg, batch,
                              candidates=40)


def _rtmdet_family() -> Family:
    from instseg_ros.core.models import rtmdet
    configs = {p: f'rtmdet/rtmdet-ins_{p.rsplit("_", 1)[1]}_8xb32-300e_coco.py' for p in rtmdet.PRESETS}
    return Family(configs, build=lambda path: rtmdet.build_segmenter(path),
                  params=lambda: rtmdet.MMDET_TEST_PARAMS, weights=_rtmdet_weights)


def _condinst_weights(preset: str, seed: int, images_bgr) -> dict:
    """Synthetic CondInst weights, BatchNorm statistics measured on the parity images, class
    biases shifted so that every image has candidates."""
    from instseg_ros.core.models.condinst import get_config
    from instseg_ros.core.models.condinst.testing import calibrated_state_dict, shift_class_biases
    from instseg_ros.core.models.condinst.preprocess import preprocess_batch
    cfg = get_config(preset)
    batch = preprocess_batch(images_bgr, 'bgr', cfg.test_scale, cfg.size_divisor, cfg.mean_rgb, cfg.std_rgb,
                             torch.device('cpu')).images
    state = calibrated_state_dict(cfg, batch, seed, cls_bias=-4.0)
    return shift_class_biases(state, cfg, batch, candidates=250)


def _condinst_golden(path: Path, seed: int = 0) -> None:
    """Write test_condinst.py's golden file: mmdet's detections of the test's image with the
    test's seeded weights."""
    sys.path.insert(0, str(HERE.parent / 'instseg_ros' / 'test' / 'core'))
    from test_condinst import GOLDEN_CONFIG, golden_image, golden_state_dict
    model, cfg = reference.build_detector(GOLDEN_CONFIG)
    model.load_state_dict(golden_state_dict(seed), strict=True)
    _write_golden(path, reference.inference(model, cfg, golden_image()), seed, '--family condinst --golden')


def _condinst_family() -> Family:
    from instseg_ros.core.models import condinst
    return Family({'condinst_r50': 'condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py'},
                  build=lambda path: condinst.build_segmenter(path), params=lambda: condinst.MMDET_TEST_PARAMS,
                  weights=_condinst_weights, golden=_condinst_golden)


FAMILIES: dict[str, Callable[[], Family]] = {'rtmdet_ins': _rtmdet_family, 'condinst': _condinst_family}


def scenes(seed: int = 7) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 BGR image) of the project's synthetic scenes at each size."""
    from instseg_ros.synth.scene import Camera, render_scene
    return [(f'{h}x{w}', render_scene(seed + i, Camera(width=w, height=h)).image_bgr)
            for i, (h, w) in enumerate(IMAGE_SIZES_HW)]


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _full_masks(det, hw: tuple[int, int]) -> np.ndarray:
    masks = np.zeros((len(det.rois), *hw), dtype=bool)
    for i, roi in enumerate(det.rois):
        if roi is not None:
            x0, y0, crop = roi
            masks[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return masks


def compare(ref, det, hw: tuple[int, int]) -> dict:
    """Match mmdet's InstanceData ``ref`` with our RoiDetections ``det`` of an image of ``hw``."""
    ref_boxes, ref_scores = ref.bboxes.numpy(), ref.scores.numpy()
    ref_labels, ref_masks = ref.labels.numpy(), ref.masks.numpy()
    if ref_masks.shape[1:] != hw:  # mmdet's mask can be a few rows short of a portrait image
        padded = np.zeros((len(ref_masks), *hw), dtype=bool)
        padded[:, :ref_masks.shape[1], :ref_masks.shape[2]] = ref_masks[:, :hw[0], :hw[1]]
        ref_masks = padded
    ours = _full_masks(det, hw)
    used = np.zeros(len(det.scores), dtype=bool)
    ious, worst_score, worst_box = [], 0.0, 0.0
    for i in range(len(ref_scores)):
        score_err = np.abs(det.scores - ref_scores[i])
        box_err = np.abs(det.boxes_xyxy - ref_boxes[i]).max(axis=1) if len(det.scores) else score_err
        ok = (~used) & (det.labels == ref_labels[i]) & (score_err <= SCORE_TOL) & (box_err <= BOX_TOL_PX)
        if not ok.any():
            continue
        candidates = np.flatnonzero(ok)
        best = max(candidates, key=lambda j: _mask_iou(ours[j], ref_masks[i]))
        used[best] = True
        ious.append(_mask_iou(ours[best], ref_masks[i]))
        worst_score = max(worst_score, float(score_err[best]))
        worst_box = max(worst_box, float(box_err[best]))
    ious_arr = np.array(ious)
    return {'reference': int(len(ref_scores)), 'ours': int(len(det.scores)), 'matched': len(ious),
            'worst_score_err': worst_score, 'worst_box_err_px': worst_box,
            'min_mask_iou': float(ious_arr.min()) if len(ious) else None,
            'mean_mask_iou': float(ious_arr.mean()) if len(ious) else None,
            'mask_iou_gt_0.99': int((ious_arr > MASK_IOU_MIN).sum()),
            'ref_mask_pixels': int(ref_masks.sum()), 'our_mask_pixels': int(ours.sum())}


def passed(row: dict) -> bool:
    """Every detection matched both ways and enough masks above the IoU bound."""
    n = row['reference']
    return (row['matched'] == n == row['ours']
            and row['mask_iou_gt_0.99'] >= MASK_SHARE_MIN * n)


def run_preset(family: Family, preset: str, images, seed: int, workdir: Path) -> dict:
    """Build mmdet's model, fill, save as published, load ours, compare on every image."""
    model, cfg = reference.build_detector(family.configs[preset])
    model.load_state_dict(family.weights(preset, seed, [image for _, image in images]), strict=True)
    num_classes = int(model.bbox_head.num_classes)
    path = workdir / f'{family.configs[preset].split("/")[-1][:-3]}_synthetic.pth'
    reference.save_as_published(model, path, tuple(f'class_{i}' for i in range(num_classes)))
    ours = family.build(str(path))
    rows = {}
    for name, image in images:
        started = time.perf_counter()
        ref = reference.inference(model, cfg, image)
        ref_s = time.perf_counter() - started
        det = ours.predict_rois(image, params=family.params())
        row = compare(ref, det, image.shape[:2])
        row.update(mmdet_s=round(ref_s, 3), ours_ms=dict((k, round(v, 1)) for k, v in ours.last_timings_ms.items()))
        row['passed'] = passed(row)
        rows[name] = row
        print(preset, name, json.dumps(row), flush=True)
    return rows


def golden(path: Path, seed: int = 0) -> None:
    """Write the small mmdet-computed reference of test_rtmdet.py (tiny preset, synthetic weights
    of ``seed``, the test's numpy image)."""
    sys.path.insert(0, str(HERE.parent / 'instseg_ros' / 'test' / 'core'))
    from test_rtmdet import golden_state_dict, golden_image
    model, cfg = reference.build_detector('rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py')
    model.load_state_dict(golden_state_dict(seed), strict=True)
    _write_golden(path, reference.inference(model, cfg, golden_image()), seed, '--golden')


def _write_golden(path: Path, ref, seed: int, options: str) -> None:
    """The first 12 of mmdet's detections ``ref`` (InstanceData) as small JSON numbers."""
    top = slice(0, 12)
    data = {'source': f'mmdet 3.3.0 inference (bench/parity_mmdet.py {options})', 'seed': seed,
            'count': int(len(ref.scores)),
            'boxes_xyxy': [[round(float(v), 3) for v in b] for b in ref.bboxes[top]],
            'scores': [round(float(s), 6) for s in ref.scores[top]],
            'labels': [int(v) for v in ref.labels[top]],
            'mask_pixels': [int(m.sum()) for m in ref.masks[top]]}
    path.write_text(json.dumps(data, indent=1) + '\n')
    print(f'wrote {path} ({data["count"]} detections)')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--family', default='rtmdet_ins', choices=sorted(FAMILIES),
                        help='the family to run; results of other families already in --out are kept')
    parser.add_argument('--sizes', nargs='*', help='scene sizes HxW to run (default: all of IMAGE_SIZES_HW)')
    parser.add_argument('--presets', nargs='*', help='default: every preset of the family')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, default=HERE / 'results' / 'parity_mmdet.json')
    parser.add_argument('--golden', type=Path, help='write the test golden file instead')
    args = parser.parse_args(argv)
    reference.setup()
    torch.set_grad_enabled(False)
    family = FAMILIES[args.family]()
    if args.golden:
        (family.golden or golden)(args.golden, args.seed)
        return 0
    images = [(name, image) for name, image in scenes() if not args.sizes or name in args.sizes]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets or list(family.configs):
            results[preset] = run_preset(family, preset, images, args.seed, Path(tmp))
    ok = all(r['passed'] for rows in results.values() for r in rows.values())
    run = {'machine': f'{platform.node()} {platform.processor() or platform.machine()}, '
                      f'{torch.get_num_threads()} threads, torch {torch.__version__}',
           'date_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
           'command': ' '.join(['python', 'bench/parity_mmdet.py', *(argv or sys.argv[1:])]),
           'seed': args.seed, 'presets': sorted(results), 'passed': ok}
    report = merge_report(args.out, args.family, run, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    print(f'{"PASS" if ok else "FAIL"}: wrote {args.out} (all families: '
          f'{"PASS" if report["passed"] else "FAIL"})')
    return 0 if ok else 1


def merge_report(path: Path, family: str, run: dict, results: dict) -> dict:
    """The report at ``path`` (if any) with this run's presets replaced or added: ``results`` by
    preset (all families), ``families`` by family (machine, date, command, seed, presets,
    passed). A report of the older one-family layout (top-level 'family', 'machine' ...) is
    converted, so no earlier result is lost."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    families = dict(old.get('families', {}))
    if 'family' in old:  # older layout: one family's run at the top level
        families[old['family']] = {k: old[k] for k in ('machine', 'date_utc', 'command', 'seed', 'passed')
                                   if k in old}
        families[old['family']]['presets'] = sorted(old.get('results', {}))
    families[family] = run
    merged = {**old.get('results', {}), **results}
    return {'criteria': {'score_tol': SCORE_TOL, 'box_tol_px': BOX_TOL_PX, 'mask_iou': MASK_IOU_MIN,
                         'mask_share': MASK_SHARE_MIN},
            'passed': all(r['passed'] for rows in merged.values() for r in rows.values()),
            'families': families, 'results': merged}


if __name__ == '__main__':
    sys.exit(main())
