"""Mask R-CNN (torchvision) as a segmenter: the two-stage alternative to YOLACT.

Models are built with torchvision's own classes and never download anything (weights=None,
weights_backbone=None); the user's file (e.g. torchvision's ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``
or ``maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth``) is read with ``torch.load(weights_only=True)`` and
loaded with strict keys. Results use the same ``RoiDetections`` / ``Instances`` as the YOLACT path:
boxes in source pixels, 0-based labels without background, masks as tight ROIs (``> 0.5``).

COCO: torchvision's heads have 91 outputs (background + the 90 original COCO category ids, ten of
them unused "N/A"); labels are mapped onto the 80 names of ``classes.COCO_CLASSES`` (the same
0-based labels as YOLACT's COCO models) and the unused outputs never produce a detection.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from instseg_ros.core.checkpoint import (CheckpointError, PresetMismatchWarning, _mismatch_text,
                                         _mismatches, _shorten, read_weights_file)
from instseg_ros.core.classes import COCO_CATEGORY_IDS, COCO_CLASSES
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.roi_segmenter import RoiSegmenterMixin

__all__ = ['MASKRCNN_PRESETS', 'MaskRcnnConfig', 'MaskRcnnSegmenter', 'build_model', 'build_segmenter',
           'load_model', 'paste_mask_rois', 'preset_from_file_name', 'preset_from_shapes']

MASKRCNN_PRESETS = ('maskrcnn_resnet50_fpn', 'maskrcnn_resnet50_fpn_v2')
#: torchvision's COCO head size: background + category ids 1..90
TORCHVISION_COCO_CLASSES = 91
_V2_NAME_RE = re.compile(r'^maskrcnn_resnet50_fpn_v2(?:[_\-.].*)?$')
_V1_NAME_RE = re.compile(r'^maskrcnn_resnet50_fpn(?:[_\-.].*)?$')
MASK_THRESHOLD = 0.5
StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class MaskRcnnConfig:
    """One Mask R-CNN variant.

    Attributes:
        name: preset, one of MASKRCNN_PRESETS.
        num_classes: head outputs INCLUDING background (torchvision layout; 91 for COCO).
        min_size, max_size: torchvision's resize (shorter side to min_size unless the longer side
            would exceed max_size); 800 / 1333 as torchvision's COCO models.
    """

    name: str
    num_classes: int = TORCHVISION_COCO_CLASSES
    min_size: int = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        if self.name not in MASKRCNN_PRESETS:
            raise ValueError(f'unknown Mask R-CNN preset {self.name!r}; known: {list(MASKRCNN_PRESETS)}')
        if self.num_classes < 2:
            raise ValueError(f'num_classes includes background and must be >= 2, got {self.num_classes}')


def build_model(cfg: MaskRcnnConfig) -> nn.Module:
    """torchvision MaskRCNN for ``cfg`` with random weights (no download).

    ``maskrcnn_resnet50_fpn`` gets the layout of torchvision's official file: FrozenBatchNorm2d in
    the backbone with eps = 0, as torchvision's builder sets when it loads those weights.
    """
    from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    kwargs = {'num_classes': cfg.num_classes, 'min_size': cfg.min_size, 'max_size': cfg.max_size}
    if cfg.name == 'maskrcnn_resnet50_fpn_v2':
        return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **kwargs)
    backbone = resnet_fpn_backbone(backbone_name='resnet50', weights=None,
                                   norm_layer=FrozenBatchNorm2d, trainable_layers=3)
    model = MaskRCNN(backbone, **kwargs)
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = 0.0
    return model


def expected_shapes(cfg: MaskRcnnConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``build_model(cfg)``'s state dict (built on the meta device)."""
    with torch.device('meta'):
        model = build_model(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def preset_from_file_name(path: str | os.PathLike) -> str | None:
    """Preset named by the file (``maskrcnn_resnet50_fpn[_v2]...``), None otherwise."""
    stem = Path(path).name
    if _V2_NAME_RE.match(stem):
        return 'maskrcnn_resnet50_fpn_v2'
    if _V1_NAME_RE.match(stem):
        return 'maskrcnn_resnet50_fpn'
    return None


def preset_from_shapes(state_dict: StateDict) -> str | None:
    """Preset from the box head's layout: two FC layers (v1) or four convs + FC (v2)."""
    if 'roi_heads.box_head.fc6.weight' in state_dict:
        return 'maskrcnn_resnet50_fpn'
    if 'roi_heads.box_head.0.0.weight' in state_dict:
        return 'maskrcnn_resnet50_fpn_v2'
    return None


def is_maskrcnn_state_dict(state_dict: StateDict) -> bool:
    """True for torchvision's Mask R-CNN key layout."""
    return 'roi_heads.mask_predictor.mask_fcn_logits.weight' in state_dict


def num_classes_from(state_dict: StateDict) -> int | None:
    """Head outputs incl. background, from ``roi_heads.box_predictor.cls_score``."""
    weight = state_dict.get('roi_heads.box_predictor.cls_score.weight')
    return None if weight is None else int(weight.shape[0])


def load_state_dict_file(path: str | os.PathLike) -> StateDict:
    """Flat state dict of a torchvision checkpoint (flat, or ``{'model': sd}`` as torchvision's
    training references write), read on the CPU with weights_only. Raises CheckpointError."""
    path = str(path)
    obj = read_weights_file(path)
    if isinstance(obj, dict) and isinstance(obj.get('model'), dict):
        obj = obj['model']
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f'{path}: not a Mask R-CNN checkpoint (expected a state dict of tensors)')
    state_dict = dict(obj)
    if all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    return state_dict


