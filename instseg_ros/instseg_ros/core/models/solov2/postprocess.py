"""SOLOv2 decoding for one image: raw head outputs -> scored masks as tight ROIs in source pixels.

Steps (mmdetection 3.x ``SOLOV2Head`` test semantics, learned from its source, written anew):

1. category scores ``sigmoid(logits)``, kept only at 2x2 local maxima of their grid, flattened
   level by level in (row, col, class) order; candidates are the (cell, class) pairs with score
   ``> score_thr``;
2. each candidate's mask ``sigmoid(kernel . mask_feats)`` at stride 4: the 1x1 dynamic convolution
   of all selected cells as ONE matmul ``[N, E] x [E, Hf*Wf]``;
3. binary mask ``prob > mask_thr``; candidates whose mask has no more pixels than their level's
   stride are dropped; ``score *= maskness`` (mean prob inside the binary mask);
4. Matrix NMS on the stride-4 binary masks (:func:`instseg_ros.core.ops.matrix_nms.matrix_nms`);
5. mask probabilities upsampled bilinearly (align_corners False) x4 to the padded input, cropped to
   the resized image, resized bilinearly to the source image, ``> mask_thr``.

Step 5 is done per instance on a window only (:func:`mask_rois`): a bilinear sample is a convex
combination of its two (per axis) source samples, so an output pixel can exceed the threshold only
if one of the stride-4 cells it reads (through both resizes) does. Each instance's window is the
output range whose source cells meet the box of its stride-4 mask; inside it the values are
computed exactly as the full-frame resizes would: the x4 stage by ``F.interpolate`` of the cell
window (origin aligned, so the source coordinates are the global ones shifted by whole cells), the
second stage with PyTorch's bilinear indices and weights (columns first, then rows, as its
kernel); the pixels equal mmdet's full-frame upsampling. Boxes are the masks' tight pixel boxes
``[x0, y0, x1 + 1, y1 + 1]`` (mmdet's ``mask2bbox``), zeros for an empty mask.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from instseg_ros.core.ops.matrix_nms import matrix_nms

__all__ = ['AxisTaps', 'Candidates', 'DecodeParams', 'axis_taps', 'decode_single', 'dynamic_mask_probs',
           'full_masks', 'mask_rois', 'select_candidates']

#: masks of more candidates than this are computed in chunks (memory bound)
_CHUNK = 1024
#: instances whose output window exceeds this fraction of the image are upsampled full-frame
LARGE_WINDOW_FRACTION = 0.25
_FULL_CHUNK = 8


class DecodeParams(NamedTuple):
    """mmdet ``test_cfg`` plus the project's optional filters.

    Attributes:
        score_thr: category score threshold of candidates (strict ``>``).
        mask_thr: mask probability threshold (strict ``>``).
        filter_thr: Matrix NMS keeps decayed scores ``>= filter_thr``.
        nms_pre, max_per_img: candidates entering Matrix NMS / detections kept (``max_per_img`` 0:
            none, negative: no limit).
        kernel, sigma: Matrix NMS kernel.
        final_score_thr: keep detections with decayed score ``> final_score_thr`` (None: no filter).
        class_ids: only these 0-based classes become candidates (None: all).
    """

    score_thr: float
    mask_thr: float
    filter_thr: float
    nms_pre: int
    max_per_img: int
    kernel: str
    sigma: float
    final_score_thr: float | None = None
    class_ids: tuple[int, ...] | None = None


class Candidates(NamedTuple):
    """Selected (cell, class) pairs of one image: float ``[N]`` scores, int64 ``[N]`` labels,
    float ``[N, E]`` kernels, float ``[N]`` minimum mask areas (their level's stride)."""

    scores: torch.Tensor
    labels: torch.Tensor
    kernels: torch.Tensor
    min_areas: torch.Tensor


def select_candidates(cls_logits: list[torch.Tensor], kernels: list[torch.Tensor], strides: tuple[int, ...],
                      score_thr: float, class_ids: tuple[int, ...] | None = None) -> Candidates:
    """Local-maximum category scores above ``score_thr``.

    Args:
        cls_logits: per level float ``[C, S, S]`` logits of one image.
        kernels: per level float ``[E, S, S]`` dynamic kernels.
        strides: per level stride (minimum mask area of the level's candidates).
    """
    scores_all, kernels_all, areas_all = [], [], []
    for logits, kern, stride in zip(cls_logits, kernels, strides):
        probs = torch.sigmoid(logits.float())[None]
        peaks = F.max_pool2d(probs, 2, stride=1, padding=1)[:, :, :-1, :-1] == probs
        probs = (probs * peaks)[0]
        scores_all.append(probs.permute(1, 2, 0).reshape(-1, probs.shape[0]))
        kernels_all.append(kern.float().permute(1, 2, 0).reshape(-1, kern.shape[0]))
        areas_all.append(torch.full((kern.shape[1] * kern.shape[2],), float(stride), device=kern.device))
    scores = torch.cat(scores_all)
    if class_ids is not None:
        allowed = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
        allowed[[i for i in class_ids if 0 <= i < scores.shape[1]]] = True
        scores = scores * allowed
    cells, labels = torch.nonzero(scores > score_thr, as_tuple=True)
    return Candidates(scores[cells, labels], labels, torch.cat(kernels_all)[cells],
                      torch.cat(areas_all)[cells])


def dynamic_mask_probs(kernels: torch.Tensor, mask_feats: torch.Tensor) -> torch.Tensor:
    """Mask probabilities of N instances: their 1x1 dynamic convolutions as ONE matmul (ONNX: MatMul
    + Sigmoid, N dynamic).

    Args:
        kernels: float ``[N, E]`` dynamic kernels of the selected grid cells.
        mask_feats: float ``[E, Hf, Wf]`` unified mask features of the image.

    Returns:
        float ``[N, Hf, Wf]`` = ``sigmoid(kernels @ mask_feats)``.
    """
    channels, height, width = mask_feats.shape
    logits = kernels @ mask_feats.reshape(channels, height * width)
    return torch.sigmoid(logits).view(-1, height, width)


def _mask_stats(kernels: torch.Tensor, mask_feats: torch.Tensor, mask_thr: float):
    """(float ``[N]`` binary-mask areas, float ``[N]`` maskness, float ``[N, Hf, Wf]`` probabilities
    or None when N > _CHUNK: then they are computed chunk by chunk and not kept)."""
    areas, maskness = [], []
    probs = None
    for start in range(0, kernels.shape[0], _CHUNK):
        probs = dynamic_mask_probs(kernels[start:start + _CHUNK], mask_feats)
        binary = probs > mask_thr
        area = binary.sum(dim=(1, 2)).float()
        areas.append(area)
        maskness.append((probs * binary).sum(dim=(1, 2)) / area)
    return torch.cat(areas), torch.cat(maskness), probs if kernels.shape[0] <= _CHUNK else None


def decode_single(cls_logits: list[torch.Tensor], kernels: list[torch.Tensor], mask_feats: torch.Tensor,
                  strides: tuple[int, ...], params: DecodeParams):
    """Detections of one image at stride 4 (steps 1-4).

    Args:
        cls_logits, kernels: per level ``[C, S, S]`` / ``[E, S, S]`` of this image.
        mask_feats: float ``[E, Hf, Wf]`` of this image.

    Returns:
        (scores float32 ``[M]`` descending, labels int64 ``[M]``, mask probabilities float32
        ``[M, Hf, Wf]``).
    """
    feats = mask_feats.float()
    empty = (feats.new_zeros((0,)), torch.zeros((0,), dtype=torch.int64, device=feats.device),
             feats.new_zeros((0, *feats.shape[-2:])))
    if params.max_per_img == 0:  # negative: no limit
        return empty
    cand = select_candidates(cls_logits, kernels, strides, params.score_thr, params.class_ids)
    if cand.scores.shape[0] == 0:
        return empty
    areas, maskness, probs = _mask_stats(cand.kernels, feats, params.mask_thr)
    keep = torch.nonzero(areas > cand.min_areas).squeeze(1)
    if keep.shape[0] == 0:
        return empty
    scores = cand.scores[keep] * maskness[keep]
    order = torch.sort(scores, descending=True, stable=True).indices
    if params.nms_pre > 0:
        order = order[:params.nms_pre]
    index = keep[order]
    probs = probs[index] if probs is not None else dynamic_mask_probs(cand.kernels[index], feats)
    result = matrix_nms(probs > params.mask_thr, cand.labels[index], scores[order], areas[index],
                        kernel=params.kernel, sigma=params.sigma, filter_thr=params.filter_thr,
                        max_num=params.max_per_img)
    final = result.keep_indices
    out_scores = result.scores
    if params.final_score_thr is not None:
        kept = out_scores > params.final_score_thr
        final, out_scores = final[kept], out_scores[kept]
    return out_scores, cand.labels[index][final], probs[final]


class AxisTaps(NamedTuple):
    """Bilinear (align_corners False, no antialias) taps of every output index along one axis:
    int64 ``[n]`` first/second source index, float32 ``[n]`` their weights."""

    index0: torch.Tensor
    index1: torch.Tensor
    weight0: torch.Tensor
    weight1: torch.Tensor


def axis_taps(in_size: int, out_size: int, device: torch.device) -> AxisTaps:
    """PyTorch's ``F.interpolate(size=..., mode='bilinear')`` source indices and weights for all
    ``out_size`` outputs of an axis of ``in_size`` samples (scale ``in/out`` in float32)."""
    scale = torch.tensor(float(in_size), dtype=torch.float32) / torch.tensor(float(out_size), dtype=torch.float32)
    dst = torch.arange(out_size, dtype=torch.float32, device=device)
    src = ((dst + 0.5) * scale.to(device) - 0.5).clamp_min(0.0)
    index0 = torch.floor(src).to(torch.int64).clamp_max(in_size - 1)
    lam = (src - index0.to(torch.float32)).clamp(0.0, 1.0)
    index1 = index0 + (index0 < in_size - 1).to(torch.int64)
    return AxisTaps(index0, index1, 1.0 - lam, lam)


def _lerp(values: torch.Tensor, taps: AxisTaps, start: int, stop: int, offset: int, dim: int) -> torch.Tensor:
    """Resample ``values`` (whose index 0 along ``dim`` is source index ``offset``) at outputs
    ``start:stop`` of ``taps``."""
    i0 = taps.index0[start:stop] - offset
    i1 = taps.index1[start:stop] - offset
    w0, w1 = taps.weight0[start:stop], taps.weight1[start:stop]
    if dim == 1:
        return values.index_select(1, i0) * w0 + values.index_select(1, i1) * w1
    return values.index_select(0, i0) * w0[:, None] + values.index_select(0, i1) * w1[:, None]


class _Chain(NamedTuple):
    """One axis of the two resizes: stride-4 cells -> padded input (cropped to the resized image,
    ``first``) -> source image (``second``); ``lo``/``hi``: the first/last cell each source pixel reads."""

    first: AxisTaps
    second: AxisTaps
    lo: torch.Tensor
    hi: torch.Tensor


def _chain(feat_size: int, padded_size: int, resized_size: int, source_size: int, device) -> _Chain:
    if padded_size != 4 * feat_size:
        raise ValueError(f'mask features of {feat_size} cells for a padded input of {padded_size} px: '
                         'expected stride 4')
    first = axis_taps(feat_size, padded_size, device)
    first = AxisTaps(*(t[:resized_size] for t in first))
    second = axis_taps(resized_size, source_size, device)
    return _Chain(first, second, first.index0[second.index0], first.index1[second.index1])


def _ranges(chain: _Chain, any_cells: torch.Tensor) -> tuple[list[int], list[int]]:
    """Per instance the output range [start, stop) whose cells meet its mask's cell range
    (``any_cells``: bool ``[M, n_cells]``)."""
    cells = any_cells.shape[1]
    ar = torch.arange(cells, device=any_cells.device)
    first_cell = torch.where(any_cells, ar, cells).amin(dim=1)
    last_cell = torch.where(any_cells, ar, -1).amax(dim=1)
    starts = torch.searchsorted(chain.hi, first_cell, right=False)
    stops = torch.searchsorted(chain.lo, last_cell, right=True)
    return starts.tolist(), stops.tolist()


def _window_values(prob: torch.Tensor, rows: _Chain, cols: _Chain, out_r: tuple[int, int],
                   out_c: tuple[int, int]) -> torch.Tensor:
    """float ``[h, w]`` source-image probabilities of outputs rows ``out_r``, cols ``out_c``."""
    (o_r0, o_r1), (o_c0, o_c1) = out_r, out_c
    a_r0, a_r1 = int(rows.second.index0[o_r0]), int(rows.second.index1[o_r1 - 1]) + 1
    a_c0, a_c1 = int(cols.second.index0[o_c0]), int(cols.second.index1[o_c1 - 1]) + 1
    f_r0, f_r1 = int(rows.first.index0[a_r0]), int(rows.first.index1[a_r1 - 1]) + 1
    f_c0, f_c1 = int(cols.first.index0[a_c0]), int(cols.first.index1[a_c1 - 1]) + 1
    # x4 stage as one F.interpolate of the cell window: with the window's origin at cell f0, output
    # 4 * f0 + k has the global source coordinate minus f0 (exact for the factor 0.25), and the
    # window holds every cell its taps read, so the values equal the full-frame upsampling
    window = prob[f_r0:f_r1, f_c0:f_c1][None, None]
    up = F.interpolate(window, scale_factor=4.0, mode='bilinear', align_corners=False)[0, 0]
    inter = up[a_r0 - 4 * f_r0:a_r1 - 4 * f_r0, a_c0 - 4 * f_c0:a_c1 - 4 * f_c0]
    return _lerp(_lerp(inter, cols.second, o_c0, o_c1, a_c0, 1), rows.second, o_r0, o_r1, a_r0, 0)


def mask_rois(probs: torch.Tensor, padded_hw: tuple[int, int], resized_hw: tuple[int, int],
              source_hw: tuple[int, int], mask_thr: float) -> tuple[list, np.ndarray]:
    """Tight ROIs of the source-resolution masks of stride-4 mask probabilities (step 5).

    Args:
        probs: float32 ``[M, Hf, Wf]`` mask probabilities at stride 4 of the padded input.
        padded_hw: padded network input (height, width) = 4 * (Hf, Wf).
        resized_hw: the resized image inside it (before padding).
        source_hw: source image (height, width).
        mask_thr: threshold (strict ``>``) on the upsampled probabilities.

    Returns:
        (M entries ``(x0, y0, bool crop [h, w])`` or None for an empty mask, float32 ``[M, 4]``
        tight boxes ``[x0, y0, x1 + 1, y1 + 1]`` in source pixels, zeros where empty).
    """
    count, feat_h, feat_w = probs.shape
    boxes = np.zeros((count, 4), dtype=np.float32)
    if count == 0:
        return [], boxes
    rows = _chain(feat_h, padded_hw[0], resized_hw[0], source_hw[0], probs.device)
    cols = _chain(feat_w, padded_hw[1], resized_hw[1], source_hw[1], probs.device)
    support = probs > mask_thr - 1e-5  # margin for rounding of the interpolation weights
    windows = [(r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None
               for r0, r1, c0, c1 in zip(*_ranges(rows, support.any(dim=2)), *_ranges(cols, support.any(dim=1)))]
    on_windows = _large_windows(probs, windows, padded_hw, resized_hw, source_hw, mask_thr)
    rois = []
    for i, window in enumerate(windows):
        if window is None:
            rois.append(None)
            continue
        r0, r1, c0, c1 = window
        on = on_windows.get(i)
        if on is None:
            on = (_window_values(probs[i], rows, cols, (r0, r1), (c0, c1)) > mask_thr).cpu().numpy()
        ys, xs = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
        if ys.size == 0:
            rois.append(None)
            continue
        x0, y0 = c0 + int(xs[0]), r0 + int(ys[0])
        rois.append((x0, y0, np.ascontiguousarray(on[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1])))
        boxes[i] = (x0, y0, c0 + int(xs[-1]) + 1, r0 + int(ys[-1]) + 1)
    return rois, boxes


def _large_windows(probs: torch.Tensor, windows: list, padded_hw, resized_hw, source_hw,
                   mask_thr: float) -> dict[int, np.ndarray]:
    """bool windows of the instances whose window covers more than LARGE_WINDOW_FRACTION of the
    image, from full-frame resizes of _FULL_CHUNK instances at a time (faster than per-window
    gathers there; the same pixels)."""
    limit = LARGE_WINDOW_FRACTION * source_hw[0] * source_hw[1]
    large = [i for i, w in enumerate(windows) if w is not None and (w[1] - w[0]) * (w[3] - w[2]) > limit]
    out = {}
    for start in range(0, len(large), _FULL_CHUNK):
        chunk = large[start:start + _FULL_CHUNK]
        full = full_masks(probs[chunk], padded_hw, resized_hw, source_hw, mask_thr)
        for mask, i in zip(full, chunk):
            r0, r1, c0, c1 = windows[i]
            out[i] = mask[r0:r1, c0:c1].cpu().numpy()
    return out


def full_masks(probs: torch.Tensor, padded_hw: tuple[int, int], resized_hw: tuple[int, int],
               source_hw: tuple[int, int], mask_thr: float) -> torch.Tensor:
    """bool ``[M, H, W]`` full-frame masks the plain way (mmdet's two full resizes); a reference for
    tests of :func:`mask_rois`."""
    if probs.shape[0] == 0:
        return torch.zeros((0, *source_hw), dtype=torch.bool, device=probs.device)
    up = F.interpolate(probs[None], size=padded_hw, mode='bilinear', align_corners=False)
    up = up[:, :, :resized_hw[0], :resized_hw[1]]
    return F.interpolate(up, size=source_hw, mode='bilinear', align_corners=False)[0] > mask_thr
