"""Parity with torch fp32 of every precision and exported runtime, on random official-format
checkpoints of the six YOLACT presets (and the shipped model), CPU.

Usage:  python bench/parity.py [--presets ...] [--scenes 3] [--out bench/results/parity.json]

For each preset a random checkpoint (``init_weights_``; YOLACT++'s deformable offsets random too, so
the sampling really moves; prototype and coefficient biases positive so masks are object sized) is
saved in the official layout under the official file name and loaded by
``Predictor.from_checkpoint`` once per configuration -- the exported backends export it into a
temporary cache, as the node does. On ``--scenes`` synthetic 640x480 scenes:

* ``raw``: max |difference| to torch fp32 of loc, conf (logits), coeffs, proto, over all anchors,
  and the same relative to max |torch fp32| of that output.
* ``same_instances``: the detections torch fp32 keeps (thresholds 0, top 100) identified by their
  anchor; for each, the configuration's own mask of that anchor (its boxes, coefficients and
  prototypes through the shared post-processing, ``detections_to_instances``) against torch fp32's.
  Reported: count, IoU min / p1 / p5 / median, fractions with IoU > 0.99 and > 0.95. This is the
  mask precision of the network, free of re-ranking.
* ``kept``: fraction of torch fp32's detections that the configuration's own full pipeline keeps too
  (same class, box IoU >= 0.5). Random weights score every class near 1/81, so differences far below
  the raw bounds re-order nearly tied candidates: this says how tied the scores are, not how good
  the masks are.

Configurations on the CPU: torch/bf16 (channels-last), onnxruntime/fp32, openvino/fp32,
openvino/bf16 (OpenVINO refuses YOLACT++); with ``--device cuda`` (bench/gpu_check.sh): torch/fp16,
torch/bf16 and onnxruntime/fp32 (its CUDA / TensorRT providers when installed) against torch fp32
on the GPU, and the CPU's torch fp32 against the GPU's. Two yardsticks say how far torch fp32 itself
moves under changes that are not errors: the same weights in channels-last fp32 (the fp32 rounding
floor of a different summation order) and the same network on the image with every pixel changed
by +-1 grey level (camera noise: the model's own sensitivity). The maskiou rescoring of ++ changes
scores only, so the masks are compared without it. JSON via bench/harness.py (machine, load average
before/after, command).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'instseg_ros'))
import harness  # noqa: E402
from instseg_ros.core.checkpoint import load_model, save_checkpoint  # noqa: E402
from instseg_ros.core.config import get_preset  # noqa: E402
from instseg_ros.core.export import has_dcn  # noqa: E402
from instseg_ros.core.models.yolact.dcn import DCNv2  # noqa: E402
from instseg_ros.core.models.yolact.yolact import Yolact, init_weights_  # noqa: E402
from instseg_ros.core.ops.boxes import box_iou, decode  # noqa: E402
from instseg_ros.core.ops.nms import NmsResult  # noqa: E402
from instseg_ros.core.postprocess import (  # noqa: E402
    InferenceParams, detect, detections_to_instances, postprocess_rois)
from instseg_ros.core.predictor import Predictor  # noqa: E402
from instseg_ros.ros.model_loading import SHIPPED_WEIGHTS  # noqa: E402  (no rclpy import)
from instseg_ros.synth.scene import Camera, render_scene  # noqa: E402

FILE_NAMES = {'yolact_resnet50': 'yolact_resnet50_54_800000.pth',
              'yolact_base': 'yolact_base_54_800000.pth',
              'yolact_darknet53': 'yolact_darknet53_54_800000.pth',
              'yolact_im700': 'yolact_im700_54_800000.pth',
              'yolact_plus_resnet50': 'yolact_plus_resnet50_54_800000.pth',
              'yolact_plus_base': 'yolact_plus_base_54_800000.pth'}
SHIPPED = 'shipped'
REFERENCE = ('torch', 'fp32')
CONFIGS = {'cpu': ('torch/bf16', 'onnxruntime/fp32', 'openvino/fp32', 'openvino/bf16'),
           'cuda': ('torch/fp16', 'torch/bf16', 'onnxruntime/fp32')}
# yardsticks: how much torch fp32 itself moves under changes that are not errors
LAYOUT = 'torch/fp32 channels-last'  # same precision, other memory layout: the fp32 rounding floor
NOISE = 'torch/fp32 input +-1 level'  # every pixel +-1 grey level (camera noise): the model's own sensitivity
ON_CPU = 'torch/fp32 on the CPU'  # (cuda runs) the CPU result against the GPU's
RAW = ('loc', 'conf', 'coeffs', 'proto')
CAP = InferenceParams(score_threshold=0.0, conf_threshold=0.0, max_detections=100)


def random_checkpoint(preset: str, directory: Path, seed: int) -> Path:
    """A random ``preset`` checkpoint in the official layout, saved under its official file name."""
    generator = torch.Generator().manual_seed(seed)
    model = init_weights_(Yolact(get_preset(preset)), generator).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DCNv2):  # offsets of about +-1 px, modulation around 0.5
                module.conv_offset_mask.weight.normal_(0.0, 0.3 / module.conv_offset_mask.weight[0].numel() ** 0.5,
                                                       generator=generator)
        last = [m for m in model.proto_net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias.fill_(1.0)
        model.prediction_layers[0].mask_layer.bias.fill_(1.0)
    path = directory / FILE_NAMES[preset]
    save_checkpoint(model, path)
    return path


def anchors_of(output, params: InferenceParams):
    """Anchor indices (int64 [N]), labels and scores of the detections of image 0 of ``output``."""
    loc, conf = output.loc[0].float(), output.conf[0].float()
    index = torch.arange(loc.shape[0], dtype=torch.float32)[:, None]  # exact up to 2**24 anchors
    dets = detect(loc, conf, index, output.priors.float(), params)
    return dets.coeffs[:, 0].long(), dets.labels, dets.scores


def masks_for(output, anchors, labels, scores, image_size) -> torch.Tensor:
    """bool [N, H, W] masks of the given anchors from ``output``'s own boxes, coefficients, prototypes."""
    priors = output.priors.float()[anchors]
    dets = NmsResult(boxes_xyxy=decode(output.loc[0].float()[anchors], priors),
                     coeffs=output.coeffs[0].float()[anchors], labels=labels, scores=scores)
    return detections_to_instances(dets, output.proto[0].float(), image_size, score_threshold=-1.0).masks