def _check(path: str, state_dict: StateDict, cfg: MaskRcnnConfig) -> None:
    problems = _mismatches(state_dict, expected_shapes(cfg))
    if any(problems):
        guess = preset_from_shapes(state_dict)
        hint = (f'pass preset:={guess}' if guess and guess != cfg.name else
                'pass the matching preset or use a torchvision Mask R-CNN file of this architecture')
        raise CheckpointError(f'{path}: checkpoint does not match preset {cfg.name!r} '
                              f'(num_classes={cfg.num_classes}): {_mismatch_text(*problems)}. To fix: {hint}.')


def resolve_config(path: str | os.PathLike, state_dict: StateDict, preset: str = 'auto',
                   min_size: int = 800, max_size: int = 1333) -> MaskRcnnConfig:
    """Config for the file: the given preset, or (auto) the file name's if the tensors fit it, else the
    tensors' (PresetMismatchWarning when they contradict the name). Raises CheckpointError."""
    path = str(path)
    if preset != 'auto' and preset not in MASKRCNN_PRESETS:
        raise CheckpointError(f'{path}: unknown preset {preset!r}; use one of {list(MASKRCNN_PRESETS)} or auto')
    if not is_maskrcnn_state_dict(state_dict):
        raise CheckpointError(f'{path}: not a torchvision Mask R-CNN checkpoint (no '
                              'roi_heads.mask_predictor.mask_fcn_logits.weight); for YOLACT files '
                              'pass a yolact_* preset or auto')
    num_classes = num_classes_from(state_dict) or TORCHVISION_COCO_CLASSES
    make = lambda name: MaskRcnnConfig(name, num_classes, int(min_size), int(max_size))  # noqa: E731
    if preset != 'auto':
        cfg = make(preset)
        _check(path, state_dict, cfg)
        return cfg
    from_name, from_shapes = preset_from_file_name(path), preset_from_shapes(state_dict)
    name = from_name or from_shapes
    if name is None:
        raise CheckpointError(f'{path}: cannot infer the Mask R-CNN preset; pass preset:=<one of '
                              f'{list(MASKRCNN_PRESETS)}>')
    if from_name and from_shapes and from_name != from_shapes and not any(
            _mismatches(state_dict, expected_shapes(make(from_shapes)))):
        warnings.warn(f'{Path(path).name}: the file name says preset {from_name!r} but the tensors '
                      f'fit {from_shapes!r}; loading it as {from_shapes!r} (pass preset:={from_shapes} '
                      'to confirm)', PresetMismatchWarning, stacklevel=2)
        name = from_shapes
    cfg = make(name)
    _check(path, state_dict, cfg)
    return cfg


def load_model(path: str | os.PathLike, preset: str = 'auto', min_size: int = 800,
               max_size: int = 1333) -> tuple[nn.Module, MaskRcnnConfig]:
    """(torchvision MaskRCNN in eval mode on the CPU, its config), loaded strictly from ``path``."""
    state_dict = load_state_dict_file(path)
    cfg = resolve_config(path, state_dict, preset, min_size, max_size)
    with torch.device('meta'):
        model = build_model(cfg)
    model.to_empty(device='cpu')  # every entry is overwritten below
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f'{path}: loading into preset {cfg.name!r} failed: {_shorten(exc)}') from exc
    return model.eval(), cfg


