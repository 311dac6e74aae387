"""RTMDet-Ins head with separate BatchNorms per level (``bbox_head.*`` keys of mmdetection 3.x).

Layout facts reproduced for strict loading: per level two 3x3 ConvBnAct towers ``cls_convs`` and
``kernel_convs``; the conv weights of ``cls_convs`` are shared across levels (BNs are not);
``reg_convs`` is the *same* module list as ``cls_convs`` (so its keys duplicate them and the box
branch reads the classification tower); 1x1 predictors ``rtm_cls``, ``rtm_reg``, ``rtm_kernel``;
``mask_head`` fuses the three levels into prototypes at stride 8.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from instseg_ros.core.models.rtmdet.config import RtmdetInsConfig
from instseg_ros.core.models.rtmdet.layers import ConvBnAct


class HeadOutput(NamedTuple):
    """Raw head outputs of a batch (input-pixel units where stated).

    Attributes:
        cls_logits: per level float ``[B, C, h, w]`` class logits.
        box_distances: per level float ``[B, 4, h, w]`` (left, top, right, bottom) distances from
            the level's grid points in input pixels (ReLU, times the stride).
        kernels: per level float ``[B, P, h, w]`` dynamic mask parameters (P = 169).
        prototypes: float ``[B, num_prototypes, H/8, W/8]`` mask features.
    """

    cls_logits: tuple[torch.Tensor, ...]
    box_distances: tuple[torch.Tensor, ...]
    kernels: tuple[torch.Tensor, ...]
    prototypes: torch.Tensor


class MaskFeatModule(nn.Module):
    """Levels resized (bilinear) to the stride-8 grid, concatenated, ``fusion_conv`` (1x1, bias),
    four 3x3 ConvBnAct ``stacked_convs``, ``projection`` (1x1, bias) to the prototypes."""

    def __init__(self, channels: int, num_levels: int, num_prototypes: int) -> None:
        super().__init__()
        self.fusion_conv = nn.Conv2d(num_levels * channels, channels, 1)
        self.stacked_convs = nn.Sequential(*[ConvBnAct(channels, channels, 3) for _ in range(4)])
        self.projection = nn.Conv2d(channels, num_prototypes, 1)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        fused = [feats[0], *[F.interpolate(f, size=size, mode='bilinear', align_corners=False)
                             for f in feats[1:]]]
        return self.projection(self.stacked_convs(self.fusion_conv(torch.cat(fused, dim=1))))


def _tower(channels: int) -> nn.ModuleList:
    return nn.ModuleList([ConvBnAct(channels, channels, 3) for _ in range(2)])


class RTMDetInsSepBNHead(nn.Module):
    """The head; ``forward`` maps the neck's three levels to a :class:`HeadOutput`."""

    def __init__(self, cfg: RtmdetInsConfig) -> None:
        super().__init__()
        ch = cfg.feat_channels
        levels = len(cfg.strides)
        self.strides = tuple(cfg.strides)
        self.cls_convs = nn.ModuleList([_tower(ch) for _ in range(levels)])
        self.kernel_convs = nn.ModuleList([_tower(ch) for _ in range(levels)])
        for level in range(1, levels):
            for i in range(2):
                self.cls_convs[level][i].conv = self.cls_convs[0][i].conv
        self.reg_convs = nn.ModuleList(list(self.cls_convs))
        self.rtm_cls = nn.ModuleList([nn.Conv2d(ch, cfg.num_classes, 1) for _ in range(levels)])
        self.rtm_reg = nn.ModuleList([nn.Conv2d(ch, 4, 1) for _ in range(levels)])
        self.rtm_kernel = nn.ModuleList([nn.Conv2d(ch, cfg.num_dynamic_params, 1) for _ in range(levels)])
        self.mask_head = MaskFeatModule(ch, levels, cfg.num_prototypes)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> HeadOutput:
        cls_logits, distances, kernels = [], [], []
        for level, (x, stride) in enumerate(zip(feats, self.strides)):
            cls_feat = x
            for layer in self.cls_convs[level]:
                cls_feat = layer(cls_feat)
            kernel_feat = x
            for layer in self.kernel_convs[level]:
                kernel_feat = layer(kernel_feat)
            cls_logits.append(self.rtm_cls[level](cls_feat))
            # reg_convs is cls_convs: the box branch reads the same tower output
            distances.append(F.relu(self.rtm_reg[level](cls_feat)) * float(stride))
            kernels.append(self.rtm_kernel[level](kernel_feat))
        return HeadOutput(tuple(cls_logits), tuple(distances), tuple(kernels), self.mask_head(feats))
