"""Backbones with the reference state-dict naming: ResNet-18/50/101 (optionally DCNv2) and DarkNet-53.

Every backbone's forward takes x float [B, 3, H, W] and returns a tuple with the output of every
stage ``layers.i`` (stride 4, 8, 16, 32 for ResNet; 2, 4, 8, 16, 32 for DarkNet). ``channels``
lists their channel counts. Each stride-2 step maps a side n to ceil(n / 2).
"""

from __future__ import annotations

import torch
from torch import nn

from instseg_ros.core.config import ModelConfig
from instseg_ros.core.models.yolact.dcn import DCNv2


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3); conv2 may be a DCNv2 (which has a bias)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, use_dcn: bool = False) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if use_dcn:
            self.conv2 = DCNv2(planes, planes, 3, stride=stride, padding=1)
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        needs_proj = stride != 1 or in_channels != out_channels
        self.downsample = _downsample(in_channels, out_channels, stride) if needs_proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs (torchvision naming)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, use_dcn: bool = False) -> None:
        super().__init__()
        if use_dcn:
            raise ValueError('BasicBlock does not support DCN')
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        needs_proj = stride != 1 or in_channels != planes
        self.downsample = _downsample(in_channels, planes, stride) if needs_proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


def uses_dcn(block_index: int, num_blocks: int, dcn_layers: int, dcn_interval: int) -> bool:
    """Reference rule: block 0 iff dcn_layers >= blocks; block i >= 1 iff i + dcn_layers >= blocks
    and i % dcn_interval == 0."""
    if dcn_layers <= 0:
        return False
    if block_index == 0:
        return dcn_layers >= num_blocks
    return block_index + dcn_layers >= num_blocks and block_index % dcn_interval == 0


class ResNetBackbone(nn.Module):
    """ResNet stem + 4 stages; state-dict keys ``layers.{i}.{b}.*`` (created first), ``conv1``, ``bn1``."""

    def __init__(self, blocks: tuple[int, ...], block: type[nn.Module] = Bottleneck,
                 dcn_layers: tuple[int, ...] = (0, 0, 0, 0), dcn_interval: int = 1,
                 width: int = 64) -> None:
        super().__init__()
        self.layers = nn.ModuleList()  # registered before conv1 to match the reference key order
        self.channels: list[int] = []
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = width
        for stage, num_blocks in enumerate(blocks):
            planes = width * 2 ** stage
            stride = 1 if stage == 0 else 2
            stage_blocks = []
            for b in range(num_blocks):
                dcn = uses_dcn(b, num_blocks, dcn_layers[stage], dcn_interval)
                stage_blocks.append(block(in_channels, planes, stride if b == 0 else 1, use_dcn=dcn))
                in_channels = planes * block.expansion
            self.layers.append(nn.Sequential(*stage_blocks))
            self.channels.append(in_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)


def darknet_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BN + LeakyReLU(0.1); keys ``.0`` and ``.1``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True))


class DarkNetBlock(nn.Module):
    """Residual block: conv2(conv1(x)) + x, no activation after the sum."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = darknet_conv(channels, channels // 2, 1)
        self.conv2 = darknet_conv(channels // 2, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class DarkNetBackbone(nn.Module):
    """DarkNet-53: ``_preconv`` (3->32, stride 1) then 5 stages of a stride-2 conv + residual blocks."""

    def __init__(self, blocks: tuple[int, ...] = (1, 2, 8, 8, 4)) -> None:
        super().__init__()
        self.layers = nn.ModuleList()  # registered before _preconv to match the reference key order
        self.channels: list[int] = []
        self._preconv = darknet_conv(3, 32, 3)
        in_channels = 32
        for stage, num_blocks in enumerate(blocks):
            out_channels = 64 * 2 ** stage
            modules = [darknet_conv(in_channels, out_channels, 3, stride=2)]
            modules += [DarkNetBlock(out_channels) for _ in range(num_blocks)]
            self.layers.append(nn.Sequential(*modules))
            self.channels.append(out_channels)
            in_channels = out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self._preconv(x)
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """Backbone for ``cfg.backbone``; the result has a ``channels`` list (per stage)."""
    if cfg.backbone == 'darknet53':
        return DarkNetBackbone(cfg.backbone_blocks)
    block = BasicBlock if cfg.backbone == 'resnet18' else Bottleneck
    return ResNetBackbone(cfg.backbone_blocks, block, cfg.dcn_layers, cfg.dcn_interval,
                          width=cfg.backbone_width)