def mask_ious(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).numpy()


def kept(reference, other) -> tuple[int, int]:
    """(reference detections found in ``other`` by class and box IoU >= 0.5, greedy in reference
    order, each ``other`` detection used once; reference count)."""
    overlaps = box_iou(torch.from_numpy(reference.boxes_xyxy).double(),
                       torch.from_numpy(other.boxes_xyxy).double()).numpy()
    overlaps[reference.labels[:, None] != other.labels[None, :]] = -1.0
    found = 0
    for row in overlaps:
        j = int(np.argmax(row)) if row.size else -1
        if j >= 0 and row[j] >= 0.5:
            overlaps[:, j] = -1.0  # used
            found += 1
    return found, len(reference.scores)


def summary(ious: list[float]) -> dict:
    values = np.asarray(ious, dtype=np.float64)
    if values.size == 0:
        return {'instances': 0}
    return {'instances': int(values.size), 'iou_min': round(float(values.min()), 4),
            'iou_p1': round(float(np.percentile(values, 1)), 4),
            'iou_p5': round(float(np.percentile(values, 5)), 4),
            'iou_median': round(float(np.median(values)), 4),
            'fraction_iou_above_0.99': round(float((values > 0.99).mean()), 4),
            'fraction_iou_above_0.95': round(float((values > 0.95).mean()), 4)}


def _predictor(name: str, weights: Path, device: str) -> Predictor:
    if name == LAYOUT:
        model, cfg = load_model(weights, preset='auto', device=torch.device(device))
        return Predictor(model, cfg, device=device, precision='fp32', channels_last=True)
    if name == ON_CPU:
        return Predictor.from_checkpoint(str(weights), device='cpu', precision='fp32')
    backend, precision = name.split('/')
    return Predictor.from_checkpoint(str(weights), device=device, precision=precision, backend=backend)