def paste_mask_rois(mask_probs: torch.Tensor, boxes_xyxy: torch.Tensor, image_size: tuple[int, int],
                    threshold: float = MASK_THRESHOLD) -> list:
    """Tight ROIs of Mask R-CNN masks in the source image, without full-frame masks.

    Per box the same pixels as torchvision's ``paste_masks_in_image`` followed by ``> threshold``:
    the mask padded by one cell, its box enlarged by the same factor and truncated to integers,
    bilinear resize to that box, clipped to the image.

    Args:
        mask_probs: float ``[N, M, M]`` mask probabilities of the detections.
        boxes_xyxy: float ``[N, 4]`` boxes in source pixels.
        image_size: source (height, width).

    Returns:
        N entries ``(x0, y0, crop)`` (crop: C-contiguous bool numpy ``[h, w]``) or None (empty mask).
    """
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

    if mask_probs.shape[0] == 0:
        return []
    height, width = int(image_size[0]), int(image_size[1])
    padded, scale = expand_masks(mask_probs[:, None].to(torch.float32), padding=1)
    boxes = expand_boxes(boxes_xyxy.to(torch.float32), scale).to(torch.int64).tolist()
    rois = []
    for mask, (bx0, by0, bx1, by1) in zip(padded, boxes):
        x0, y0, x1, y1 = max(bx0, 0), max(by0, 0), min(bx1 + 1, width), min(by1 + 1, height)
        if x1 <= x0 or y1 <= y0:
            rois.append(None)
            continue
        size = (max(by1 - by0 + 1, 1), max(bx1 - bx0 + 1, 1))
        resized = F.interpolate(mask[None], size=size, mode='bilinear', align_corners=False)[0, 0]
        on = (resized[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] > threshold).cpu().numpy()
        rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
        if rows.size == 0:
            rois.append(None)
            continue
        crop = np.ascontiguousarray(on[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
        rois.append((x0 + int(cols[0]), y0 + int(rows[0]), crop))
    return rois


def _label_map(num_classes: int, class_names) -> tuple[torch.Tensor, tuple[str, ...]]:
    """(int64 [num_classes] head output -> 0-based label or -1, names by label).

    A 91-output head with no names (or 80) is torchvision's COCO layout: output = COCO category id.
    """
    if num_classes == TORCHVISION_COCO_CLASSES and (class_names is None
                                                    or len(class_names) == len(COCO_CLASSES)):
        table = torch.full((num_classes,), -1, dtype=torch.int64)
        table[list(COCO_CATEGORY_IDS)] = torch.arange(len(COCO_CATEGORY_IDS))
        names = COCO_CLASSES if class_names is None else tuple(str(n) for n in class_names)
        return table, tuple(names)
    names = tuple(str(n) for n in class_names) if class_names is not None else \
        tuple(f'class_{i}' for i in range(1, num_classes))
    if len(names) != num_classes - 1:
        raise ValueError(f'{len(names)} class names for a Mask R-CNN with {num_classes - 1} classes '
                         '(plus background)')
    return torch.arange(-1, num_classes - 1, dtype=torch.int64), names


class MaskRcnnSegmenter(RoiSegmenterMixin):
    """Runs a torchvision Mask R-CNN on uint8 images (the :class:`~instseg_ros.core.segmenter.Segmenter`
    interface).

    Thresholds map onto torchvision's ``roi_heads``: ``score_threshold`` -> ``score_thresh``,
    ``nms_threshold`` -> ``nms_thresh`` (per-class NMS), ``max_detections`` -> ``detections_per_img``;
    ``class_ids`` zero the other classes' scores before NMS. ``top_k`` has no counterpart (the RPN
    keeps torchvision's 1000 proposals); ``conf_threshold`` and ``class_agnostic`` are not used.

    Attributes:
        model: the torchvision MaskRCNN.  cfg: its MaskRcnnConfig (``cfg.name`` is the preset).
        last_timings_ms: 'preprocess' (to tensor, normalise, resize), 'forward' (backbone, RPN, box
            and mask heads), 'postprocess' (boxes to source pixels, mask ROIs) of the last call.
    """

    backend = 'torch'  # no exported runtime for Mask R-CNN

    def __init__(self, model: nn.Module, cfg: MaskRcnnConfig, device: torch.device | str = 'cpu',
                 half: bool = False, class_names: Sequence[str] | None = None) -> None:
        self._set_device(device, half)
        self.cfg = cfg
        self.model = model.to(self.device).eval()
        table, self.class_names = _label_map(cfg.num_classes, class_names)
        self._label_table = table.to(self.device)
        self._excluded_default = (table < 0).to(self.device)
        self._excluded_default[0] = False  # background keeps its own score
        self._excluded = self._excluded_default
        self.model.roi_heads.box_predictor.register_forward_hook(self._mask_classes)
        self.last_timings_ms: dict[str, float] = {}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, preset: str = 'auto',
                        device: torch.device | str = 'cpu', half: bool = False,
                        class_names: Sequence[str] | None = None, min_size: int = 800,
                        max_size: int = 1333) -> 'MaskRcnnSegmenter':
        model, cfg = load_model(path, preset, min_size=min_size, max_size=max_size)
        return cls(model, cfg, device=device, half=half, class_names=class_names)

    def _mask_classes(self, module, inputs, output):
        """Forward hook on the box predictor: excluded classes get probability 0 after torchvision's
        softmax while every other class keeps its own (their mass moves to background)."""
        excluded = self._excluded
        if not bool(excluded.any()):
            return output
        logits, deltas = output
        background = torch.logsumexp(torch.cat([logits[:, :1], logits[:, excluded]], dim=1), dim=1)
        logits = logits.masked_fill(excluded, float('-inf'))
        logits[:, 0] = background
        return logits, deltas

    def _apply(self, params: InferenceParams) -> None:
        heads = self.model.roi_heads
        heads.score_thresh = float(params.score_threshold)
        heads.nms_thresh = float(params.nms_threshold)
        heads.detections_per_img = int(params.max_detections)
        excluded = self._excluded_default
        if params.class_ids is not None:
            wanted = torch.zeros(len(self.class_names), dtype=torch.bool, device=self.device)
            ids = [i for i in params.class_ids if i < len(self.class_names)]
            wanted[ids] = True
            valid = self._label_table >= 0
            keep = torch.zeros_like(excluded)
            keep[valid] = wanted[self._label_table[valid]]
            excluded = ~keep
            excluded[0] = False
        self._excluded = excluded

    def _tensor(self, image: np.ndarray, color_order: str) -> torch.Tensor:
        """uint8 [H, W, 3] -> float32 [3, H, W] RGB in 0..1 on the device."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}')
        if color_order not in ('bgr', 'rgb'):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)
        if color_order == 'bgr':
            tensor = tensor.flip(0)
        return tensor.to(torch.float32).div_(255.0)

    @torch.inference_mode()
    def _detect(self, images: Sequence[np.ndarray], color_order: str, params: InferenceParams):
        """torchvision's stages up to the heads; sets the timings. Returns per image
        (boxes [N,4] source px, scores [N], labels [N] 0-based, mask probs [N,28,28], (h, w))."""
        from torchvision.models.detection.transform import resize_boxes

        start = time.perf_counter()
        self._apply(params)
        tensors = [self._tensor(image, color_order) for image in images]
        autocast = torch.autocast('cuda', dtype=torch.float16, enabled=self.half)
        with autocast:
            batch, _ = self.model.transform(tensors)
            self._sync()
            preprocessed = time.perf_counter()
            features = self.model.backbone(batch.tensors)
            proposals, _ = self.model.rpn(batch, features)
            detections, _ = self.model.roi_heads(features, proposals, batch.image_sizes)
        self._sync()
        forwarded = time.perf_counter()
        self.last_timings_ms = {'preprocess': (preprocessed - start) * 1e3,
                                'forward': (forwarded - preprocessed) * 1e3}
        out = []
        for det, resized, tensor in zip(detections, batch.image_sizes, tensors):
            size = (int(tensor.shape[1]), int(tensor.shape[2]))
            labels = self._label_table[det['labels']]
            keep = labels >= 0
            boxes = resize_boxes(det['boxes'].to(torch.float32), list(resized), list(size))
            out.append((boxes[keep], det['scores'][keep].to(torch.float32), labels[keep],
                        det['masks'][keep, 0].to(torch.float32), size))
        return out, forwarded

    def _stop_clock(self, forwarded: float) -> None:
        self._sync()
        self.last_timings_ms['postprocess'] = (time.perf_counter() - forwarded) * 1e3

    def predict_rois_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                           params: InferenceParams | None = None) -> list[RoiDetections]:
        """:meth:`predict_rois` of each image with one forward pass (timings: the whole batch)."""
        if len(images) == 0:
            return []
        per_image, forwarded = self._detect(images, color_order, params or InferenceParams())
        results = [RoiDetections(boxes_xyxy=boxes.cpu().numpy().reshape(-1, 4),
                                 scores=scores.cpu().numpy(), labels=labels.cpu().numpy(),
                                 rois=paste_mask_rois(masks, boxes, size))
                   for boxes, scores, labels, masks, size in per_image]
        self._stop_clock(forwarded)
        return results


def build_segmenter(weights: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
                    half: bool = False, class_names: Sequence[str] | None = None,
                    **options) -> MaskRcnnSegmenter:
    """A :class:`MaskRcnnSegmenter` for a torchvision Mask R-CNN file; ``options``: min_size,
    max_size (torchvision's resize; None / 0 = 800 / 1333); other keys (options of other
    families) are ignored. Raises CheckpointError for a missing / truncated / wrong file."""
    sizes = {k: int(options[k]) for k in ('min_size', 'max_size') if options.get(k)}
    return MaskRcnnSegmenter.from_checkpoint(weights, preset=preset, device=device, half=half,
                                             class_names=class_names, **sizes)
