"""From raw YOLACT head outputs to :class:`Instances` (reference ``Detect`` + ``postprocess``).

Pipeline for one image, all on the device of the outputs:
softmax -> decode -> candidate filter (max class score > conf_threshold) -> optional class restriction ->
Fast NMS -> score threshold (strict ``>``) -> masks (sigmoid(proto @ coeffs), crop with 1 px padding at
prototype resolution) -> [YOLACT++: scores *= maskiou, re-sort, keep ``>=`` threshold as the reference's
display path] -> bilinear upsample to the source image, ``> 0.5`` -> boxes to pixels, truncated.

The upsampling only interpolates, per instance, the window of output pixels that can be non-zero
(:func:`instseg_ros.core.ops.masks.paste_masks`); the masks equal the full-frame reference.
:func:`postprocess_rois` returns the same masks as tight ROIs on the host, never building full frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from instseg_ros.core.ops.boxes import boxes_rel_to_pixels, decode
from instseg_ros.core.ops.masks import Roi, cropped_soft_masks, paste_mask_rois, paste_masks
from instseg_ros.core.ops.nms import NmsResult, fast_nms, fast_nms_class_agnostic, fast_nms_indices
from instseg_ros.core.structures import Instances

RescoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InferenceParams:
    """Detection parameters (reference ``eval.py`` defaults except ``score_threshold``).

    Attributes:
        score_threshold: keep detections with score ``>`` this (after NMS).
        nms_threshold: Fast NMS IoU threshold (kept iff max IoU ``<=`` this).
        top_k: candidates per class entering NMS.
        max_detections: detections kept after NMS.
        class_ids: keep only these 0-based class ids (None = all). Applied before NMS, which leaves the
            per-class NMS unchanged and keeps other classes from using up ``max_detections``;
            ids outside the model's classes are ignored.
        conf_threshold: candidate filter, a prior enters NMS iff its best class score is ``>`` this.
        class_agnostic: use cross-class Fast NMS (reference ``--cross_class_nms``).
    """

    score_threshold: float = 0.3
    nms_threshold: float = 0.5
    top_k: int = 200
    max_detections: int = 100
    class_ids: tuple[int, ...] | None = None
    conf_threshold: float = 0.05
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        if self.class_ids is not None:
            object.__setattr__(self, 'class_ids', tuple(int(i) for i in self.class_ids))
            if any(i < 0 for i in self.class_ids):
                raise ValueError(f'class_ids must be >= 0, got {self.class_ids}')
        if not 0.0 <= self.nms_threshold <= 1.0:
            raise ValueError(f'nms_threshold must be in [0, 1], got {self.nms_threshold}')
        if self.top_k < 0 or self.max_detections < 0:
            raise ValueError('top_k and max_detections must be >= 0')


def _class_rows(class_ids: tuple[int, ...] | None, num_classes: int,
                device: torch.device) -> torch.Tensor | None:
    """int64 rows of the ``[C-1, P]`` score matrix to keep, or None for all."""
    if class_ids is None:
        return None
    valid = sorted({i for i in class_ids if i < num_classes})
    return torch.tensor(valid, dtype=torch.int64, device=device)


def detect(loc: torch.Tensor, conf_logits: torch.Tensor, coeffs: torch.Tensor, priors: torch.Tensor,
           params: InferenceParams) -> NmsResult:
    """Reference ``Detect`` for one image.

    Args:
        loc: float ``[P, 4]`` raw box regression.
        conf_logits: float ``[P, C]`` raw class logits, background at channel 0.
        coeffs: float ``[P, K]`` mask coefficients.
        priors: float ``[P, 4]`` anchors (cx, cy, w, h), relative.

    Returns:
        :class:`NmsResult` with relative xyxy boxes and 0-based labels (background excluded).
    """
    # softmax over classes on the [C, P] layout: the same values, several times faster on the CPU
    # than along a short last dimension
    class_scores = torch.softmax(conf_logits.t().contiguous(), dim=0)[1:]
    if conf_logits.shape[0] == 0:
        return fast_nms(loc, coeffs, class_scores)
    is_candidate = class_scores.amax(dim=0) > params.conf_threshold
    rows = _class_rows(params.class_ids, class_scores.shape[0], class_scores.device)
    if params.class_agnostic:
        candidates = torch.nonzero(is_candidate).squeeze(1)
        class_scores = class_scores.index_select(1, candidates)
        if rows is not None:
            class_scores = class_scores[rows]
        result = fast_nms_class_agnostic(
            decode(loc.index_select(0, candidates), priors.index_select(0, candidates)),
            coeffs.index_select(0, candidates), class_scores, iou_threshold=params.nms_threshold,
            top_k=params.top_k, max_detections=params.max_detections)
    else:
        # Per-class ranking over all priors with the non-candidates pushed below every candidate
        # (scores -1), limited to the number of candidates: the same top-k as on the candidates
        # alone, and only the boxes NMS looks at are decoded.
        num_candidates = int(is_candidate.sum())
        if rows is not None:
            class_scores = class_scores[rows]
        ranked = fast_nms_indices(
            class_scores.masked_fill(~is_candidate, -1.0),
            lambda index: decode(loc.index_select(0, index), priors.index_select(0, index)),
            iou_threshold=params.nms_threshold, top_k=min(params.top_k, num_candidates),
            max_detections=params.max_detections)
        result = NmsResult(boxes_xyxy=ranked.boxes_xyxy, coeffs=coeffs[ranked.indices], labels=ranked.labels,
                           scores=ranked.scores)
    if rows is not None:
        result = result._replace(labels=rows[result.labels])
    return result


def _select(dets: NmsResult, index: torch.Tensor) -> NmsResult:
    if index.dtype == torch.bool:  # one nonzero, then cheap gathers (bool indexing costs more per tensor)
        index = torch.nonzero(index).squeeze(1)
    return NmsResult(*(t.index_select(0, index) for t in dets))


def rescore_with_maskiou(dets: NmsResult, masks_soft: torch.Tensor, rescore_fn: RescoreFn,
                         score_threshold: float) -> tuple[NmsResult, torch.Tensor]:
    """YOLACT++ display-path rescoring: ``score *= maskiou[label]``, re-sort, keep ``score >= threshold``.

    Args:
        dets: N detections; masks_soft: float ``[N, Hp, Wp]`` cropped soft masks.
        rescore_fn: ``[N, 1, Hp, Wp] -> [N, C-1]`` predicted mask IoU per class (``Yolact.rescore``).

    Returns:
        (re-sorted detections, their float ``[M, Hp, Wp]`` soft masks).
    """
    maskiou = rescore_fn(masks_soft[:, None]).to(dets.scores.dtype)
    scores = dets.scores * maskiou.gather(1, dets.labels[:, None])[:, 0]
    order = scores.sort(descending=True, stable=True).indices
    order = order[scores[order] >= score_threshold]
    rescored = _select(dets._replace(scores=scores), order)
    return rescored, masks_soft[order]


def _soft_masks(dets: NmsResult, proto: torch.Tensor, score_threshold: float,
                rescore_fn: RescoreFn | None) -> tuple[NmsResult, torch.Tensor, np.ndarray | None]:
    """Score threshold, mask assembly and crop, optional maskiou rescoring.

    Returns:
        (kept detections, their float ``[N, Hp, Wp]`` cropped soft masks, int64 ``[N, 4]`` blocks holding
        each mask's non-zero values or None after rescoring), in output order.
    """
    dets = _select(dets, dets.scores > score_threshold)
    masks_soft, blocks = cropped_soft_masks(proto, dets.coeffs, dets.boxes_xyxy, padding=1)
    if rescore_fn is not None and dets.scores.shape[0] > 0:
        dets, masks_soft = rescore_with_maskiou(dets, masks_soft, rescore_fn, score_threshold)
        blocks = None
    return dets, masks_soft, blocks


def detections_to_instances(dets: NmsResult, proto: torch.Tensor, image_size: tuple[int, int],
                            score_threshold: float, rescore_fn: RescoreFn | None = None,
                            class_names: Sequence[str] = ()) -> Instances:
    """Score threshold, mask assembly/crop, optional maskiou rescoring, upsampling and box conversion.

    Args:
        dets: NMS output with relative boxes; proto: float ``[Hp, Wp, K]``.
        image_size: source (height, width) in pixels.
    """
    height, width = int(image_size[0]), int(image_size[1])
    dets, masks_soft, blocks = _soft_masks(dets, proto, score_threshold, rescore_fn)
    if dets.scores.shape[0] == 0:
        return Instances.empty((height, width), device=proto.device, class_names=class_names)
    return Instances(image_size=(height, width),
                     boxes_xyxy=boxes_rel_to_pixels(dets.boxes_xyxy, image_size).to(torch.float32),
                     scores=dets.scores.to(torch.float32), labels=dets.labels.to(torch.int64),
                     masks=paste_masks(masks_soft, (height, width), support=blocks).masks,
                     class_names=class_names)


class RoiDetections(NamedTuple):
    """Detections of one image on the host, each mask as the tight ROI of its True pixels.

    Attributes:
        boxes_xyxy: float32 ``[N, 4]`` pixel boxes (as :class:`Instances`).
        scores: float32 ``[N]``, descending.
        labels: int64 ``[N]``, 0-based.
        rois: N entries ``(x0, y0, crop)`` with ``crop`` a C-contiguous bool ``[rows, cols]`` array whose
            pixel (r, c) is image pixel (y0 + r, x0 + c), or None for an empty mask.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    rois: list[Roi | None]


def _detect_one(output, params: InferenceParams, batch_index: int) -> NmsResult:
    def as_f32(batched: torch.Tensor) -> torch.Tensor:
        return batched[batch_index].to(torch.float32)

    return detect(as_f32(output.loc), as_f32(output.conf), as_f32(output.coeffs),
                  output.priors.to(torch.float32), params)


def postprocess(output, cfg, image_size: tuple[int, int], params: InferenceParams | None = None,
                batch_index: int = 0, rescore_fn: RescoreFn | None = None,
                class_names: Sequence[str] = ()) -> Instances:
    """Instances of image ``batch_index`` of a ``YolactOutput``.

    Args:
        output: ``YolactOutput`` (loc ``[B,P,4]``, conf logits ``[B,P,C]``, coeffs ``[B,P,K]``,
            proto ``[B,Hp,Wp,K]``, priors ``[P,4]``); any float dtype, computed in float32.
        cfg: model config; maskiou rescoring runs iff ``cfg.use_maskiou`` and ``rescore_fn`` is given.
        image_size: source (height, width) in pixels.
        params: detection parameters (defaults if None).
        rescore_fn: ``Yolact.rescore`` (maps ``[N,1,Hp,Wp]`` soft masks to ``[N,C-1]``).

    Returns:
        :class:`Instances` on the device of ``output``, sorted by descending score.
    """
    params = params or InferenceParams()
    use_rescore = rescore_fn if getattr(cfg, 'use_maskiou', False) else None
    return detections_to_instances(_detect_one(output, params, batch_index),
                                   output.proto[batch_index].to(torch.float32), image_size,
                                   params.score_threshold, use_rescore, class_names)


def postprocess_rois(output, cfg, image_size: tuple[int, int], params: InferenceParams | None = None,
                     batch_index: int = 0, rescore_fn: RescoreFn | None = None) -> RoiDetections:
    """:func:`postprocess` with masks as tight ROIs on the host (what a ROS message carries).

    Same detections and mask pixels as ``postprocess`` followed by ``encoding.masks_to_rois``, but no
    full-frame mask is built on the CPU (:func:`instseg_ros.core.ops.masks.paste_mask_rois`). Arguments as
    :func:`postprocess`.
    """
    params = params or InferenceParams()
    height, width = int(image_size[0]), int(image_size[1])
    use_rescore = rescore_fn if getattr(cfg, 'use_maskiou', False) else None
    dets, masks_soft, blocks = _soft_masks(_detect_one(output, params, batch_index),
                                           output.proto[batch_index].to(torch.float32),
                                           params.score_threshold, use_rescore)
    boxes = boxes_rel_to_pixels(dets.boxes_xyxy, (height, width)).to(torch.float32)
    return RoiDetections(boxes_xyxy=boxes.cpu().numpy().reshape(-1, 4),
                         scores=dets.scores.to(torch.float32).cpu().numpy(),
                         labels=dets.labels.to(torch.int64).cpu().numpy(),
                         rois=paste_mask_rois(masks_soft, (height, width), support=blocks))
