"""Box utilities of the YOLACT reference (``layers/box_utils.py`` semantics).

Conventions: ``xyxy`` = (x1, y1, x2, y2); ``cxcywh`` = (centre x, centre y, width, height).
Priors are ``cxcywh`` relative to the (square) network input. Areas are ``(x2 - x1) * (y2 - y1)``
(continuous coordinates, no ``+1``).
"""

from __future__ import annotations

import torch

DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)


def point_form(boxes_cxcywh: torch.Tensor) -> torch.Tensor:
    """Convert ``[..., 4]`` (cx, cy, w, h) boxes to (x1, y1, x2, y2); same dtype/device."""
    half_wh = boxes_cxcywh[..., 2:] / 2
    return torch.cat((boxes_cxcywh[..., :2] - half_wh, boxes_cxcywh[..., :2] + half_wh), dim=-1)


def center_size(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Convert ``[..., 4]`` (x1, y1, x2, y2) boxes to (cx, cy, w, h); same dtype/device."""
    return torch.cat(((boxes_xyxy[..., :2] + boxes_xyxy[..., 2:]) / 2,
                      boxes_xyxy[..., 2:] - boxes_xyxy[..., :2]), dim=-1)


def decode(loc: torch.Tensor, priors: torch.Tensor,
           variances: tuple[float, float] = DEFAULT_VARIANCES) -> torch.Tensor:
    """Decode SSD-style regressions into relative ``xyxy`` boxes.

    Args:
        loc: float ``[..., P, 4]`` raw regression (dx, dy, dw, dh).
        priors: float ``[P, 4]`` anchors (cx, cy, w, h), relative.
        variances: (centre variance, size variance).

    Returns:
        float ``[..., P, 4]`` boxes (x1, y1, x2, y2) relative to the input, not clamped.
        ``cxcy = p_xy + loc_xy * v0 * p_wh``; ``wh = p_wh * exp(loc_wh * v1)``.
    """
    priors = priors.to(dtype=loc.dtype)
    centre = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat((top_left, top_left + size), dim=-1)


def encode(matched_xyxy: torch.Tensor, priors: torch.Tensor,
           variances: tuple[float, float] = DEFAULT_VARIANCES) -> torch.Tensor:
    """Regression targets such that ``decode(encode(b, p), p) == b`` (exact inverse of :func:`decode`).

    Args:
        matched_xyxy: float ``[P, 4]`` ground-truth box matched to each prior, relative xyxy.
        priors: float ``[P, 4]`` anchors (cx, cy, w, h), relative.

    Returns:
        float ``[P, 4]`` targets (dx, dy, dw, dh). Degenerate (zero-size) boxes give ``-inf`` size terms.
    """
    priors = priors.to(dtype=matched_xyxy.dtype)
    matched = center_size(matched_xyxy)
    delta_xy = (matched[:, :2] - priors[:, :2]) / (variances[0] * priors[:, 2:])
    delta_wh = torch.log(matched[:, 2:] / priors[:, 2:]) / variances[1]
    return torch.cat((delta_xy, delta_wh), dim=-1)


def box_iou_batched(boxes_a_xyxy: torch.Tensor, boxes_b_xyxy: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU per batch entry.

    Args:
        boxes_a_xyxy: float ``[B, N, 4]``.
        boxes_b_xyxy: float ``[B, M, 4]``.

    Returns:
        float ``[B, N, M]``. Pairs whose union is zero get IoU 0.
    """
    # Coordinate by coordinate on contiguous [B, N] planes ([B, N, 1] against [B, 1, M]): the same
    # arithmetic as on [..., 2] slices, but broadcasting over strided or size-2 dimensions is several
    # times slower on the CPU. In-place steps avoid temporaries; the values are unchanged.
    planes_a = boxes_a_xyxy.permute(2, 0, 1).contiguous()
    planes_b = boxes_b_xyxy.permute(2, 0, 1).contiguous()
    ax1, ay1, ax2, ay2 = (c[:, :, None] for c in planes_a)
    bx1, by1, bx2, by2 = (c[:, None, :] for c in planes_b)
    inter = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    inter.mul_(torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0))
    area_a = (planes_a[2] - planes_a[0]) * (planes_a[3] - planes_a[1])
    area_b = (planes_b[2] - planes_b[0]) * (planes_b[3] - planes_b[1])
    # union >= inter, so a zero union means a zero intersection: 0 / tiny = 0 (no NaN)
    union = (area_a[:, :, None] + area_b[:, None, :]).sub_(inter)
    return inter.div_(union.clamp_(min=torch.finfo(union.dtype).tiny))


def box_iou(boxes_a_xyxy: torch.Tensor, boxes_b_xyxy: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of float ``[N, 4]`` and ``[M, 4]`` xyxy boxes -> float ``[N, M]``."""
    return box_iou_batched(boxes_a_xyxy[None], boxes_b_xyxy[None])[0]


def sanitize_coordinates(coord_a: torch.Tensor, coord_b: torch.Tensor, size_px: int,
                         padding: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale relative coordinates to pixels, order them and clamp to ``[0, size_px]``.

    Args:
        coord_a, coord_b: float ``[N]`` relative coordinates of one axis (either order).
        size_px: image extent along that axis in pixels.
        padding: pixels subtracted from the low and added to the high bound before clamping.

    Returns:
        (low, high) float ``[N]`` pixel bounds, not rounded.
    """
    scaled_a = coord_a * size_px
    scaled_b = coord_b * size_px
    low = (torch.minimum(scaled_a, scaled_b) - padding).clamp(min=0)
    high = (torch.maximum(scaled_a, scaled_b) + padding).clamp(max=size_px)
    return low, high


def sanitize_boxes(boxes_xyxy_rel: torch.Tensor, width: int, height: int,
                   padding: float = 0) -> torch.Tensor:
    """:func:`sanitize_coordinates` of both axes at once: relative ``[N, 4]`` xyxy -> float ``[N, 4]``
    pixel bounds (x_low, y_low, x_high, y_high), same values, fewer operations."""
    size = boxes_xyxy_rel.new_tensor([width, height])
    scaled_a, scaled_b = boxes_xyxy_rel[:, :2] * size, boxes_xyxy_rel[:, 2:] * size
    low = (torch.minimum(scaled_a, scaled_b) - padding).clamp_(min=0)
    high = torch.minimum(torch.maximum(scaled_a, scaled_b) + padding, size)
    return torch.cat((low, high), dim=1)


def boxes_rel_to_pixels(boxes_xyxy_rel: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Relative ``[N, 4]`` xyxy -> pixel xyxy clamped to the image and truncated to integer values.

    Matches the reference output (``sanitize_coordinates`` then ``.long()``) but keeps the input
    float dtype. ``image_size`` is (height, width); x2 may equal width.
    """
    height, width = image_size
    return sanitize_boxes(boxes_xyxy_rel, width, height).trunc_()
