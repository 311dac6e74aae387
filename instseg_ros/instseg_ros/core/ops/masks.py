"""Mask assembly of YOLACT (``layers/output_utils.py`` / ``box_utils.crop`` semantics).

Masks are linear combinations of prototypes, passed through a sigmoid, cropped to their (padded) box at
prototype resolution, then upsampled to the source image and binarised.

Fast path (:func:`paste_masks`): a cropped soft mask is exactly 0 outside its support, so its bilinear
upsampling is exactly 0 (not above the threshold) at every output pixel whose source neighbours along x
or along y all lie outside that support. Only a window per instance is therefore interpolated, with the
indices and weights of PyTorch's ``F.interpolate(mode='bilinear', align_corners=False)`` kernel.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from instseg_ros.core.ops.boxes import sanitize_boxes, sanitize_coordinates


def assemble_masks(proto: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Soft instance masks from prototypes.

    Args:
        proto: float ``[Hp, Wp, K]`` prototypes (channels-last, as the model outputs them).
        coeffs: float ``[N, K]`` mask coefficients.

    Returns:
        float ``[N, Hp, Wp]`` = ``sigmoid(proto @ coeffs.T)`` moved to channels-first, values in (0, 1).
    """
    height, width, num_protos = proto.shape
    if coeffs.shape[0] == 0:
        return proto.new_zeros((0, height, width))
    # coeffs @ proto^T gives the channels-first layout directly (same dot products, no transpose copy)
    logits = coeffs.to(proto.dtype) @ proto.reshape(height * width, num_protos).t()
    return torch.sigmoid_(logits).view(-1, height, width)


