"""Building blocks of CSPNeXt / CSPNeXtPAFPN with the attribute names of mmdetection 3.x's
state dicts (``conv``/``bn`` pairs, ``depthwise_conv``/``pointwise_conv``, ``main_conv`` ...).

All blocks take and return float ``[B, C, H, W]`` feature maps.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBnAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> SiLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """Depthwise ConvBnAct (``kernel_size``) then pointwise 1x1 ConvBnAct."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise_conv = ConvBnAct(in_channels, in_channels, kernel_size, groups=in_channels)
        self.pointwise_conv = ConvBnAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class CSPNeXtBlock(nn.Module):
    """3x3 ConvBnAct then 5x5 depthwise-separable, plus the input when ``add_identity``."""

    def __init__(self, channels: int, add_identity: bool) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(channels, channels, 3)
        self.conv2 = DepthwiseSeparable(channels, channels, 5)
        self.add_identity = add_identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """Global average -> 1x1 conv (with bias) -> hard sigmoid, multiplied onto the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc(x.mean(dim=(2, 3), keepdim=True)))


class CSPLayer(nn.Module):
    """Cross-stage-partial layer of CSPNeXt blocks.

    ``short_conv`` and ``main_conv`` (1x1) halve the channels (``expand_ratio`` 0.5), ``blocks``
    run on the main branch, the two branches are concatenated (main first), optionally reweighted
    by ``attention``, and ``final_conv`` (1x1) maps to ``out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, add_identity: bool,
                 channel_attention: bool, expand_ratio: float = 0.5) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvBnAct(in_channels, mid, 1)
        self.short_conv = ConvBnAct(in_channels, mid, 1)
        self.final_conv = ConvBnAct(2 * mid, out_channels, 1)
        self.blocks = nn.Sequential(*[CSPNeXtBlock(mid, add_identity) for _ in range(num_blocks)])
        self.attention = ChannelAttention(2 * mid) if channel_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        if self.attention is not None:
            joined = self.attention(joined)
        return self.final_conv(joined)


class SPPBottleneck(nn.Module):
    """1x1 ConvBnAct to half the channels, max pools (5, 9, 13; stride 1) concatenated after the
    input, 1x1 ConvBnAct to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_sizes: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        mid = in_channels // 2
        self.conv1 = ConvBnAct(in_channels, mid, 1)
        self.poolings = nn.ModuleList([nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes])
        self.conv2 = ConvBnAct(mid * (len(kernel_sizes) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *[pool(x) for pool in self.poolings]], dim=1))
