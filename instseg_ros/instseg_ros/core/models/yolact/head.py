"""Proto net and the shared prediction head (reference ``Yolact.proto_net``, ``PredictionModule``)."""

from __future__ import annotations

import torch
from torch import nn


def make_proto_net(in_channels: int, mask_dim: int) -> nn.Sequential:
    """Proto net with the reference indices: convs at 0, 2, 4, 8, 10 (6 = 2x bilinear upsample).

    forward: P3 float [B, F, h, w] -> float [B, mask_dim, 2h, 2w] (no final activation).
    """
    f = in_channels
    return nn.Sequential(
        nn.Conv2d(f, f, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(f, f, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(f, f, 3, padding=1), nn.ReLU(inplace=True),
        nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False), nn.ReLU(inplace=True),
        nn.Conv2d(f, f, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(f, mask_dim, 1))


class PredictionHead(nn.Module):
    """Shared head applied to every FPN level.

    forward: x float [B, F, h, w] -> (loc [B, h*w*A, 4], conf [B, h*w*A, C] raw logits,
    coeffs [B, h*w*A, K] after tanh), rows ordered (y, x, anchor); channels anchor-major.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, mask_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.mask_dim = mask_dim
        self.upfeature = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.mask_layer = nn.Conv2d(in_channels, num_anchors * mask_dim, 3, padding=1)

    @staticmethod
    def _flatten(t: torch.Tensor, width: int) -> torch.Tensor:
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.upfeature(x)
        loc = self._flatten(self.bbox_layer(x), 4)
        conf = self._flatten(self.conf_layer(x), self.num_classes)
        coeffs = torch.tanh(self._flatten(self.mask_layer(x), self.mask_dim))
        return loc, conf, coeffs