def crop_masks(masks: torch.Tensor, boxes_xyxy_rel: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """Zero every mask outside its box (reference ``crop``).

    Args:
        masks: float ``[N, H, W]``.
        boxes_xyxy_rel: float ``[N, 4]`` boxes relative to the mask extent (x in [0, 1] spans W).
        padding: pixels added on every side of the scaled box before clamping to the mask.

    Returns:
        float ``[N, H, W]``; pixel (row r, col c) is kept iff ``x1 <= c < x2`` and ``y1 <= r < y2`` with the
        *float* bounds ``x1 = max(min(bx1, bx2) * W - padding, 0)``, ``x2 = min(max(bx1, bx2) * W + padding, W)``
        (same for y with H). Pixel indices are integers 0..W-1 (no half-pixel centre).
    """
    num_masks, height, width = masks.shape
    if num_masks == 0:
        return masks.clone()
    boxes = boxes_xyxy_rel.to(masks.dtype)
    x1, x2 = sanitize_coordinates(boxes[:, 0], boxes[:, 2], width, padding)
    y1, y2 = sanitize_coordinates(boxes[:, 1], boxes[:, 3], height, padding)
    cols = torch.arange(width, device=masks.device, dtype=masks.dtype)[None, None, :]
    rows = torch.arange(height, device=masks.device, dtype=masks.dtype)[None, :, None]
    inside_x = ((cols >= x1[:, None, None]) & (cols < x2[:, None, None])).to(masks.dtype)  # [N, 1, W]
    inside_y = ((rows >= y1[:, None, None]) & (rows < y2[:, None, None])).to(masks.dtype)  # [N, H, 1]
    return (masks * inside_x).mul_(inside_y)  # products with exact 0/1 factors: same as one 0/1 mask


def cropped_soft_masks(proto: torch.Tensor, coeffs: torch.Tensor, boxes_xyxy_rel: torch.Tensor,
                       padding: int = 1) -> tuple[torch.Tensor, np.ndarray]:
    """``crop_masks(assemble_masks(proto, coeffs), boxes_xyxy_rel, padding)`` and where each crop lies.

    On the CPU the sigmoid of ``proto @ coeffs`` is computed only inside each instance's kept block
    (a fraction of the prototype grid for object-sized boxes); elsewhere (GPU) all at once. The values
    are the same dot products, equal to the all-at-once ones up to float rounding.

    Args:
        proto: float ``[Hp, Wp, K]``; coeffs: float ``[N, K]``; boxes_xyxy_rel: float ``[N, 4]`` relative.

    Returns:
        (float ``[N, Hp, Wp]`` cropped soft masks, int64 ``[N, 4]`` host array ``(c0, r0, c1, r1)`` (end
        exclusive) of the kept block of each mask, zeros for an empty crop). All non-zero values lie
        inside the blocks.
    """
    height, width, _ = proto.shape
    num = coeffs.shape[0]
    if num == 0:
        return proto.new_zeros((0, height, width)), np.zeros((0, 4), dtype=np.int64)
    bounds = sanitize_boxes(boxes_xyxy_rel.to(proto.dtype), width, height, padding)
    # integer columns c with x1 <= c < x2 are c0 = ceil(x1) .. ceil(x2) - 1 (same for rows)
    blocks = bounds.ceil_().to(torch.int64).cpu().numpy()
    empty = (blocks[:, 2] <= blocks[:, 0]) | (blocks[:, 3] <= blocks[:, 1])
    blocks[empty] = 0
    if proto.device.type != 'cpu':
        return crop_masks(assemble_masks(proto, coeffs), boxes_xyxy_rel, padding), blocks
    masks = proto.new_zeros((num, height, width))
    # numpy for the many small products (several times less call overhead than torch's on strided views)
    proto_np, coeffs_np, masks_np = proto.numpy(), coeffs.to(proto.dtype).numpy(), masks.numpy()
    placed = [(i, r0, r1, c0, c1) for i, (c0, r0, c1, r1) in enumerate(blocks.tolist()) if c1 > c0]
    if not placed:
        return masks, blocks
    logits = [proto_np[r0:r1, c0:c1] @ coeffs_np[i] for i, r0, r1, c0, c1 in placed]  # [rows, cols]
    probabilities = torch.sigmoid(torch.from_numpy(np.concatenate([block.reshape(-1) for block in logits])))
    start = 0
    for (i, r0, r1, c0, c1), block in zip(placed, logits):
        masks_np[i, r0:r1, c0:c1] = probabilities[start:start + block.size].numpy().reshape(block.shape)
        start += block.size
    return masks, blocks


def upsample_masks(masks: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``, no antialias) of float ``[N, H, W]`` masks to
    ``size_hw`` = (height, width) -> float ``[N, height, width]``."""
    height, width = size_hw
    if masks.shape[0] == 0:
        return masks.new_zeros((0, height, width))
    return F.interpolate(masks[None], size=(height, width), mode='bilinear', align_corners=False)[0]


def binarize_masks(masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """float ``[N, H, W]`` -> bool ``[N, H, W]`` with ``mask > threshold`` (strict)."""
    return masks > threshold


def masks_to_image(masks_soft: torch.Tensor, size_hw: tuple[int, int],
                   threshold: float = 0.5) -> torch.Tensor:
    """Upsample cropped soft masks ``[N, Hp, Wp]`` to the source image and binarise -> bool ``[N, h, w]``.

    Same result as ``binarize_masks(upsample_masks(masks_soft, size_hw), threshold)`` (see
    :func:`paste_masks`), but only the window of each mask that can exceed the threshold is interpolated.
    """
    return paste_masks(masks_soft, size_hw, threshold).masks


Roi = tuple[int, int, np.ndarray]


class PastedMasks(NamedTuple):
    """Result of :func:`paste_masks`.

    Attributes:
        masks: bool ``[N, h, w]`` on the device of the soft masks.
        windows: int64 ``[N, 4]`` CPU tensor ``(x0, y0, x1, y1)`` (end exclusive) of the output pixels
            that were interpolated; every True pixel of ``masks[i]`` lies inside ``windows[i]``.
    """

    masks: torch.Tensor
    windows: torch.Tensor


class _Axis(NamedTuple):
    """Per output index ``u`` of one axis: source neighbours and weights of PyTorch's bilinear kernel
    (read-only host arrays)."""

    index0: np.ndarray   # int64 [out]
    index1: np.ndarray   # int64 [out], index0 or index0 + 1
    weight0: np.ndarray  # float64 [out] holding float32 values (its product with a float32 is exact)
    weight1: np.ndarray  # float32 [out]
    matrix: np.ndarray   # float32 [in, out]: column u holds weight0 at row index0, weight1 at index1


@lru_cache(maxsize=64)
def _axis(in_size: int, out_size: int) -> _Axis:
    """Indices and weights of ``upsample_bilinear2d`` (``align_corners=False``, no scale factor).

    ``scale = float32(in) / out``; ``real = max(fma(scale, u + 0.5, -0.5), 0)`` in float32 (the kernels
    are compiled with fused multiply-adds; the float64 product of two float32 values is exact, so one
    rounding to float32 reproduces it); ``i0 = min(trunc(real), in - 1)``, ``i1 = i0 + (i0 < in - 1)``,
    ``w1 = clamp(real - i0, 0, 1)``, ``w0 = 1 - w1`` (float32). Equal sizes copy (``w0 = 1``, ``w1 = 0``).
    """
    f32 = np.float32
    if in_size == out_size:
        index0 = np.arange(out_size, dtype=np.int64)
        weight1 = np.zeros(out_size, dtype=f32)
    else:
        scale = f32(in_size) / f32(out_size)
        centre = np.arange(out_size, dtype=f32) + f32(0.5)
        real = np.maximum((np.float64(scale) * centre.astype(np.float64) - 0.5).astype(f32), f32(0))
        index0 = np.minimum(real.astype(np.int64), in_size - 1)
        weight1 = np.clip(real - index0.astype(f32), f32(0), f32(1))
    index1 = np.where(index0 < in_size - 1, index0 + 1, index0)
    weight0 = (f32(1) - weight1).astype(np.float64)
    matrix = np.zeros((in_size, out_size), dtype=f32)
    columns = np.arange(out_size)
    np.add.at(matrix, (index0, columns), weight0.astype(f32))
    np.add.at(matrix, (index1, columns), weight1)
    for array in (index0, index1, weight0, weight1, matrix):
        array.setflags(write=False)
    return _Axis(index0, index1, weight0, weight1, matrix)


def _support_bounds(masks: torch.Tensor) -> np.ndarray:
    """int64 ``[N, 4]`` ``(c0, r0, c1, r1)`` (end exclusive) of the non-zero entries; empty -> zeros."""
    magnitude = masks.abs()  # a sum of non-negative floats is 0 iff all are 0 (faster than any/amax)
    rows = (magnitude.sum(dim=2) > 0).cpu().numpy()  # [N, Hp]
    cols = (magnitude.sum(dim=1) > 0).cpu().numpy()  # [N, Wp]
    height, width = rows.shape[1], cols.shape[1]
    bounds = np.stack((cols.argmax(axis=1), rows.argmax(axis=1), width - cols[:, ::-1].argmax(axis=1),
                       height - rows[:, ::-1].argmax(axis=1)), axis=1).astype(np.int64)
    return bounds * rows.any(axis=1)[:, None]


def _windows(support: np.ndarray, axis_x: _Axis, axis_y: _Axis) -> np.ndarray:
    """Output windows ``(x0, y0, x1, y1)``: the output pixels with a source neighbour inside the support
    (both index arrays are non-decreasing)."""
    def span(lo: np.ndarray, hi: np.ndarray, axis: _Axis) -> tuple[np.ndarray, np.ndarray]:
        start = np.searchsorted(axis.index1, lo, side='left')  # first u with i1[u] >= lo
        stop = np.searchsorted(axis.index0, hi, side='left')   # first u with i0[u] >= hi
        empty = hi <= lo
        return np.where(empty, 0, start), np.where(empty, 0, np.maximum(stop, start))

    x0, x1 = span(support[:, 0], support[:, 2], axis_x)
    y0, y1 = span(support[:, 1], support[:, 3], axis_y)
    return np.stack((x0, y0, x1, y1), axis=1).astype(np.int64)


def _lerp_numpy(first: np.ndarray, weight0: np.ndarray, second: np.ndarray,
                weight1: np.ndarray) -> np.ndarray:
    """float32 ``first * weight0 + second * weight1`` rounded as the kernel:
    ``fma(first, weight0, float32(second * weight1))``."""
    total = first * weight0          # float32 x float64 -> exact float64
    total += second * weight1        # float32 product, added in float64
    return total.astype(np.float32)


#: |value - threshold| at or below this is recomputed exactly: the matrix products differ from the
#: kernel by at most ~12 float32 unit roundoffs (7e-7) for values in [0, 1]
_AMBIGUOUS_BAND = 2e-6


def _interpolate_window(soft: np.ndarray, index: int, window: list[int], axis_x: _Axis, axis_y: _Axis,
                        threshold: float) -> np.ndarray | None:
    """bool ``[y1 - y0, x1 - x0]`` binarised upsampling of mask ``index`` inside ``window`` (x0, y0, x1, y1),
    or None for an empty window. ``soft`` is float32 ``[N, Hp, Wp]`` (numpy).

    Two small matrix products with the axes' weight matrices give every value to within a few float32
    ulps of the kernel's; the few values within ``_AMBIGUOUS_BAND`` of the threshold (and non-finite
    ones) are recomputed exactly (:func:`_kernel_values`), so the result is the kernel's.
    """
    x0, y0, x1, y1 = window
    if x1 <= x0 or y1 <= y0:
        return None
    row0, row1 = int(axis_y.index0[y0]), int(axis_y.index1[y1 - 1]) + 1
    col0, col1 = int(axis_x.index0[x0]), int(axis_x.index1[x1 - 1]) + 1
    source = soft[index, row0:row1, col0:col1]         # [ph, pw]
    weights_x = axis_x.matrix[col0:col1, x0:x1]        # [pw, w]
    weights_y = axis_y.matrix[row0:row1, y0:y1].T      # [h, ph]
    (source_h, source_w), height, width = source.shape, y1 - y0, x1 - x0
    if height * source_w < source_h * width:  # cheaper order: along y first (fewer products)
        values = (weights_y @ source) @ weights_x
    else:
        values = weights_y @ (source @ weights_x)
    values -= np.float32(threshold)
    binary = values > 0
    distance = np.abs(values)
    if not distance.min() > _AMBIGUOUS_BAND:  # also when a value is NaN
        rows, cols = np.nonzero(~(distance > _AMBIGUOUS_BAND))
        binary[rows, cols] = _kernel_values(soft[index], rows + y0, cols + x0, axis_x, axis_y) > np.float32(
            threshold)
    return binary


def _kernel_values(soft: np.ndarray, rows: np.ndarray, cols: np.ndarray, axis_x: _Axis,
                   axis_y: _Axis) -> np.ndarray:
    """float32 ``[n]`` interpolated values of output pixels (rows, cols) of one float32 ``[Hp, Wp]`` mask,
    computed as the kernel does: along x on the two source rows, then along y (float64 emulation of
    its fused multiply-adds)."""
    top, bottom = axis_y.index0[rows], axis_y.index1[rows]
    left, right = axis_x.index0[cols], axis_x.index1[cols]
    weight_left, weight_right = axis_x.weight0[cols], axis_x.weight1[cols]
    upper = _lerp_numpy(soft[top, left], weight_left, soft[top, right], weight_right)
    lower = _lerp_numpy(soft[bottom, left], weight_left, soft[bottom, right], weight_right)
    return _lerp_numpy(upper, axis_y.weight0[rows], lower, axis_y.weight1[rows])


def _paste_numpy(masks: torch.Tensor, out: torch.Tensor, windows: np.ndarray, axis_x: _Axis,
                 axis_y: _Axis, threshold: float) -> None:
    """CPU: one instance at a time with numpy on its window (a few microseconds of overhead each)."""
    soft = masks.numpy()
    binary = out.numpy()  # shares memory with ``out``
    for i, window in enumerate(windows.tolist()):
        values = _interpolate_window(soft, i, window, axis_x, axis_y, threshold)
        if values is not None:
            x0, y0, x1, y1 = window
            binary[i, y0:y1, x0:x1] = values


def _lerp_torch(first: torch.Tensor, weight0: torch.Tensor, second: torch.Tensor,
                weight1: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`_lerp_numpy` (``weight0`` float64, the rest float32)."""
    return torch.addcmul((second * weight1).double(), first.double(), weight0).float()


