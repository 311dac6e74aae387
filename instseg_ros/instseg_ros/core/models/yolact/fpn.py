"""Feature pyramid (reference ``yolact.py::FPN``): C3..C5 -> P3..P7.

Lateral / prediction layer lists are built over the REVERSED inputs (index 0 = C5 / P5), the
top-down path upsamples bilinearly (align_corners=False) to the exact lateral size, ReLU is applied
to P3..P5 only, and P6 / P7 are stride-2 convs of the ReLU'd P5 / of P6 without activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """forward: list of C3..C5 float [B, Ci, Hi, Wi] -> list [P3, P4, P5, P6, P7] float [B, F, h, w]."""

    def __init__(self, in_channels: list[int], num_features: int = 256, num_downsample: int = 2) -> None:
        super().__init__()
        rev = list(reversed(in_channels))
        self.lat_layers = nn.ModuleList([nn.Conv2d(c, num_features, 1) for c in rev])
        self.pred_layers = nn.ModuleList([nn.Conv2d(num_features, num_features, 3, padding=1) for _ in rev])
        self.downsample_layers = nn.ModuleList(
            [nn.Conv2d(num_features, num_features, 3, stride=2, padding=1) for _ in range(num_downsample)])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        outs: list[torch.Tensor] = []
        x: torch.Tensor | None = None
        for lat, c in zip(self.lat_layers, reversed(features)):  # C5, C4, C3
            lateral = lat(c)
            if x is not None:
                x = F.interpolate(x, size=lateral.shape[-2:], mode='bilinear', align_corners=False)
                lateral = lateral + x
            x = lateral
            outs.append(x)
        outs = [F.relu(pred(p)) for pred, p in zip(self.pred_layers, outs)]
        outs.reverse()  # P3, P4, P5
        for down in self.downsample_layers:
            outs.append(down(outs[-1]))
        return outs