def _plus_one_level(image: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-1, 2, image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


class _Run(NamedTuple):
    """One forward of one image: float32 CPU raw outputs, the image size and the full pipeline's
    detections (``postprocess_rois`` of the same outputs)."""
    output: object
    size: tuple[int, int]
    rois: object


def _run(predictor: Predictor, image: np.ndarray, params: InferenceParams) -> _Run:
    output, sizes, _ = predictor._forward([image], 'bgr')
    rois = postprocess_rois(output, predictor.cfg, sizes[0], params, rescore_fn=predictor._rescore)
    return _Run(_to_cpu(output), sizes[0], rois)


def compare_preset(weights: Path, images: list[np.ndarray], params: InferenceParams,
                   device: str = 'cpu') -> dict:
    """Every configuration (and the yardsticks) against torch fp32 on ``device`` for ``weights``."""
    reference = Predictor.from_checkpoint(str(weights), device=device, precision='fp32')
    plus = has_dcn(reference.cfg)
    names = [*harness.configs_for(device, CONFIGS), LAYOUT, NOISE] + ([ON_CPU] if device != 'cpu' else [])
    with torch.inference_mode():  # the reference once per image, shared by every configuration
        refs = [_run(reference, image, params) for image in images]
        picked = [anchors_of(ref.output, params) for ref in refs]
        ref_masks = [masks_for(ref.output, *pick, ref.size) for ref, pick in zip(refs, picked)]
    entries = {}
    for name in names:
        if name.startswith('openvino') and plus:
            entries[name] = {'skipped': 'OpenVINO cannot convert ONNX DeformConv (YOLACT++)'}
            continue
        other = reference if name == NOISE else _predictor(name, weights, device)
        raw_abs = dict.fromkeys(RAW, 0.0)
        raw_rel = dict.fromkeys(RAW, 0.0)
        ious, found, total = [], 0, 0
        with torch.inference_mode():
            for index, image in enumerate(images):
                ref = refs[index]
                run = _run(other, _plus_one_level(image, index) if name == NOISE else image, params)
                for key in RAW:
                    a, b = getattr(ref.output, key), getattr(run.output, key)
                    diff = (a - b).abs().max().item()
                    raw_abs[key] = max(raw_abs[key], diff)
                    raw_rel[key] = max(raw_rel[key], diff / max(a.abs().max().item(), 1e-12))
                ious += list(mask_ious(ref_masks[index], masks_for(run.output, *picked[index], ref.size)))
                got, count = kept(ref.rois, run.rois)
                found += got
                total += count
        entries[name] = {
            'precision_run': other.precision, 'backend_run': other.backend,
            'raw_max_abs_diff': {k: float(f'{v:.3g}') for k, v in raw_abs.items()},
            'raw_max_abs_diff_all': float(f'{max(raw_abs.values()):.3g}'),
            'raw_max_rel_diff': {k: float(f'{v:.3g}') for k, v in raw_rel.items()},
            'same_instances': summary(ious),
            'kept': {'found': found, 'of': total, 'fraction': round(found / total, 4) if total else None}}
        print(f'  {name}: raw {entries[name]["raw_max_abs_diff_all"]:.3g}, same instances '
              f'{entries[name]["same_instances"]}, kept {found}/{total}', flush=True)
    return {'preset': reference.cfg.name, 'dcn': plus, 'configs': entries}


def _to_cpu(output):
    """A ``YolactOutput`` with float32 CPU tensors (the post-processing of this bench runs there)."""
    return output._replace(**{k: getattr(output, k).float().cpu() for k in (*RAW, 'priors')})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--presets', nargs='+', default=[*FILE_NAMES, SHIPPED],
                        help=f'presets ({", ".join(FILE_NAMES)}) and/or {SHIPPED!r} (the shipped model)')
    parser.add_argument('--scenes', type=int, default=3)
    parser.add_argument('--seed', type=int, default=100)
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (reference: torch fp32 there)")
    parser.add_argument('--out', type=Path, default=Path('bench/results/parity.json'))
    args = parser.parse_args(argv)
    session = harness.Session(argv)
    images = [render_scene(7000 + i, Camera(640, 480)).image_bgr for i in range(args.scenes)]
    results = {}

    def write() -> dict:  # after every preset: a run cut short keeps what it measured
        report = session.report(scenes=args.scenes, device=args.device, image_size=[480, 640],
                                reference=f'torch/fp32 on {args.device}',
                                params={'random': CAP.__dict__, SHIPPED: InferenceParams().__dict__},
                                presets=results)
        session.write(report, args.out)
        return report

    with tempfile.TemporaryDirectory() as tmp:
        os.environ['INSTSEG_CACHE_DIR'] = str(Path(tmp) / 'cache')  # exports of this run only
        for index, preset in enumerate(args.presets):
            print(preset, flush=True)
            if preset == SHIPPED:  # trained: the detections have real scores, default thresholds
                results[preset] = compare_preset(SHIPPED_WEIGHTS, images, InferenceParams(), args.device)
            else:
                weights = random_checkpoint(preset, Path(tmp), seed=args.seed + index)
                results[preset] = compare_preset(weights, images, CAP, args.device)
            report = write()
    return report


if __name__ == '__main__':
    main()