def _paste_batched(masks: torch.Tensor, out: torch.Tensor, windows: np.ndarray, axis_x: _Axis,
                   axis_y: _Axis, threshold: float) -> None:
    """Any device: all instances at once, windows padded to the largest one (few kernel launches).

    A padded window is shifted to stay inside the image; values computed outside the needed window are
    the exact interpolation too, so every written pixel is correct.
    """
    num, height, width = out.shape
    proto_h, proto_w = masks.shape[1:]
    win_h = int((windows[:, 3] - windows[:, 1]).max())
    win_w = int((windows[:, 2] - windows[:, 0]).max())
    if win_h == 0 or win_w == 0:
        return
    out_rows = np.minimum(windows[:, 1], height - win_h)[:, None] + np.arange(win_h)  # [N, h]
    out_cols = np.minimum(windows[:, 0], width - win_w)[:, None] + np.arange(win_w)   # [N, w]
    row0 = axis_y.index0[out_rows[:, 0]]
    proto_rows = int((axis_y.index1[out_rows[:, -1]] + 1 - row0).max())
    row0 = np.minimum(row0, proto_h - proto_rows)
    instance = np.arange(num)[:, None]
    device = masks.device

    def dev(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)

    # horizontal pass on the proto rows [row0, row0 + proto_rows) of each mask -> [N, ph, w]
    source_rows = dev((instance * proto_h + row0[:, None] + np.arange(proto_rows)) * proto_w)[:, :, None]
    flat = masks.reshape(-1)
    horizontal = _lerp_torch(flat.take(source_rows + dev(axis_x.index0[out_cols])[:, None, :]),
                             dev(axis_x.weight0[out_cols])[:, None, :],
                             flat.take(source_rows + dev(axis_x.index1[out_cols])[:, None, :]),
                             dev(axis_x.weight1[out_cols])[:, None, :]).reshape(-1)
    # vertical pass -> [N, h, w]
    offsets = torch.arange(win_w, device=device)

    def rows_of(index: np.ndarray) -> torch.Tensor:
        return dev((instance * proto_rows + index[out_rows] - row0[:, None]) * win_w)[:, :, None] + offsets

    values = _lerp_torch(horizontal.take(rows_of(axis_y.index0)), dev(axis_y.weight0[out_rows])[:, :, None],
                         horizontal.take(rows_of(axis_y.index1)), dev(axis_y.weight1[out_rows])[:, :, None])
    target = dev((instance * height + out_rows) * width)[:, :, None] + dev(out_cols)[:, None, :]
    out.view(-1).put_(target, values > threshold)


