"""CondInst network: ResNet-50 -> FPN (P3..P7) -> FCOS-style box head with a ``controller``
predicting dynamic mask parameters, and a mask-feature branch (P3..P5 -> stride-8 prototypes).

Module names give mmdetection 3.x's state-dict keys (``backbone.*``, ``neck.*``, ``bbox_head.*``,
``mask_head.mask_feature_head.*``) so checkpoints load with ``strict=True``. ``forward`` returns
raw tensors only; decoding lives in :mod:`.postprocess`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from instseg_ros.core.models.condinst.config import CondInstConfig
from instseg_ros.core.models.solov2.network import ResNet50

__all__ = ['CondInst', 'CondInstOutput', 'ConvNormReLU', 'FcosController', 'Fpn', 'MaskFeatures',
           'aligned_upsample']


def aligned_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """CondInst's "aligned bilinear" x``factor`` upsampling of float ``[B, C, H, W]`` ->
    ``[B, C, factor*H, factor*W]``.

    Output pixel ``u`` samples the input at ``(u - factor // 2) / factor`` (clamped to the first
    row/column, extended past the last by repetition): one replicate row/column appended at the
    bottom/right, an align-corners bilinear resize to ``factor*H + 1``, ``factor // 2``
    replicate rows/columns prepended at the top/left, the first ``factor*H`` (``W``) kept.
    """
    if factor == 1:
        return x
    height, width = x.shape[-2:]
    grown = F.interpolate(F.pad(x, (0, 1, 0, 1), mode='replicate'),
                          size=(factor * height + 1, factor * width + 1), mode='bilinear', align_corners=True)
    shift = factor // 2
    return F.pad(grown, (shift, 0, shift, 0), mode='replicate')[..., :factor * height, :factor * width]


class ConvNormReLU(nn.Module):
    """conv (``conv.*``) -> GroupNorm(32) (``gn.*``) or BatchNorm (``bn.*``) -> ReLU, as mmcv's
    ConvModule names them. ``bias``: whether the conv has one."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.norm_name = norm
        if norm == 'gn':
            self.gn = nn.GroupNorm(32, out_channels)
        else:
            self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, self.norm_name)(self.conv(x)))


class _Conv(nn.Module):
    """A conv under the ``conv`` attribute (mmcv ConvModule without norm/activation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Fpn(nn.Module):
    """FPN over C3..C5 (1x1 laterals, nearest top-down to the finer size, 3x3 outputs) plus P6 =
    stride-2 3x3 conv of P5's output and P7 = the same of ReLU(P6): five levels, strides 8..128."""

    def __init__(self, in_channels: tuple[int, ...] = (512, 1024, 2048), channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(_Conv(c, channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList([_Conv(channels, channels, 3) for _ in in_channels]
                                       + [_Conv(channels, channels, 3, stride=2) for _ in range(2)])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """ResNet outputs (strides 4..32; the first is unused) -> five float ``[B, 256, h, w]``."""
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats[1:])]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode='nearest')
        outs = [self.fpn_convs[i](lat) for i, lat in enumerate(laterals)]
        outs.append(self.fpn_convs[3](outs[-1]))
        outs.append(self.fpn_convs[4](F.relu(outs[-1])))
        return outs


