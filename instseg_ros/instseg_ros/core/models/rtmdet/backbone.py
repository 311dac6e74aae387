"""CSPNeXt (P5) backbone and CSPNeXtPAFPN neck of RTMDet (mmdetection 3.x key layout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from instseg_ros.core.models.rtmdet.config import P5_STAGES, RtmdetInsConfig
from instseg_ros.core.models.rtmdet.layers import ConvBnAct, CSPLayer, SPPBottleneck


class CSPNeXt(nn.Module):
    """Stem (three 3x3 ConvBnAct, the first with stride 2) and four stages (stride-2 conv, SPP on
    the last, CSP layer with channel attention). ``forward`` returns the stage 2, 3, 4 outputs
    (strides 8, 16, 32)."""

    def __init__(self, cfg: RtmdetInsConfig) -> None:
        super().__init__()
        stem = cfg.stem_channels
        self.stem = nn.Sequential(ConvBnAct(3, stem // 2, 3, stride=2), ConvBnAct(stem // 2, stem // 2, 3),
                                  ConvBnAct(stem // 2, stem, 3))
        for index, (cin, cout, _, add_identity, use_spp) in enumerate(P5_STAGES):
            cin, cout = int(cin * cfg.widen_factor), int(cout * cfg.widen_factor)
            layers: list[nn.Module] = [ConvBnAct(cin, cout, 3, stride=2)]
            if use_spp:
                layers.append(SPPBottleneck(cout, cout))
            layers.append(CSPLayer(cout, cout, cfg.stage_blocks(index), add_identity, channel_attention=True))
            self.add_module(f'stage{index + 1}', nn.Sequential(*layers))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """float ``[B, 3, H, W]`` normalised BGR -> features at strides 8, 16, 32."""
        x = self.stage2(self.stage1(self.stem(images)))
        c4 = self.stage3(x)
        return x, c4, self.stage4(c4)


class CSPNeXtPAFPN(nn.Module):
    """Top-down then bottom-up path aggregation, a 3x3 ConvBnAct to ``feat_channels`` per level."""

    def __init__(self, cfg: RtmdetInsConfig) -> None:
        super().__init__()
        chans = cfg.backbone_out_channels
        blocks = cfg.neck_blocks
        self.reduce_layers = nn.ModuleList()
        self.top_down_blocks = nn.ModuleList()
        for idx in (2, 1):
            self.reduce_layers.append(ConvBnAct(chans[idx], chans[idx - 1], 1))
            self.top_down_blocks.append(CSPLayer(chans[idx - 1] * 2, chans[idx - 1], blocks, False, False))
        self.downsamples = nn.ModuleList()
        self.bottom_up_blocks = nn.ModuleList()
        for idx in (0, 1):
            self.downsamples.append(ConvBnAct(chans[idx], chans[idx], 3, stride=2))
            self.bottom_up_blocks.append(CSPLayer(chans[idx] * 2, chans[idx + 1], blocks, False, False))
        self.out_convs = nn.ModuleList([ConvBnAct(c, cfg.feat_channels, 3) for c in chans])

    def forward(self, feats: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Backbone features (strides 8, 16, 32) -> three ``[B, feat_channels, h, w]`` maps."""
        c3, c4, c5 = feats
        reduced5 = self.reduce_layers[0](c5)
        up4 = self.top_down_blocks[0](torch.cat([F.interpolate(reduced5, scale_factor=2.0), c4], 1))
        reduced4 = self.reduce_layers[1](up4)
        p3 = self.top_down_blocks[1](torch.cat([F.interpolate(reduced4, scale_factor=2.0), c3], 1))
        p4 = self.bottom_up_blocks[0](torch.cat([self.downsamples[0](p3), reduced4], 1))
        p5 = self.bottom_up_blocks[1](torch.cat([self.downsamples[1](p4), reduced5], 1))
        return tuple(conv(x) for conv, x in zip(self.out_convs, (p3, p4, p5)))