def _prepare_windows(masks_soft: torch.Tensor, size_hw: tuple[int, int], support: np.ndarray | None):
    """(contiguous detached masks, x axis, y axis, int64 ``[N, 4]`` output windows) for pasting
    ``masks_soft [N, Hp, Wp]`` at ``size_hw``; the support is scanned from the masks when None."""
    masks = masks_soft.detach().contiguous()
    axis_x, axis_y = _axis(masks.shape[2], size_hw[1]), _axis(masks.shape[1], size_hw[0])
    windows = _windows(_support_bounds(masks) if support is None else support, axis_x, axis_y)
    return masks, axis_x, axis_y, windows


def paste_masks(masks_soft: torch.Tensor, size_hw: tuple[int, int], threshold: float = 0.5,
                method: str = 'auto', support: np.ndarray | None = None) -> PastedMasks:
    """Binarised bilinear upsampling of cropped soft masks, computed only where it can be non-zero.

    Equals ``upsample_masks(masks_soft, size_hw) > threshold`` (PyTorch's bilinear kernel,
    ``align_corners=False``, same source indices and float32 weights, products rounded as its fused
    multiply-adds; bit-identical with the CPU kernel here, other builds may differ by float rounding):
    outside each mask's non-zero support the interpolation is exactly 0, never above ``threshold >= 0``.

    Args:
        masks_soft: float32 ``[N, Hp, Wp]`` (e.g. cropped sigmoid masks), any device (other float
            dtypes take the plain full-frame path).
        size_hw: output (height, width).
        threshold: strict threshold; below 0 (zeros pass) this falls back to the full-frame path.
        method: ``'loop'`` (CPU only: per instance with numpy, cheapest there), ``'batched'`` (any device:
            all instances at once, padded to the largest window; fewest kernel launches) or ``'auto'``
            (loop on CPU, batched elsewhere).
        support: optional int64 ``[N, 4]`` ``(c0, r0, c1, r1)`` blocks holding every non-zero value (e.g.
            from :func:`cropped_soft_masks`); found by scanning the masks when None.

    Returns:
        :class:`PastedMasks` (bool masks on the input device, CPU int64 windows).
    """
    if method not in ('auto', 'loop', 'batched'):
        raise ValueError(f'unknown method {method!r}')
    num = masks_soft.shape[0]
    height, width = int(size_hw[0]), int(size_hw[1])
    if not threshold >= 0 or masks_soft.dtype != torch.float32:
        # zeros pass a negative threshold, other dtypes interpolate in their own precision: plain path
        full = torch.tensor([[0, 0, width, height]], dtype=torch.int64).expand(num, 4).clone()
        return PastedMasks(binarize_masks(upsample_masks(masks_soft, (height, width)), threshold), full)
    if masks_soft.device.type == 'cpu':  # np.zeros gets lazily zeroed pages: cheaper than a memset
        out = torch.from_numpy(np.zeros((num, height, width), dtype=np.bool_))
    else:
        out = torch.zeros((num, height, width), dtype=torch.bool, device=masks_soft.device)
    if num == 0 or height == 0 or width == 0:
        return PastedMasks(out, torch.zeros((num, 4), dtype=torch.int64))
    masks, axis_x, axis_y, windows = _prepare_windows(masks_soft, (height, width), support)
    if method == 'auto':
        method = 'loop' if masks.device.type == 'cpu' else 'batched'
    if method == 'loop' and masks.device.type != 'cpu':
        raise ValueError("method='loop' needs CPU tensors")
    paste = _paste_numpy if method == 'loop' else _paste_batched
    paste(masks, out, windows, axis_x, axis_y, threshold)
    return PastedMasks(out, torch.from_numpy(windows))


