"""Anchor ("prior") generation, reference ``PredictionModule.make_priors``."""

from __future__ import annotations

import math
from typing import Sequence

import torch


def level_anchor_sizes(scales: Sequence[float], aspect_ratios: Sequence[float], max_size: int,
                       square_anchors: bool) -> list[tuple[float, float]]:
    """(w, h) of the anchors of one cell, relative to ``max_size``, ordered scale-major then aspect ratio.

    w = scale * sqrt(ar) / max_size, h = scale / sqrt(ar) / max_size (h = w if square_anchors).
    """
    sizes = []
    for scale in scales:
        for ar in aspect_ratios:
            r = math.sqrt(ar)
            w = scale * r / max_size
            h = w if square_anchors else scale / r / max_size
            sizes.append((w, h))
    return sizes


def make_priors(feature_sizes: Sequence[tuple[int, int]], pred_scales: Sequence[Sequence[float]],
                aspect_ratios: Sequence[float], max_size: int, square_anchors: bool,
                device: torch.device | str = 'cpu', dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Anchors of all levels, float [P, 4] (cx, cy, w, h) relative to the input, no clipping.

    feature_sizes: (h, w) per level; rows are ordered level, then y, then x, then anchor.
    Values are computed in float64 on the CPU and cast once (the reference builds them from python floats).
    """
    per_level = []
    for (fh, fw), scales in zip(feature_sizes, pred_scales):
        wh = torch.tensor(level_anchor_sizes(scales, aspect_ratios, max_size, square_anchors),
                          dtype=torch.float64)
        cy = (torch.arange(fh, dtype=torch.float64) + 0.5) / fh
        cx = (torch.arange(fw, dtype=torch.float64) + 0.5) / fw
        gy, gx = torch.meshgrid(cy, cx, indexing='ij')
        centers = torch.stack([gx, gy], dim=-1).reshape(-1, 1, 2).expand(-1, wh.shape[0], 2)
        sizes = wh.reshape(1, -1, 2).expand(centers.shape[0], -1, 2)
        per_level.append(torch.cat([centers, sizes], dim=-1).reshape(-1, 4))
    if not per_level:
        return torch.zeros((0, 4), device=device, dtype=dtype)
    return torch.cat(per_level).to(device=device, dtype=dtype)
