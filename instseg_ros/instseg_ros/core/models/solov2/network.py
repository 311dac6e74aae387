"""SOLOv2 network (ResNet-50, FPN, SOLOv2 head) whose module names give mmdetection 3.x's
state-dict keys, so that its checkpoints load with ``strict=True``.

``SoloV2.forward`` returns raw tensors only (category logits and dynamic kernels per level, the
unified mask features); decoding lives in :mod:`.postprocess`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from instseg_ros.core.models.solov2.config import SoloV2Config

__all__ = ['ConvNormAct', 'Fpn', 'MaskFeatureBranch', 'ResNet50', 'SoloV2', 'SoloV2Head',
           'coordinate_channels']

_GN_GROUPS = 32


class ConvNormAct(nn.Module):
    """conv -> optional GroupNorm (``gn``) -> optional ReLU (mmcv ConvModule key layout:
    ``conv.weight``, ``conv.bias`` only without norm, ``gn.weight``, ``gn.bias``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: bool = True,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm)
        self.gn = nn.GroupNorm(_GN_GROUPS, out_channels) if norm else None
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        return self.relu(x) if self.relu is not None else x


class ResNet50(nn.Module):
    """ResNet-50, style 'pytorch' (stride on the 3x3 conv), the outputs of the 4 stages.

    Input float ``[B, 3, H, W]``; outputs strides 4, 8, 16, 32 with 256/512/1024/2048 channels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for index, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                          (512, 3, 2)), start=1):
            downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
            layers = [Bottleneck(inplanes, planes, stride, downsample)]
            layers += [Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
            setattr(self, f'layer{index}', nn.Sequential(*layers))
            inplanes = planes * 4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class Fpn(nn.Module):
    """FPN: 1x1 laterals, nearest top-down upsampling to the finer size, 3x3 outputs, and a fifth
    level by stride-2 subsampling of the coarsest (max-pool with kernel 1)."""

    def __init__(self, in_channels: tuple[int, ...] = (256, 512, 1024, 2048), out_channels: int = 256,
                 num_outs: int = 5) -> None:
        super().__init__()
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(ConvNormAct(c, out_channels, 1, norm=False, relu=False)
                                           for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvNormAct(out_channels, out_channels, 3, norm=False, relu=False)
                                       for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode='nearest')
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs


def coordinate_channels(batch: int, height: int, width: int, device: torch.device,
                        dtype: torch.dtype) -> torch.Tensor:
    """float ``[B, 2, H, W]``: x then y, each linearly from -1 to 1 across the map (CoordConv)."""
    xs = torch.linspace(-1, 1, width, device=device, dtype=torch.float32)
    ys = torch.linspace(-1, 1, height, device=device, dtype=torch.float32)
    grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)])
    return grid.to(dtype)[None].expand(batch, 2, height, width)


class MaskFeatureBranch(nn.Module):
    """Unified mask features at stride 4 from FPN levels 0..3 (level 3 with coordinates).

    Level ``i`` has ``max(i, 1)`` convs ``conv{j}``, each (for i >= 1) followed by a 2x bilinear
    upsampling ``upsample{j}``; the sum goes through ``conv_pred`` (1x1 + GN + ReLU).
    """

    def __init__(self, in_channels: int, feat_channels: int, out_channels: int, num_levels: int = 4) -> None:
        super().__init__()
        self.convs_all_levels = nn.ModuleList()
        for level in range(num_levels):
            seq = nn.Sequential()
            for j in range(max(level, 1)):
                first_in = in_channels + (2 if level == num_levels - 1 and level > 0 else 0)
                seq.add_module(f'conv{j}', ConvNormAct(first_in if j == 0 else feat_channels, feat_channels, 3))
                if level > 0:
                    seq.add_module(f'upsample{j}', nn.Upsample(scale_factor=2, mode='bilinear',
                                                               align_corners=False))
            self.convs_all_levels.append(seq)
        self.conv_pred = ConvNormAct(feat_channels, out_channels, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        total = self.convs_all_levels[0](feats[0])
        last = len(self.convs_all_levels) - 1
        for level in range(1, last + 1):
            x = feats[level]
            if level == last:
                b, _, h, w = x.shape
                x = torch.cat([x, coordinate_channels(b, h, w, x.device, x.dtype)], 1)
            total = total + self.convs_all_levels[level](x)
        return self.conv_pred(total)


class SoloV2Head(nn.Module):
    """Category and dynamic-kernel branches on an S x S grid per level, plus the mask features."""

    def __init__(self, cfg: SoloV2Config) -> None:
        super().__init__()
        self.num_grids = tuple(cfg.num_grids)
        c_in, c_head = cfg.fpn_channels, cfg.head_channels
        self.kernel_convs = nn.ModuleList(ConvNormAct(c_in + 2 if i == 0 else c_head, c_head, 3)
                                          for i in range(cfg.stacked_convs))
        self.cls_convs = nn.ModuleList(ConvNormAct(c_in if i == 0 else c_head, c_head, 3)
                                       for i in range(cfg.stacked_convs))
        self.conv_cls = nn.Conv2d(c_head, cfg.num_classes, 3, padding=1)
        self.conv_kernel = nn.Conv2d(c_head, cfg.mask_out_channels, 3, padding=1)
        self.mask_feature_head = MaskFeatureBranch(c_in, cfg.mask_feat_channels, cfg.mask_out_channels)

    @staticmethod
    def _level_inputs(feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Level 0 halved, the last level resized to the previous one's size (bilinear)."""
        out = list(feats)
        out[0] = F.interpolate(feats[0], scale_factor=0.5, mode='bilinear', align_corners=False)
        out[-1] = F.interpolate(feats[-1], size=feats[-2].shape[-2:], mode='bilinear', align_corners=False)
        return out

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        mask_feats = self.mask_feature_head(feats[:4])
        cls_logits, kernels = [], []
        for x, grid in zip(self._level_inputs(feats), self.num_grids):
            b, _, h, w = x.shape
            x = torch.cat([x, coordinate_channels(b, h, w, x.device, x.dtype)], 1)
            x = F.interpolate(x, size=grid, mode='bilinear', align_corners=False)
            cls_feat, kernel_feat = x[:, :-2].contiguous(), x.contiguous()
            for conv in self.kernel_convs:
                kernel_feat = conv(kernel_feat)
            for conv in self.cls_convs:
                cls_feat = conv(cls_feat)
            kernels.append(self.conv_kernel(kernel_feat))
            cls_logits.append(self.conv_cls(cls_feat))
        return cls_logits, kernels, mask_feats


class SoloV2(nn.Module):
    """The whole network; attribute names ``backbone``, ``neck``, ``mask_head`` as mmdet's."""

    def __init__(self, cfg: SoloV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet50()
        self.neck = Fpn(out_channels=cfg.fpn_channels)
        self.mask_head = SoloV2Head(cfg)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """float ``[B, 3, H, W]`` normalised, padded to the size divisor -> (per-level category logits
        ``[B, C, S, S]``, per-level kernels ``[B, E, S, S]``, mask features ``[B, E, H/4, W/4]``)."""
        return self.mask_head(self.neck(self.backbone(images)))