class _Scale(nn.Module):
    """One learnable scalar ``scale`` multiplying its input (mmcv's Scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class FcosController(nn.Module):
    """Box head shared by the five levels: ``cls_convs`` / ``reg_convs`` towers (3x3 conv with
    bias + GN + ReLU), 3x3 predictors ``conv_cls``, ``conv_reg``, ``conv_centerness`` (on the box
    tower) and ``controller`` (dynamic mask parameters, on the box tower); ``scales`` per level."""

    def __init__(self, cfg: CondInstConfig) -> None:
        super().__init__()
        ch = cfg.fpn_channels
        self.strides = tuple(cfg.strides)
        self.cls_convs = nn.ModuleList(ConvNormReLU(ch, ch, 'gn', True) for _ in range(cfg.stacked_convs))
        self.reg_convs = nn.ModuleList(ConvNormReLU(ch, ch, 'gn', True) for _ in range(cfg.stacked_convs))
        self.conv_cls = nn.Conv2d(ch, cfg.num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(ch, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(ch, 1, 3, padding=1)
        self.scales = nn.ModuleList(_Scale() for _ in cfg.strides)
        self.controller = nn.Conv2d(ch, cfg.num_dynamic_params, 3, padding=1)

    def forward_level(self, x: torch.Tensor, level: int) -> tuple[torch.Tensor, ...]:
        """One level float ``[B, 256, h, w]`` -> (class logits ``[B, C, h, w]``, distances
        ``[B, 4, h, w]`` in input pixels, centerness logits ``[B, 1, h, w]``, params ``[B, P, h, w]``)."""
        cls_feat, reg_feat = x, x
        for layer in self.cls_convs:
            cls_feat = layer(cls_feat)
        for layer in self.reg_convs:
            reg_feat = layer(reg_feat)
        distances = self.scales[level](self.conv_reg(reg_feat)).float().clamp(min=0) * float(self.strides[level])
        return (self.conv_cls(cls_feat), distances, self.conv_centerness(reg_feat), self.controller(reg_feat))


class MaskFeatures(nn.Module):
    """``mask_feature_head``: P3, P4, P5 each through a 3x3 conv + BN + ReLU
    (``convs_all_levels.{i}.conv{i}``), P4/P5 aligned-upsampled to P3's size and summed, four
    3x3 conv + BN + ReLU (``conv_branch``), 1x1 ``conv_pred`` -> prototypes at stride 8."""

    def __init__(self, cfg: CondInstConfig) -> None:
        super().__init__()
        ch, hidden = cfg.fpn_channels, cfg.mask_feat_channels
        self.convs_all_levels = nn.ModuleList()
        for level in range(3):
            seq = nn.Sequential()
            seq.add_module(f'conv{level}', ConvNormReLU(ch, hidden, 'bn', False))
            self.convs_all_levels.append(seq)
        self.conv_branch = nn.Sequential(*[ConvNormReLU(hidden, hidden, 'bn', False) for _ in range(4)])
        self.conv_pred = nn.Conv2d(hidden, cfg.num_prototypes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """FPN levels (P3 first) -> float ``[B, K, H/8, W/8]``."""
        total = self.convs_all_levels[0](feats[0])
        for level in (1, 2):
            x = self.convs_all_levels[level](feats[level])
            total = total + aligned_upsample(x, total.shape[-2] // x.shape[-2])
        return self.conv_pred(self.conv_branch(total))


class _MaskHead(nn.Module):
    """Holds ``mask_feature_head`` (the key prefix ``mask_head.mask_feature_head.*``)."""

    def __init__(self, cfg: CondInstConfig) -> None:
        super().__init__()
        self.mask_feature_head = MaskFeatures(cfg)


class CondInstOutput(NamedTuple):
    """Raw outputs of a batch.

    Attributes:
        cls_logits: per level float ``[B, C, h, w]``.
        box_distances: per level float ``[B, 4, h, w]`` (left, top, right, bottom) input pixels.
        centerness: per level float ``[B, 1, h, w]`` logits.
        params: per level float ``[B, P, h, w]`` dynamic mask parameters (P = 169).
        prototypes: float ``[B, K, H/8, W/8]`` mask features.
    """

    cls_logits: tuple[torch.Tensor, ...]
    box_distances: tuple[torch.Tensor, ...]
    centerness: tuple[torch.Tensor, ...]
    params: tuple[torch.Tensor, ...]
    prototypes: torch.Tensor


class CondInst(nn.Module):
    """The whole network; ``forward`` maps float ``[B, 3, H, W]`` normalised RGB (H, W multiples
    of 32) to a :class:`CondInstOutput`."""

    def __init__(self, cfg: CondInstConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet50()
        self.neck = Fpn(channels=cfg.fpn_channels)
        self.bbox_head = FcosController(cfg)
        self.mask_head = _MaskHead(cfg)

    def forward(self, images: torch.Tensor) -> CondInstOutput:
        feats = self.neck(self.backbone(images))
        levels = [self.bbox_head.forward_level(f, i) for i, f in enumerate(feats)]
        cls_logits, distances, centerness, params = (tuple(t) for t in zip(*levels))
        prototypes = self.mask_head.mask_feature_head(feats[:3])
        return CondInstOutput(cls_logits, distances, centerness, params, prototypes)
