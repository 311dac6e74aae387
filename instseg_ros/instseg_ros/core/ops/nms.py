"""Fast NMS of YOLACT (``layers/functions/detection.py::fast_nms`` / ``cc_fast_nms`` semantics).

Fast NMS is *not* greedy NMS: within a class, a box is dropped if ANY higher-scored box overlaps it by
more than the threshold, even when that higher-scored box was itself dropped. Everything is done with
dense tensor ops (no Python loop over boxes), on the device of the inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from instseg_ros.core.ops.boxes import box_iou, box_iou_batched


class NmsResult(NamedTuple):
    """Detections kept by NMS, sorted by descending score.

    Attributes:
        boxes_xyxy: float ``[N, 4]`` boxes (same convention as the input boxes).
        coeffs: float ``[N, K]`` mask coefficients of the kept boxes.
        labels: int64 ``[N]`` 0-based class index (row of the input ``scores``).
        scores: float ``[N]`` class score of each detection.
    """

    boxes_xyxy: torch.Tensor
    coeffs: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor


def _empty_result(boxes_xyxy: torch.Tensor, coeffs: torch.Tensor, scores: torch.Tensor) -> NmsResult:
    return NmsResult(boxes_xyxy=boxes_xyxy.new_zeros((0, 4)),
                     coeffs=coeffs.new_zeros((0, coeffs.shape[-1])),
                     labels=torch.zeros((0,), dtype=torch.int64, device=scores.device),
                     scores=scores.new_zeros((0,)))


def fast_nms(boxes_xyxy: torch.Tensor, coeffs: torch.Tensor, scores: torch.Tensor,
             iou_threshold: float = 0.5, top_k: int = 200, max_detections: int = 100) -> NmsResult:
    """Per-class Fast NMS.

    Args:
        boxes_xyxy: float ``[P, 4]`` candidate boxes.
        coeffs: float ``[P, K]`` mask coefficients of the candidates.
        scores: float ``[C, P]`` class scores (softmax without background: row c = class c, 0-based).
        iou_threshold: a box is kept iff its max IoU with higher-scored boxes of its class is ``<=`` this.
        top_k: candidates considered per class (highest scores).
        max_detections: detections kept overall after the global sort.

    Returns:
        :class:`NmsResult` with at most ``max_detections`` entries, sorted by descending score. There is
        no second score threshold: every (class, box) pair among the per-class top-k that survives is kept.
    """
    num_candidates = boxes_xyxy.shape[0]
    if num_candidates == 0 or scores.shape[0] == 0 or top_k <= 0 or max_detections <= 0:
        return _empty_result(boxes_xyxy, coeffs, scores)
    num_classes = scores.shape[0]
    # top-k instead of a full sort: the same k highest scores in descending order (the reference's
    # sort is not stable either, so exact ties may come in any order), at a fraction of the cost.
    class_scores, order = scores.topk(min(top_k, num_candidates), dim=1, sorted=True)
    class_boxes = boxes_xyxy[order.reshape(-1)].view(num_classes, -1, 4)
    iou = box_iou_batched(class_boxes, class_boxes).triu_(diagonal=1)
    iou_max = iou.max(dim=1).values
    keep = iou_max <= iou_threshold
    labels = torch.arange(num_classes, device=scores.device)[:, None].expand_as(keep)[keep]
    kept_priors = order[keep]
    kept_scores, ranking = class_scores[keep].sort(dim=0, descending=True, stable=True)
    ranking = ranking[:max_detections]
    kept_priors = kept_priors[ranking]
    return NmsResult(boxes_xyxy=boxes_xyxy[kept_priors], coeffs=coeffs[kept_priors],
                     labels=labels[ranking], scores=kept_scores[:max_detections])


def fast_nms_class_agnostic(boxes_xyxy: torch.Tensor, coeffs: torch.Tensor, scores: torch.Tensor,
                            iou_threshold: float = 0.5, top_k: int = 200,
                            max_detections: int = 100) -> NmsResult:
    """Cross-class Fast NMS (reference ``cc_fast_nms``): one label per box (its best class),
    one top-k, suppression regardless of class.

    Args/Returns: as :func:`fast_nms`; ``scores`` is float ``[C, P]``.
    """
    if boxes_xyxy.shape[0] == 0 or scores.shape[0] == 0 or top_k <= 0 or max_detections <= 0:
        return _empty_result(boxes_xyxy, coeffs, scores)
    best_scores, best_labels = scores.max(dim=0)
    order = best_scores.sort(dim=0, descending=True, stable=True).indices[:top_k]
    ranked_boxes = boxes_xyxy[order]
    iou = box_iou(ranked_boxes, ranked_boxes).triu_(diagonal=1)
    keep = iou.max(dim=0).values <= iou_threshold
    kept = order[keep][:max_detections]
    return NmsResult(boxes_xyxy=boxes_xyxy[kept], coeffs=coeffs[kept],
                     labels=best_labels[kept], scores=best_scores[kept])
