"""Dynamic-kernel instance masks (RTMDet-Ins, CondInst): per-instance 1x1-conv "mask heads" whose
weights are predicted by the detector, evaluated over shared prototypes, then resampled straight
into tight per-instance ROIs of the source image.

Three steps, each usable alone:

1. :func:`dynamic_mask_logits` - parameters ``[N, P]`` (P = 169 for 8 prototypes, 8 channels,
   3 layers) -> mask logits ``[N, Hg, Wg]`` on the prototype grid. The input of the first layer is
   ``[rel_x, rel_y, proto_0 .. proto_{K-1}]`` (relative coordinates first), ReLU between layers,
   none after the last. Batched einsum over instances, no Python loop over instances: exportable
   to ONNX.
2. :func:`resample_taps` - the per-axis linear map from the prototype grid to source pixels of
   any chain of separable linear resamplings (``F.interpolate`` bilinear, crops, CondInst's
   aligned bilinear ...), found by resampling an identity basis, so PyTorch's own index maths
   is reproduced exactly. Each output pixel reads a few adjacent grid cells (<= 4 for two
   bilinear steps) with non-negative weights summing to 1.
3. :func:`mask_rois` - for each instance, the output window that can exceed the threshold
   (every output value is a convex combination of grid values, so a pixel can exceed the logit
   threshold only if a grid cell it reads does), evaluated only inside that window and shrunk to
   the tight box of its True pixels: ``(x0, y0, crop)`` ROIs as ``RoiDetections`` holds them,
   without N full-frame masks. The grid may hold logits (RTMDet-Ins: sigmoid after the
   resampling) or probabilities (``probabilities=True``; CondInst applies the sigmoid between
   its two upsamplings, so the grid passed here is already past the sigmoid).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import cv2
import numpy as np
import torch

from instseg_ros.core.ops.masks import Roi

__all__ = ['AxisTaps', 'DynamicMaskLayout', 'dynamic_mask_logits', 'mask_rois', 'relative_coordinates',
           'resample_taps', 'split_dynamic_params']


class DynamicMaskLayout(NamedTuple):
    """Shape of the dynamic mask head: ``num_prototypes`` (+2 coordinate channels) in,
    ``channels`` hidden, ``num_layers`` 1x1 convs, one output channel."""

    num_prototypes: int = 8
    channels: int = 8
    num_layers: int = 3

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(in, out) channels of each layer, e.g. [(10, 8), (8, 8), (8, 1)]."""
        sizes = [self.num_prototypes + 2] + [self.channels] * (self.num_layers - 1) + [1]
        return list(zip(sizes[:-1], sizes[1:]))

    @property
    def num_params(self) -> int:
        """Parameters per instance: all weights then all biases (169 for the defaults)."""
        return sum(i * o + o for i, o in self.layer_sizes())


