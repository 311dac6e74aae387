"""Fast NMS of YOLACT (``layers/functions/detection.py::fast_nms`` / ``cc_fast_nms`` semantics).

Fast NMS is *not* greedy NMS: within a class, a box is dropped if ANY higher-scored box overlaps it by
more than the threshold, even when that higher-scored box was itself dropped. Everything is done with
dense tensor ops (no Python loop over boxes), on the device of the inputs.
"""

from __future__ import annotations

from collections.abc import Callable
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


BoxesFn = Callable[[torch.Tensor], torch.Tensor]

#: candidates per class in the first round of :func:`fast_nms_indices` (at least 2 x max_detections)
_FIRST_ROUND = 32


class RankedDetections(NamedTuple):
    """Result of :func:`fast_nms_indices`, sorted by descending score.

    Attributes:
        indices: int64 ``[N]`` column of ``scores`` (prior) of each detection.
        labels: int64 ``[N]`` 0-based class (row of ``scores``).
        scores: float ``[N]``.
        boxes_xyxy: float ``[N, 4]`` their boxes (from ``boxes_of``).
    """

    indices: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    boxes_xyxy: torch.Tensor


def fast_nms_indices(scores: torch.Tensor, boxes_of: BoxesFn, iou_threshold: float = 0.5, top_k: int = 200,
                     max_detections: int = 100) -> RankedDetections:
    """Per-class Fast NMS on ``scores`` with boxes computed on demand.

    Same result as ranking each class's ``top_k`` highest scores, suppressing every box whose IoU with
    any higher-ranked box of its class exceeds ``iou_threshold`` and keeping the ``max_detections`` best
    survivors (stable in class-major, rank order on equal scores). Whether a box survives depends only
    on the boxes ranked above it, so the work is done for the first ``m`` ranks of every class and ``m``
    grows (x4, up to ``top_k``) only while a box beyond rank ``m`` could still enter the result: the
    ``max_detections``-th survivor must score strictly above every unprocessed box. With typical
    outputs one small round (``m = max(32, 2 * max_detections)``) replaces a ``top_k x top_k`` IoU
    matrix per class.

    Args:
        scores: float ``[C, P]``; row c = class c. Columns with negative scores in every class never
            enter (mark non-candidates with -1) as long as ``top_k`` <= the number of candidates.
        boxes_of: int64 ``[n]`` column indices -> float ``[n, 4]`` xyxy boxes.
        iou_threshold: kept iff the max IoU with higher-ranked boxes of the class is ``<=`` this.
        top_k: ranks considered per class; max_detections: detections kept overall.
    """
    num_classes, num_columns = scores.shape
    top_k = min(int(top_k), num_columns)
    empty = torch.zeros((0,), dtype=torch.int64, device=scores.device)
    if num_classes == 0 or top_k <= 0 or max_detections <= 0:
        return RankedDetections(empty, empty, scores.new_zeros((0,)), scores.new_zeros((0, 4)))
    ranks = min(top_k, max(_FIRST_ROUND, 2 * max_detections))
    while True:
        # top-k instead of a full sort: the same k highest scores in descending order (the reference's
        # sort is not stable either, so exact ties may come in any order)
        class_scores, order = scores.topk(ranks, dim=1, sorted=True)
        class_boxes = boxes_of(order.reshape(-1)).view(num_classes, ranks, 4)
        iou = box_iou_batched(class_boxes, class_boxes).triu_(diagonal=1)
        # positions of the survivors in the flattened [C, ranks] grid (class-major, rank order)
        kept = torch.nonzero((iou.amax(dim=1) <= iou_threshold).view(-1)).squeeze(1)
        kept_scores = class_scores.view(-1).index_select(0, kept)
        if ranks == top_k:
            break
        if kept_scores.shape[0] >= max_detections:
            worst_kept = kept_scores.topk(max_detections, sorted=False).values.min()
            if bool(worst_kept > class_scores[:, -1].max()):
                break
        ranks = min(top_k, ranks * 4)
    kept_scores, ranking = kept_scores.sort(dim=0, descending=True, stable=True)
    flat = kept.index_select(0, ranking[:max_detections])  # best first
    return RankedDetections(order.view(-1).index_select(0, flat), torch.div(flat, ranks, rounding_mode='floor'),
                            kept_scores[:max_detections], class_boxes.view(-1, 4).index_select(0, flat))


def fast_nms(boxes_xyxy: torch.Tensor, coeffs: torch.Tensor, scores: torch.Tensor,
             iou_threshold: float = 0.5, top_k: int = 200, max_detections: int = 100) -> NmsResult:
    """Per-class Fast NMS (:func:`fast_nms_indices` on given boxes).

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
    if boxes_xyxy.shape[0] == 0 or scores.shape[0] == 0:
        return _empty_result(boxes_xyxy, coeffs, scores)
    ranked = fast_nms_indices(scores, lambda index: boxes_xyxy.index_select(0, index), iou_threshold, top_k,
                              max_detections)
    return NmsResult(boxes_xyxy=ranked.boxes_xyxy, coeffs=coeffs[ranked.indices], labels=ranked.labels,
                     scores=ranked.scores)


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
    keep = iou.amax(dim=0) <= iou_threshold
    kept = order[keep][:max_detections]
    return NmsResult(boxes_xyxy=boxes_xyxy[kept], coeffs=coeffs[kept],
                     labels=best_labels[kept], scores=best_scores[kept])


def top_scores(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest of float ``[M]`` ``scores`` (all when ``M <= k``) in descending order and
    their indices: ``scores.sort(descending=True)`` cut to ``k``, with a top-k selection instead of
    a full sort when ``M > k`` (mmdetection's per-level ``nms_pre`` on hundreds of thousands of
    point-class pairs; equal scores may come in another order than a sort's)."""
    if scores.numel() > k:
        return scores.topk(k)
    return scores.sort(descending=True)
