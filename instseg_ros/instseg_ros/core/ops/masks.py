"""Mask assembly of YOLACT (``layers/output_utils.py`` / ``box_utils.crop`` semantics).

Masks are linear combinations of prototypes, passed through a sigmoid, cropped to their (padded) box at
prototype resolution, then upsampled to the source image and binarised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from instseg_ros.core.ops.boxes import sanitize_coordinates


def assemble_masks(proto: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Soft instance masks from prototypes.

    Args:
        proto: float ``[Hp, Wp, K]`` prototypes (channels-last, as the model outputs them).
        coeffs: float ``[N, K]`` mask coefficients.

    Returns:
        float ``[N, Hp, Wp]`` = ``sigmoid(proto @ coeffs.T)`` moved to channels-first, values in (0, 1).
    """
    height, width, _ = proto.shape
    if coeffs.shape[0] == 0:
        return proto.new_zeros((0, height, width))
    return torch.sigmoid(proto @ coeffs.to(proto.dtype).t()).permute(2, 0, 1).contiguous()


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
    inside_x = (cols >= x1[:, None, None]) & (cols < x2[:, None, None])
    inside_y = (rows >= y1[:, None, None]) & (rows < y2[:, None, None])
    return masks * (inside_x & inside_y).to(masks.dtype)


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

    Memory: one float ``[N, h, w]`` temporary on the device of ``masks_soft``.
    """
    return binarize_masks(upsample_masks(masks_soft, size_hw), threshold)