def _tight_roi(window: np.ndarray, x0: int, y0: int) -> Roi | None:
    """ROI ``(x0 + left, y0 + top, crop)`` of the True pixels of the bool numpy ``window`` (rows may be
    strided, each row contiguous) whose top-left pixel is frame pixel (x0, y0); None if it has none."""
    if window.size == 0:
        return None
    left, top, width, height = cv2.boundingRect(window.view(np.uint8))  # box of the non-zero pixels
    if width == 0:
        return None
    return (x0 + left, y0 + top, np.ascontiguousarray(window[top:top + height, left:left + width]))


def rois_from_windows(masks: torch.Tensor, windows: torch.Tensor) -> list[Roi | None]:
    """Tight ROIs of bool ``[N, h, w]`` masks whose True pixels lie inside ``windows`` (as returned by
    :func:`paste_masks`); only the windows are read (and copied to the host).

    Returns:
        N entries, as ``instseg_ros.core.encoding.masks_to_rois``: ``(x0, y0, crop)`` with ``crop`` a
        C-contiguous bool numpy array ``[rows, cols]`` of the tight box of the True pixels, or None.
    """
    on_cpu = masks.device.type == 'cpu'
    frames = masks.numpy() if on_cpu else masks
    rois: list[Roi | None] = []
    for i, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        window = frames[i, y0:y1, x0:x1]
        rois.append(_tight_roi(window if on_cpu else window.cpu().numpy(), x0, y0))
    return rois