def split_dynamic_params(params: torch.Tensor, layout: DynamicMaskLayout = DynamicMaskLayout()
                         ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Split ``[N, P]`` parameters into per-layer weights ``[N, out, in]`` and biases ``[N, out]``.

    The flat layout is every layer's weights (row-major ``[out, in]``) followed by every layer's
    biases: for the defaults 80, 64, 8 weights then 8, 8, 1 biases.
    """
    sizes = layout.layer_sizes()
    if params.shape[-1] != layout.num_params:
        raise ValueError(f'expected {layout.num_params} dynamic parameters, got {params.shape[-1]}')
    counts = [i * o for i, o in sizes] + [o for _, o in sizes]
    chunks = torch.split(params, counts, dim=1)
    num = params.shape[0]
    weights = [w.reshape(num, o, i) for w, (i, o) in zip(chunks[:len(sizes)], sizes)]
    biases = [b.reshape(num, o) for b, (_, o) in zip(chunks[len(sizes):], sizes)]
    return weights, biases


def relative_coordinates(centers_xy: torch.Tensor, norms: torch.Tensor, grid_hw: tuple[int, int],
                         grid_stride: float, grid_offset: float = 0.0) -> torch.Tensor:
    """``(center - cell) / norm`` per instance and grid cell.

    Args:
        centers_xy: float ``[N, 2]`` instance points (x, y) in input pixels.
        norms: float ``[N]`` divisor per instance (RTMDet-Ins: prior stride * 8).
        grid_hw: (Hg, Wg) of the prototype grid.
        grid_stride: input pixels per grid cell; cell (r, c) sits at
            ``((c + grid_offset) * grid_stride, (r + grid_offset) * grid_stride)``.

    Returns:
        float ``[N, 2, Hg * Wg]`` (x then y), dtype and device of ``centers_xy``.
    """
    height, width = grid_hw
    dev, dt = centers_xy.device, centers_xy.dtype
    xs = (torch.arange(width, device=dev, dtype=dt) + grid_offset) * grid_stride
    ys = (torch.arange(height, device=dev, dtype=dt) + grid_offset) * grid_stride
    cells = torch.stack((xs.repeat(height), ys.repeat_interleave(width)), dim=0)  # [2, Hg*Wg]
    return (centers_xy[:, :, None] - cells[None]) / norms[:, None, None]


def dynamic_mask_logits(params: torch.Tensor, prototypes: torch.Tensor, centers_xy: torch.Tensor,
                        norms: torch.Tensor, grid_stride: float, grid_offset: float = 0.0,
                        layout: DynamicMaskLayout = DynamicMaskLayout()) -> torch.Tensor:
    """Mask logits of N instances on the prototype grid of one image.

    Args:
        params: float ``[N, P]`` dynamic parameters (see :func:`split_dynamic_params`).
        prototypes: float ``[K, Hg, Wg]`` prototypes of the image (K = ``layout.num_prototypes``).
        centers_xy, norms, grid_stride, grid_offset: see :func:`relative_coordinates`.

    Returns:
        float ``[N, Hg, Wg]`` logits (dtype of ``prototypes``); ``[0, Hg, Wg]`` for no instance.
    """
    num = params.shape[0]
    height, width = prototypes.shape[-2:]
    if num == 0:
        return prototypes.new_zeros((0, height, width))
    weights, biases = split_dynamic_params(params.to(prototypes.dtype), layout)
    coords = relative_coordinates(centers_xy.to(prototypes.dtype), norms.to(prototypes.dtype),
                                  (height, width), grid_stride, grid_offset)  # [N, 2, HW]
    flat = prototypes.reshape(1, layout.num_prototypes, height * width).expand(num, -1, -1)
    x = torch.cat((coords, flat), dim=1)  # [N, 2 + K, HW]
    for index, (weight, bias) in enumerate(zip(weights, biases)):
        x = torch.baddbmm(bias[:, :, None], weight, x)  # [N, out, HW]
        if index < len(weights) - 1:
            x = torch.relu(x)
    return x.reshape(num, height, width)


class AxisTaps(NamedTuple):
    """Linear map of one axis, grid -> output: ``out[u] = sum_g matrix[u, g] * grid[g]``.

    Attributes:
        matrix: float32 ``[out, in]``, non-negative, each row a few adjacent non-zeros summing to 1.
        first: int64 ``[out]`` smallest grid index read with a non-zero weight (non-decreasing).
        last: int64 ``[out]`` largest such index (non-decreasing).
    """

    matrix: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor


def resample_taps(in_size: int, resample: Callable[[torch.Tensor], torch.Tensor],
                  out_size: int | None = None) -> AxisTaps:
    """Taps of a separable linear resampling along one axis, measured on an identity basis.

    Args:
        in_size: grid length along the axis.
        resample: maps float32 ``[1, in_size, in_size, 1]`` (channel c = unit vector at row c) to
            ``[1, in_size, L, W']``, resampling dim 2 exactly as the model resamples that axis
            (column 0 of the result is read), e.g. ``lambda t: F.interpolate(t, size=(640, 1),
            mode='bilinear')`` followed by more steps. It must be order-preserving (no flips) with
            non-negative weights, as interpolations and crops are; :func:`mask_rois` relies on it.
        out_size: keep the first ``out_size`` outputs (a crop; None keeps all ``L``).

    Returns:
        :class:`AxisTaps` on the CPU.
    """
    basis = torch.eye(in_size, dtype=torch.float32).reshape(1, in_size, in_size, 1)
    matrix = resample(basis)[0, :, :, 0].transpose(0, 1)  # [L, in]
    if out_size is not None:
        matrix = matrix[:out_size]
    nonzero = matrix != 0
    positions = torch.arange(in_size).expand_as(matrix)
    first = torch.where(nonzero, positions, in_size).amin(dim=1).clamp(max=in_size - 1)
    last = torch.where(nonzero, positions, -1).amax(dim=1).clamp(min=0)
    return AxisTaps(matrix.contiguous(), first, last)


def _support_windows(logits: torch.Tensor, level: float, taps_y: AxisTaps, taps_x: AxisTaps
                     ) -> np.ndarray:
    """int64 ``[N, 4]`` output windows ``(x0, y0, x1, y1)`` (end exclusive) holding every output
    value that can exceed ``level``; ``x1 <= x0`` marks an instance with none."""
    above = logits > level  # [N, Hg, Wg]
    rows, cols = above.any(dim=2).cpu(), above.any(dim=1).cpu()
    num = logits.shape[0]
    windows = np.zeros((num, 4), dtype=np.int64)
    has_any = rows.any(dim=1)
    if not bool(has_any.any()):
        return windows
    positions_r, positions_c = torch.arange(rows.shape[1]), torch.arange(cols.shape[1])
    row_lo = torch.where(rows, positions_r, rows.shape[1]).amin(dim=1)
    row_hi = torch.where(rows, positions_r, -1).amax(dim=1)
    col_lo = torch.where(cols, positions_c, cols.shape[1]).amin(dim=1)
    col_hi = torch.where(cols, positions_c, -1).amax(dim=1)
    y0 = torch.searchsorted(taps_y.last, row_lo, right=False)
    y1 = torch.searchsorted(taps_y.first, row_hi, right=True)
    x0 = torch.searchsorted(taps_x.last, col_lo, right=False)
    x1 = torch.searchsorted(taps_x.first, col_hi, right=True)
    windows[:] = torch.stack((x0, y0, x1, y1), dim=1).numpy()
    windows[~has_any.numpy()] = 0
    return windows


def _resample_windows(logits: torch.Tensor, origin_xy: torch.Tensor, size_hw: tuple[int, int],
                      taps_y: AxisTaps, taps_x: AxisTaps) -> torch.Tensor:
    """float ``[n, h, w]``: the output window of each instance starting at ``origin_xy`` (int64
    ``[n, 2]``) as two batched matmuls (rows past the output repeat the last one; callers ignore
    them)."""
    height, width = size_hw
    dev, dtype = logits.device, logits.dtype
    cols = (origin_xy[:, :1] + torch.arange(width)).clamp(max=taps_x.matrix.shape[0] - 1)  # [n, w]
    rows = (origin_xy[:, 1:] + torch.arange(height)).clamp(max=taps_y.matrix.shape[0] - 1)  # [n, h]
    along_x = torch.bmm(logits, taps_x.matrix[cols].to(dev, dtype).transpose(1, 2))  # [n, Hg, w]
    return torch.bmm(taps_y.matrix[rows].to(dev, dtype), along_x)  # [n, h, w]


def _chunks(windows: np.ndarray, order: np.ndarray, max_elements: int) -> list[np.ndarray]:
    """Instance index groups (in ``order``) whose padded windows hold at most ``max_elements``
    values (a single instance may exceed it)."""
    groups: list[np.ndarray] = []
    start, max_h, max_w = 0, 0, 0
    for pos, i in enumerate(order):
        h, w = int(windows[i, 3] - windows[i, 1]), int(windows[i, 2] - windows[i, 0])
        new_h, new_w = max(max_h, h), max(max_w, w)
        if pos > start and (pos - start + 1) * new_h * new_w > max_elements:
            groups.append(order[start:pos])
            start, new_h, new_w = pos, h, w
        max_h, max_w = new_h, new_w
    if start < len(order):
        groups.append(order[start:])
    return groups


def _tight(crop: np.ndarray, x0: int, y0: int) -> Roi | None:
    left, top, width, height = cv2.boundingRect(crop.view(np.uint8))
    if width == 0:
        return None
    return (x0 + left, y0 + top, np.ascontiguousarray(crop[top:top + height, left:left + width]))


def mask_rois(logits: torch.Tensor, taps_y: AxisTaps, taps_x: AxisTaps, threshold: float = 0.5,
              max_elements: int = 1 << 22, probabilities: bool = False) -> list[Roi | None]:
    """Tight ROIs of ``sigmoid(resample(logits)) > threshold`` without full frames (compared as
    ``resample(logits) > logit(threshold)``); with ``probabilities=True`` the grid already holds
    probabilities (CondInst resamples after the sigmoid) and ``resample(grid) > threshold``.

    Args:
        logits: float ``[N, Hg, Wg]`` grid logits (any device), or probabilities (see above).
        taps_y / taps_x: :func:`resample_taps` of the rows / columns (grid -> source pixels).
        threshold: probability threshold in (0, 1) (strict ``>``, as mmdet's ``mask_thr_binary``).
        max_elements: values evaluated per batched step (memory bound; instances are grouped by
            window size, a Python loop over groups only).
        probabilities: the grid holds probabilities in [0, 1], compared with ``threshold`` as is.

    Returns:
        N entries ``(x0, y0, crop)``: ``crop`` a C-contiguous bool numpy ``[rows, cols]`` whose
        pixel (r, c) is source pixel (y0 + r, x0 + c), the tight box of the True pixels; or None.
    """
    num = logits.shape[0]
    if num == 0:
        return []
    if not 0.0 < threshold < 1.0:
        raise ValueError(f'threshold must be in (0, 1), got {threshold}')
    if probabilities:
        exact_level, level = threshold, threshold - 1e-5  # margin for float rounding
    else:
        exact_level = math.log(threshold / (1.0 - threshold))  # sigmoid(v) > t  <=>  v > logit(t)
        level = exact_level - 1e-4  # support margin for float rounding
    windows = _support_windows(logits, level, taps_y, taps_x)
    sizes = (windows[:, 2] - windows[:, 0]).clip(0) * (windows[:, 3] - windows[:, 1]).clip(0)
    rois: list[Roi | None] = [None] * num
    order = np.argsort(-sizes, kind='stable')
    order = order[sizes[order] > 0]
    for group in _chunks(windows, order, max_elements):
        spans = windows[group]
        height, width = int((spans[:, 3] - spans[:, 1]).max()), int((spans[:, 2] - spans[:, 0]).max())
        origin = torch.from_numpy(spans[:, :2].copy())
        values = _resample_windows(logits[torch.from_numpy(group).to(logits.device)], origin,
                                   (height, width), taps_y, taps_x)
        binary = (values > exact_level).cpu().numpy()
        for k, i in enumerate(group.tolist()):
            x0, y0, x1, y1 = windows[i].tolist()
            rois[i] = _tight(binary[k, :y1 - y0, :x1 - x0], x0, y0)
    return rois
