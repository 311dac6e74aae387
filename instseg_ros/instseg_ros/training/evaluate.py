"""COCO box / mask evaluation (pycocotools) and the ``instseg-eval`` CLI.

The pure functions (:func:`instances_to_coco_results`, :func:`evaluate_coco`, :func:`format_table`)
do not need a model; only :func:`main` imports the predictor.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from instseg_ros.cli_help import DefaultsHelpFormatter

METRIC_NAMES: tuple[str, ...] = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')
_IOU_TYPES: dict[str, str] = {'box': 'bbox', 'mask': 'segm'}


def _to_numpy(x) -> np.ndarray:
    """torch tensor (any device) or array-like -> numpy array."""
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def instances_to_coco_results(image_id: int, boxes_xyxy, scores, labels, masks,
                              label_to_cat_id: Mapping[int, int] | Callable[[int], int] | None
                              = None) -> list[dict]:
    """Detections of one image -> COCO result dicts.

    Args:
        image_id: COCO image id.
        boxes_xyxy: float [N, 4] pixel boxes (x1, y1, x2, y2); numpy or torch.
        scores: float [N] confidences.
        labels: int [N] 0-based class indices.
        masks: bool [N, H, W] full-resolution masks, or None for box-only results.
        label_to_cat_id: mapping or callable label -> COCO category id; default ``label + 1``.
            A label missing from a mapping is a class the dataset does not have: its detections
            are left out (not scored).

    Returns:
        One dict per detection: image_id, category_id, score, bbox ``[x, y, w, h]`` (floats),
        and, with masks, segmentation = compressed RLE with ``counts`` as str.
    """
    boxes = _to_numpy(boxes_xyxy).astype(np.float64).reshape(-1, 4)
    scores_np = _to_numpy(scores).astype(np.float64).reshape(-1)
    labels_np = _to_numpy(labels).astype(np.int64).reshape(-1)
    if label_to_cat_id is None:
        def cat_of(label: int) -> int:
            return label + 1
    elif callable(label_to_cat_id):
        cat_of = label_to_cat_id
    else:
        def cat_of(label: int) -> int:
            return int(label_to_cat_id[label])
    rles = []
    if masks is not None:
        masks_np = _to_numpy(masks).astype(np.uint8)
        if masks_np.shape[0]:
            rles = mask_utils.encode(np.asfortranarray(masks_np.transpose(1, 2, 0)))
    results = []
    for i in range(scores_np.shape[0]):
        if isinstance(label_to_cat_id, Mapping) and int(labels_np[i]) not in label_to_cat_id:
            continue
        x1, y1, x2, y2 = boxes[i]
        res = {'image_id': int(image_id), 'category_id': int(cat_of(int(labels_np[i]))),
               'score': float(scores_np[i]),
               'bbox': [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
        if masks is not None:
            rle = rles[i]
            res['segmentation'] = {'size': [int(v) for v in rle['size']],
                                   'counts': rle['counts'].decode('ascii')}
        results.append(res)
    return results


def _load_gt(gt: str | Path | COCO) -> COCO:
    """Load a COCO ground-truth file quietly (or pass a COCO object through)."""
    if isinstance(gt, COCO):
        return gt
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(gt))


def _per_class_ap(evaluator: COCOeval, coco_gt: COCO) -> dict[str, dict[str, float]]:
    """Per-category AP and AP50 (area 'all', maxDets 100) from an accumulated COCOeval."""
    precision = evaluator.eval['precision']  # [T, R, K, A, M]
    out = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        name = coco_gt.cats[cat_id]['name']
        p_all = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        out[name] = {'AP': float(p_all[p_all > -1].mean()) if (p_all > -1).any() else -1.0,
                     'AP50': float(p50[p50 > -1].mean()) if (p50 > -1).any() else -1.0}
    return out


def evaluate_coco(gt_json_path: str | Path | COCO, predictions: Sequence[dict], *,
                  image_ids: Sequence[int] | None = None,
                  per_class: bool = False) -> dict:
    """COCO box and mask metrics of ``predictions`` against a ground-truth file.

    Args:
        gt_json_path: COCO instances JSON (or a loaded ``COCO``).
        predictions: COCO result dicts (image_id, category_id, score, bbox xywh, segmentation RLE).
            Mask metrics are computed only if the predictions carry ``segmentation``.
        image_ids: evaluate only these images (default: all images of the ground truth).
        per_class: also return per-category AP / AP50 under ``'per_class'``.

    Returns:
        ``{'box': {AP, AP50, AP75, APs, APm, APl}, 'mask': {...}}`` with values in [0, 1]
        (-1 where COCO leaves a metric undefined, e.g. no ground truth of that size);
        ``'per_class': {'box': {name: {AP, AP50}}, 'mask': ...}`` when requested. With no
        predictions at all every defined metric is 0.
    """
    coco_gt = _load_gt(gt_json_path)
    ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(int(i) for i in image_ids)
    has_masks = bool(predictions) and all('segmentation' in p for p in predictions)
    metrics: dict = {}
    per_class_out: dict = {}
    for key, iou_type in _IOU_TYPES.items():
        if key == 'mask' and predictions and not has_masks:
            continue
        if not predictions:
            metrics[key] = {name: 0.0 for name in METRIC_NAMES}
            continue
        dets = copy.deepcopy(list(predictions))
        if iou_type == 'segm':
            for d in dets:  # area of a mask result must be the mask area, not the box area
                d.pop('bbox', None)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(dets)
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.params.imgIds = ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics[key] = {name: float(v) for name, v in zip(METRIC_NAMES, evaluator.stats[:6])}
        if per_class:
            per_class_out[key] = _per_class_ap(evaluator, coco_gt)
    if per_class:
        metrics['per_class'] = per_class_out
    return metrics


def format_table(metrics: Mapping) -> str:
    """Markdown table of ``evaluate_coco`` output, values in percent (1 decimal, '-' if undefined).

    Per-class rows are appended when ``metrics`` has ``'per_class'``.
    """
    def fmt(v: float) -> str:
        return '-' if v is None or v < 0 else f'{100.0 * v:.1f}'

    lines = ['| type | ' + ' | '.join(METRIC_NAMES) + ' |',
             '|---|' + '---:|' * len(METRIC_NAMES)]
    for key in ('box', 'mask'):
        if key in metrics:
            lines.append(f'| {key} | ' + ' | '.join(fmt(metrics[key].get(n, -1.0))
                                                     for n in METRIC_NAMES) + ' |')
    per_class = metrics.get('per_class')
    if per_class:
        lines += ['', '| class | ' + ' | '.join(f'{k} AP | {k} AP50' for k in per_class) + ' |',
                  '|---|' + '---:|---:|' * len(per_class)]
        names = list(next(iter(per_class.values())).keys())
        for name in names:
            cells = []
            for key in per_class:
                cells += [fmt(per_class[key][name]['AP']), fmt(per_class[key][name]['AP50'])]
            lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def resolve_dataset(data: str | Path) -> tuple[Path, Path]:
    """``DIR`` (containing instances.json) or a JSON path -> (json path, image root directory).

    Image ``file_name`` entries are resolved relative to the image root (the JSON's directory).
    """
    path = Path(data)
    json_path = path / 'instances.json' if path.is_dir() else path
    if not json_path.is_file():
        raise FileNotFoundError(f'no COCO annotation file at {json_path}')
    return json_path, json_path.parent


def label_to_category_map(coco_gt: COCO, class_names: Sequence[str] | None = None) -> dict:
    """0-based model label -> COCO category id.

    By name when every model class name is a category name; by name for the categories only when
    the model has more classes and every category name is one of them (e.g. a COCO-80 model on a
    dataset of a few COCO classes: the other labels are absent, their detections not scored);
    else by position in the sorted category ids (label 0 -> smallest id) when the model has no
    more classes than the dataset has categories.

    Raises:
        ValueError: more model classes than categories and the names do not say which is which.
    """
    cats = sorted(coco_gt.loadCats(coco_gt.getCatIds()), key=lambda c: c['id'])
    by_name = {c['name']: c['id'] for c in cats}
    if class_names and all(n in by_name for n in class_names):
        return {i: by_name[n] for i, n in enumerate(class_names)}
    if class_names and len(class_names) > len(cats):
        if all(c['name'] in class_names for c in cats):
            return {i: by_name[n] for i, n in enumerate(class_names) if n in by_name}
        missing = [c['name'] for c in cats if c['name'] not in class_names]
        raise ValueError(f'the model has {len(class_names)} classes and the dataset '
                         f'{len(cats)} categories, and the category name(s) {_short(missing)} are '
                         'not model class names: evaluate on a dataset whose category names are '
                         "the model's class names (or a subset)")
    return {i: c['id'] for i, c in enumerate(cats)}


def _short(names: Sequence[str], shown: int = 5) -> str:
    """``names`` as a list, cut to the first ``shown`` and the count when longer."""
    names = list(names)
    return f'{names}' if len(names) <= shown else f'{names[:shown]}'[:-1] + f', ...] ({len(names)})'


def predict_dataset(predict: Callable[[np.ndarray], object], json_path: str | Path | COCO,
                    image_root: str | Path | None = None, *,
                    label_to_cat_id: Mapping[int, int] | None = None,
                    limit: int | None = None) -> tuple[list[dict], list[int], float]:
    """Run ``predict`` over the images of a COCO file.

    Args:
        predict: BGR uint8 [H, W, 3] image -> Instances-like object with ``boxes_xyxy``, ``scores``,
            ``labels`` (0-based) and ``masks`` (bool [N, H, W]).
        json_path: COCO ground truth (path, or a loaded ``COCO`` together with ``image_root``).
        image_root: directory the ``file_name`` entries are relative to (default: JSON's dir).
        label_to_cat_id: label -> category id (default: :func:`label_to_category_map`).
        limit: only the first ``limit`` images (sorted by id).

    Returns:
        (COCO result dicts, evaluated image ids, mean seconds per ``predict`` call).
    """
    import cv2  # local: keeps the pure evaluation functions free of OpenCV

    coco_gt = _load_gt(json_path)
    if image_root is None and isinstance(json_path, COCO):
        raise ValueError('image_root is required when json_path is a loaded COCO object')
    root = Path(image_root) if image_root is not None else Path(json_path).parent
    mapping = label_to_cat_id or label_to_category_map(coco_gt)
    ids = sorted(coco_gt.getImgIds())[:limit]
    results, elapsed = [], 0.0
    for image_id in ids:
        info = coco_gt.imgs[image_id]
        image = cv2.imread(str(root / info['file_name']), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(root / info['file_name'])
        start = time.perf_counter()
        inst = predict(image)
        elapsed += time.perf_counter() - start
        results += instances_to_coco_results(image_id, inst.boxes_xyxy, inst.scores, inst.labels,
                                             inst.masks, mapping)
    return results, ids, elapsed / max(len(ids), 1)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``instseg-eval --data DIR_OR_JSON --weights FILE [--preset auto] [--device cpu]
    [--precision fp32] [--backend torch] [--score-threshold 0.05] [--out metrics.json] [--limit N]``."""
    parser = argparse.ArgumentParser(
        formatter_class=DefaultsHelpFormatter, prog='instseg-eval',
                                     description='COCO box/mask AP of a checkpoint on a dataset')
    parser.add_argument('--data', required=True, help='dataset dir (with instances.json) or JSON')
    parser.add_argument('--weights', required=True, help='model checkpoint: YOLACT, torchvision '
                        'Mask R-CNN (e.g. maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth) or '
                        'mmdetection RTMDet-Ins / SOLOv2 / CondInst (e.g. '
                        'rtmdet-ins_tiny_8xb32-300e_coco_20221130_151727-ec670f7e.pth)')
    parser.add_argument('--preset', default='auto',
                        help='yolact_* | maskrcnn_resnet50_fpn[_v2] | rtmdet_ins_{tiny,s,m} | '
                             'solov2_[light_]r50 | condinst_r50 | auto (from the file name)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16'),
                        help='network precision (torch backend)')
    parser.add_argument('--backend', default='torch', choices=('torch', 'onnxruntime', 'openvino'),
                        help='network backend (onnxruntime/openvino run the ONNX export, CPU)')
    parser.add_argument('--score-threshold', type=float, default=0.05)
    parser.add_argument('--limit', type=int, default=None, help='evaluate the first N images')
    parser.add_argument('--out', default=None, help='write metrics JSON here')
    args = parser.parse_args(argv)

    from instseg_ros.core.segmenter import (FAMILY_TITLES, InferenceParams, load_segmenter,
                                            model_family)

    try:
        json_path, root = resolve_dataset(args.data)
        coco_gt = _load_gt(json_path)
    except (OSError, ValueError) as exc:  # missing file, not JSON
        print(f'instseg-eval: {_one_line(exc)}', file=sys.stderr)
        return 2
    from instseg_ros.core.checkpoint import CheckpointError
    try:
        family = model_family(args.preset, args.weights)
        options = ({} if family == 'maskrcnn' else
                   {'precision': args.precision, 'backend': args.backend})
        with warnings.catch_warnings(record=True) as caught:  # each as one line below
            warnings.simplefilter('always')
            predictor = load_segmenter(args.weights, preset=args.preset, device=args.device,
                                       **options)
        mapping = label_to_category_map(coco_gt, getattr(predictor, 'class_names', None))
    except (CheckpointError, ValueError, ImportError) as exc:
        print(f'instseg-eval: {_one_line(exc)}', file=sys.stderr)
        return 2
    for warning in caught:
        print(f'instseg-eval: {_one_line(warning.message)}', file=sys.stderr)
    used = getattr(predictor, 'precision', 'fp32')
    if used != args.precision and not caught:
        print(f'instseg-eval: precision {args.precision} is not used by {FAMILY_TITLES[family]} '
              f'on {args.device}; running {used}', file=sys.stderr)
    params = InferenceParams(score_threshold=args.score_threshold)

    unscored = [0]  # detections of model classes the dataset does not have

    def predict(image_bgr: np.ndarray):
        inst = predictor(image_bgr, color_order='bgr', params=params)
        unscored[0] += sum(int(label) not in mapping for label in _to_numpy(inst.labels).reshape(-1))
        return inst

    results, ids, sec = predict_dataset(predict, coco_gt, root,
                                        label_to_cat_id=mapping, limit=args.limit)
    metrics = evaluate_coco(coco_gt, results, image_ids=ids, per_class=True)
    metrics.update({'num_images': len(ids), 'num_predictions': len(results),
                    'mean_inference_ms': 1000.0 * sec, 'weights': str(args.weights),
                    'data': str(json_path), 'score_threshold': args.score_threshold,
                    'precision': predictor.precision, 'backend': predictor.backend,
                    'preset': predictor.name, 'family': family,
                    'num_unscored_predictions': unscored[0]})
    print(format_table(metrics))
    print(f'\n{len(ids)} images, {len(results)} predictions, '
          f'{1000.0 * sec:.1f} ms/image on {args.device}'
          + (f'; {unscored[0]} detections of classes the dataset does not have left out'
             if unscored[0] else ''), file=sys.stderr)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(metrics, f, indent=2)
    return 0


def _one_line(exc: BaseException) -> str:
    return ' '.join(str(exc).split()) or type(exc).__name__


if __name__ == '__main__':
    raise SystemExit(main())
