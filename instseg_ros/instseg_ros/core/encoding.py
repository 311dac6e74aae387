"""Mask encoding helpers: tight ROI crops, mono8 packing and label images.

Pure numpy: accepts torch tensors but never imports torch itself (slow to load), nor rclpy or
message types. An *ROI* is the triple ``(x0, y0, crop)`` where ``crop`` is a bool ``[h, w]``
array holding the mask pixels of the tight bounding box of the True pixels, whose top-left
pixel is (row ``y0``, column ``x0``) of the full frame. Pixel ``(r, c)`` of ``crop`` is pixel
``(y0 + r, x0 + c)`` of the frame.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is optional here: never imported by this module (it is slow to load)
    import torch

Roi = tuple[int, int, np.ndarray]

#: mono8 values strictly greater than this are object pixels (mask images use 0 / 255).
MONO8_THRESHOLD = 127


def _bounds_numpy(masks: np.ndarray) -> np.ndarray:
    """Per-mask [nonempty, x0, y0, x1, y1] (inclusive) of bool ``[N, H, W]``: int64 [N, 5].

    Uses uint8 max-projections (numpy's bool ``any`` along the last axis is slower)."""
    as_u8 = np.ascontiguousarray(masks).view(np.uint8)
    rows = as_u8.max(axis=2)  # [N, H]
    cols = as_u8.max(axis=1)  # [N, W]
    height, width = rows.shape[1], cols.shape[1]
    return np.stack([rows.max(axis=1).astype(np.int64), cols.argmax(axis=1), rows.argmax(axis=1),
                     (width - 1) - cols[:, ::-1].argmax(axis=1),
                     (height - 1) - rows[:, ::-1].argmax(axis=1)], axis=1)


def _is_tensor(value: Any) -> bool:
    """True for a torch.Tensor (without importing torch: a tensor implies torch is loaded)."""
    torch_module = sys.modules.get('torch')
    return torch_module is not None and isinstance(value, torch_module.Tensor)


def _bounds_torch(masks: 'torch.Tensor') -> np.ndarray:
    """Same as :func:`_bounds_numpy` for a bool tensor on any device (computed there)."""
    torch = sys.modules['torch']
    as_u8 = masks.to(torch.uint8)
    rows = as_u8.amax(dim=2)  # [N, H]
    cols = as_u8.amax(dim=1)  # [N, W]
    height, width = rows.shape[1], cols.shape[1]
    bounds = torch.stack([rows.amax(dim=1).to(torch.int64), cols.argmax(dim=1),
                          rows.argmax(dim=1), (width - 1) - cols.flip(1).argmax(dim=1),
                          (height - 1) - rows.flip(1).argmax(dim=1)], dim=1)
    return bounds.cpu().numpy()


def _as_bool_masks(masks: 'np.ndarray | torch.Tensor') -> 'np.ndarray | torch.Tensor':
    """Validate ``[N, H, W]``; non-bool -> ``!= 0``; CPU tensors -> numpy (zero copy)."""
    if masks.ndim != 3:
        raise ValueError(f'masks must be [N, H, W], got shape {tuple(masks.shape)}')
    if _is_tensor(masks):
        masks = masks if masks.dtype == sys.modules['torch'].bool else masks != 0
        return masks.numpy() if masks.device.type == 'cpu' else masks
    masks = np.asarray(masks)
    return masks if masks.dtype == np.bool_ else masks != 0


def masks_to_rois(masks: 'np.ndarray | torch.Tensor') -> list[Roi | None]:
    """Tight ROI of every mask.

    Bounding rows / columns come from max-projections (``[N, H]`` and ``[N, W]``), so the full
    frames are scanned once; only the crops are copied (to CPU for tensors on another device,
    where the projections run).

    Args:
        masks: bool ``[N, H, W]`` numpy array or torch tensor (non-bool is treated as ``!= 0``).

    Returns:
        N entries, in input order: ``(x0, y0, crop)`` with ``crop`` a C-contiguous bool numpy
        array ``[h, w]`` (h, w >= 1), or ``None`` for a mask without True pixels.
    """
    masks = _as_bool_masks(masks)
    if masks.shape[0] == 0:
        return []
    on_device = _is_tensor(masks)
    bounds = _bounds_torch(masks) if on_device else _bounds_numpy(masks)
    rois: list[Roi | None] = []
    for i, (nonempty, x0, y0, x1, y1) in enumerate(bounds.tolist()):
        if not nonempty:
            rois.append(None)
            continue
        crop = masks[i, y0:y1 + 1, x0:x1 + 1]
        crop = crop.cpu().numpy() if on_device else crop
        rois.append((int(x0), int(y0), np.ascontiguousarray(crop)))
    return rois


def mask_to_roi(mask: 'np.ndarray | torch.Tensor') -> Roi | None:
    """Tight ROI of one bool ``[H, W]`` mask: ``(x0, y0, crop bool [h, w])``; None if empty."""
    if mask.ndim != 2:
        raise ValueError(f'mask must be [H, W], got shape {tuple(mask.shape)}')
    return masks_to_rois(mask[None])[0]


def roi_to_mono8(crop: np.ndarray) -> np.ndarray:
    """bool ``[h, w]`` crop -> uint8 ``[h, w]`` image, 255 = object, 0 = not object."""
    crop = np.asarray(crop)
    as_u8 = crop.view(np.uint8) if crop.dtype == np.bool_ else (crop != 0).view(np.uint8)
    return as_u8 * np.uint8(255)


def mono8_to_mask(image: np.ndarray) -> np.ndarray:
    """uint8 ``[h, w]`` mask image -> bool ``[h, w]``; pixels > 127 are object pixels."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f'mono8 mask must be uint8 [h, w], got {image.dtype} {image.shape}')
    return image > MONO8_THRESHOLD


def paste_roi(x0: int, y0: int, crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """Place a bool ``[h, w]`` crop at (row y0, column x0) of an all-False ``[height, width]`` mask.

    Raises:
        ValueError: the crop does not lie inside the frame.
    """
    crop = np.asarray(crop, dtype=bool)
    h, w = crop.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(f'ROI x0={x0} y0={y0} {w}x{h} (w x h) does not fit in a '
                         f'{width}x{height} (w x h) frame')
    full = np.zeros((height, width), dtype=bool)
    full[y0:y0 + h, x0:x0 + w] = crop
    return full


def label_image(masks: 'np.ndarray | torch.Tensor',
                order: Sequence[int] | None = None) -> np.ndarray:
    """Paint instance masks into one label image.

    Args:
        masks: bool ``[N, H, W]`` numpy array or torch tensor.
        order: instance indices by decreasing priority (e.g. by descending score); default
            ``0..N-1`` (instances are usually already sorted by descending score). Indices not
            listed are not drawn.

    Returns:
        uint16 ``[H, W]``: 0 = background, ``i + 1`` = instance ``i`` (its index in ``masks``,
        not its position in ``order``). Where masks overlap, the instance listed FIRST in
        ``order`` wins (so with descending-score order the higher score wins).
    """
    masks = _as_bool_masks(masks)
    n, height, width = masks.shape
    if n > np.iinfo(np.uint16).max:
        raise ValueError(f'{n} instances do not fit in a uint16 label image')
    order = list(range(n)) if order is None else [int(i) for i in order]
    labels = np.zeros((height, width), dtype=np.uint16)
    if not order:
        return labels
    if min(order) < 0 or max(order) >= n:
        raise ValueError(f'order {order} has indices outside 0..{n - 1}')
    array = masks.cpu().numpy() if _is_tensor(masks) else masks
    for i in reversed(order):  # lowest priority first, so the highest priority is drawn last
        labels[array[i]] = i + 1
    return labels


#: Class label images hold ``class_id + CLASS_LABEL_OFFSET`` (0 = background), so the value of a
#: pixel is also its id in the label_info class map (0 = 'background').
CLASS_LABEL_OFFSET = 1


def winner_index_image(rois: Sequence[Roi | None], scores: Any,
                       image_size: tuple[int, int]) -> np.ndarray:
    """Which instance owns each pixel, painted from the ROIs (no per-instance full frames).

    Args:
        rois: N ``(x0, y0, bool crop [h, w])`` or None (empty mask, never drawn).
        scores: N scores; where masks overlap the higher score wins (ties: the lower index).
        image_size: (height, width) of the frame.

    Returns:
        uint16 ``[H, W]``: 0 = no instance, ``i + 1`` = instance ``i``. Cost: one pass over the
        ROI pixels plus one full-frame allocation.

    Raises:
        ValueError: lengths differ, more than 65535 instances, or an ROI outside the frame.
    """
    height, width = (int(v) for v in image_size)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != len(rois):
        raise ValueError(f'{len(rois)} rois but {scores.shape[0]} scores')
    if len(rois) > np.iinfo(np.uint16).max:
        raise ValueError(f'{len(rois)} instances do not fit in a uint16 label image')
    owner = np.zeros((height, width), dtype=np.uint16)
    order = np.argsort(-scores, kind='stable')
    for i in order[::-1].tolist():  # lowest priority first: the winner is painted last
        roi = rois[i]
        if roi is None:
            continue
        x0, y0, crop = roi
        h, w = crop.shape
        if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
            raise ValueError(f'ROI x0={x0} y0={y0} {w}x{h} (w x h) does not fit in a '
                             f'{width}x{height} (w x h) frame')
        owner[y0:y0 + h, x0:x0 + w][crop] = i + 1
    return owner


def class_label_image(owner: np.ndarray, labels: Any, num_classes: int) -> np.ndarray:
    """Full-frame class ids from a :func:`winner_index_image`.

    Args:
        owner: uint16 ``[H, W]`` (0 = none, i + 1 = instance i).
        labels: N 0-based class ids.
        num_classes: classes of the model (background excluded): mono8 when
            ``num_classes + CLASS_LABEL_OFFSET <= 255``, else mono16.

    Returns:
        uint8 or uint16 ``[H, W]``: 0 = background, ``class_id + 1`` where an instance is.
    """
    dtype = np.uint8 if num_classes + CLASS_LABEL_OFFSET <= np.iinfo(np.uint8).max else np.uint16
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() + CLASS_LABEL_OFFSET
                        > np.iinfo(dtype).max):
        raise ValueError(f'class ids {labels.min()}..{labels.max()} do not fit in {dtype.__name__}')
    lut = np.zeros(labels.shape[0] + 1, dtype=dtype)
    lut[1:] = labels + CLASS_LABEL_OFFSET
    return lut[owner]


def instance_label_image(owner: np.ndarray, track_ids: Any | None = None) -> np.ndarray:
    """Full-frame instance ids (mono16) from a :func:`winner_index_image`.

    Args:
        owner: uint16 ``[H, W]`` (0 = none, i + 1 = instance i).
        track_ids: None (pixels hold ``index + 1``), or N track ids: pixels hold the track id,
            0 for instances not (yet) tracked (id 0), and ids above 65535 wrap to 1..65535
            (``(id - 1) % 65535 + 1``; ids themselves are never reused).

    Returns:
        uint16 ``[H, W]``, 0 = background.
    """
    if track_ids is None:
        return owner.copy()
    ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
    lut = np.zeros(ids.shape[0] + 1, dtype=np.uint16)
    lut[1:] = np.where(ids > 0, (ids - 1) % 65535 + 1, 0)
    return lut[owner]


def check_roi_inside(roi: Roi | None, height: int, width: int) -> None:
    """Raise ValueError when an ROI crop ``(x0, y0, crop [h, w])`` does not lie inside a
    ``height x width`` image (None, an empty mask, always fits)."""
    if roi is None:
        return
    x0, y0, crop = roi
    if x0 < 0 or y0 < 0 or x0 + crop.shape[1] > width or y0 + crop.shape[0] > height:
        raise ValueError(f'ROI x0={x0} y0={y0} {crop.shape[1]}x{crop.shape[0]} (w x h) is outside '
                         f'the {width}x{height} image')
