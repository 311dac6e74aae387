"""YOLACT++ mask-IoU re-scoring net (reference ``FastMaskIoUNet``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CHANNELS = (8, 16, 32, 64, 128)


class MaskIoUNet(nn.Module):
    """Five unpadded 3x3 stride-2 convs + 1x1 conv to C-1 classes, ReLU after every conv (last too),
    then a global max pool. Keys ``maskiou_net.{0,2,4,6,8,10}``.

    forward: masks float [N, 1, H, W] (soft, cropped; H, W >= 63) -> predicted IoU float [N, num_classes - 1].
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for c in _CHANNELS:
            layers += [nn.Conv2d(in_channels, c, 3, stride=2), nn.ReLU(inplace=True)]
            in_channels = c
        layers += [nn.Conv2d(in_channels, num_classes - 1, 1), nn.ReLU(inplace=True)]
        self.maskiou_net = nn.Sequential(*layers)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        y = self.maskiou_net(masks)
        return F.max_pool2d(y, kernel_size=y.shape[-2:]).flatten(1)