def paste_mask_rois(masks_soft: torch.Tensor, size_hw: tuple[int, int], threshold: float = 0.5,
                    support: np.ndarray | None = None) -> list[Roi | None]:
    """Tight ROIs of :func:`paste_masks` without building full frames.

    Equals ``rois_from_windows(*paste_masks(masks_soft, size_hw, threshold))`` (and so
    ``encoding.masks_to_rois`` of the pasted masks). On the CPU (float32, ``threshold >= 0``) each
    mask is interpolated into a buffer of its window only, so the cost follows the objects' size, not
    N full frames; elsewhere the masks are pasted on their device and only the windows are copied.

    Args:
        masks_soft: float ``[N, Hp, Wp]`` cropped soft masks, any device.
        size_hw: output (height, width).
        support: optional blocks holding every non-zero value, as for :func:`paste_masks`.

    Returns:
        N entries ``(x0, y0, crop)`` (``crop`` C-contiguous bool numpy ``[rows, cols]``) or None.
    """
    height, width = int(size_hw[0]), int(size_hw[1])
    if masks_soft.device.type != 'cpu' or masks_soft.dtype != torch.float32 or not threshold >= 0:
        pasted = paste_masks(masks_soft, (height, width), threshold, support=support)
        return rois_from_windows(pasted.masks, pasted.windows)
    num = masks_soft.shape[0]
    if num == 0 or height == 0 or width == 0:
        return [None] * num
    masks, axis_x, axis_y, windows = _prepare_windows(masks_soft, (height, width), support)
    soft = masks.numpy()
    rois: list[Roi | None] = []
    for i, window in enumerate(windows.tolist()):
        values = _interpolate_window(soft, i, window, axis_x, axis_y, threshold)
        rois.append(None if values is None else _tight_roi(values, window[0], window[1]))
    return rois
