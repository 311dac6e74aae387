"""Matrix NMS (SOLOv2, Wang et al. 2020): parallel soft suppression of masks in one matrix step.

Every candidate ``j`` is decayed by the candidates ``i`` ranked above it with the same label:

    decay_j = min_i  f(iou_ij) / f(comp_i)          (over i ranked above j, same label)

where ``comp_i`` is the largest IoU of ``i`` with any same-label candidate ranked above ``i``
(how much ``i`` is itself suppressed), and

    gaussian: f(x) = exp(-sigma * x^2)              linear: f(x) = 1 - x

(the linear form is ``(1 - iou_ij) / (1 - comp_i)``). Pairs with another label, and ``j``
ranked first, contribute the factor 1, so ``decay_j <= 1`` whenever ``iou_ij >= comp_i``.

Intersections of all pairs come from one matrix product of the flattened masks (mask overlaps as
sums), so the cost is one ``[N, P] x [P, N]`` matmul, with N <= ``nms_pre``.

Semantics follow mmdetection's ``mask_matrix_nms`` (read as a reference for behaviour; this is an
independent implementation): sort by score (descending), keep the first ``nms_pre``, decay,
drop scores ``< filter_thr`` (when ``filter_thr > 0``), re-sort, keep the first ``max_num``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ['MatrixNmsResult', 'matrix_nms', 'matrix_nms_decay']


class MatrixNmsResult(NamedTuple):
    """Output of :func:`matrix_nms` (M kept candidates, descending decayed score).

    Attributes:
        scores: float ``[M]`` decayed scores.
        labels: int64 ``[M]`` labels of the kept candidates.
        keep_indices: int64 ``[M]`` indices into the input candidates.
    """

    scores: torch.Tensor
    labels: torch.Tensor
    keep_indices: torch.Tensor


def matrix_nms_decay(masks: torch.Tensor, labels: torch.Tensor, mask_areas: torch.Tensor,
                     kernel: str = 'gaussian', sigma: float = 2.0) -> torch.Tensor:
    """Decay factor of each candidate; the candidates must already be sorted by descending score.

    Args:
        masks: bool or float ``[N, H, W]`` (or ``[N, P]``) binary masks, best first.
        labels: int ``[N]`` labels.
        mask_areas: float ``[N]`` number of pixels of each mask.
        kernel: 'gaussian' or 'linear'.
        sigma: gaussian kernel parameter (unused by 'linear').

    Returns:
        float32 ``[N]`` factors in ``(0, 1]`` (``1`` for the first candidate).
    """
    if kernel not in ('gaussian', 'linear'):
        raise ValueError(f"matrix_nms kernel must be 'gaussian' or 'linear', got {kernel!r}")
    num = int(labels.shape[0])
    if num == 0:
        return torch.zeros((0,), dtype=torch.float32, device=labels.device)
    flat = masks.reshape(num, -1).to(torch.float32)
    intersections = flat @ flat.t()  # [N, N] pixel overlaps
    areas = mask_areas.to(torch.float32)
    unions = areas[:, None] + areas[None, :] - intersections
    same_label_above = (labels[:, None] == labels[None, :]).triu(diagonal=1)  # [i, j]: i ranked above j
    ious = (intersections / unions).triu(diagonal=1) * same_label_above  # [i, j], zero elsewhere
    compensation = ious.amax(dim=0)[:, None]  # [i, 1]: max IoU of i with the candidates above it
    if kernel == 'gaussian':
        ratios = torch.exp(-sigma * ious.square()) / torch.exp(-sigma * compensation.square())
    else:
        ratios = (1.0 - ious) / (1.0 - compensation)
    return ratios.amin(dim=0)


def matrix_nms(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor,
               mask_areas: torch.Tensor | None = None, kernel: str = 'gaussian', sigma: float = 2.0,
               filter_thr: float = -1.0, nms_pre: int = -1, max_num: int = -1) -> MatrixNmsResult:
    """Matrix NMS over N candidate masks of one image.

    Args:
        masks: bool ``[N, H, W]`` binary masks (any resolution; all the same size).
        labels: int64 ``[N]`` class labels (suppression only within a label).
        scores: float ``[N]`` scores before decay.
        mask_areas: float ``[N]`` pixel count of each mask (computed from ``masks`` if None).
        kernel: 'gaussian' (``exp(-sigma * iou^2)``) or 'linear' (``1 - iou``).
        sigma: gaussian kernel parameter.
        filter_thr: after decay keep scores ``>= filter_thr``; ``<= 0`` keeps all.
        nms_pre: only the ``nms_pre`` best candidates take part; ``<= 0`` means all.
        max_num: keep at most this many after decay; ``<= 0`` means all.

    Returns:
        :class:`MatrixNmsResult`, sorted by descending decayed score.
    """
    if not labels.shape[0] == masks.shape[0] == scores.shape[0]:
        raise ValueError(f'matrix_nms: masks {tuple(masks.shape)}, labels {tuple(labels.shape)} and '
                         f'scores {tuple(scores.shape)} must have the same length')
    empty = MatrixNmsResult(scores.new_zeros((0,)), labels.new_zeros((0,), dtype=torch.int64),
                            labels.new_zeros((0,), dtype=torch.int64))
    if scores.shape[0] == 0:
        return empty
    if mask_areas is None:
        mask_areas = masks.reshape(masks.shape[0], -1).sum(dim=1).to(torch.float32)
    sorted_scores, order = torch.sort(scores, descending=True, stable=True)
    if nms_pre > 0:
        sorted_scores, order = sorted_scores[:nms_pre], order[:nms_pre]
    decay = matrix_nms_decay(masks[order], labels[order], mask_areas[order], kernel, sigma)
    decayed = sorted_scores * decay.to(sorted_scores.dtype)
    if filter_thr > 0:
        kept = decayed >= filter_thr
        decayed, order = decayed[kept], order[kept]
        if decayed.shape[0] == 0:
            return empty
    final_scores, final_order = torch.sort(decayed, descending=True, stable=True)
    if max_num > 0:
        final_scores, final_order = final_scores[:max_num], final_order[:max_num]
    keep = order[final_order]
    return MatrixNmsResult(final_scores, labels[keep].to(torch.int64), keep)
