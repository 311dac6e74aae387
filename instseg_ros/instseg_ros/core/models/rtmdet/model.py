"""RTMDet-Ins network: backbone -> neck -> head; ``forward`` returns raw tensors only."""

from __future__ import annotations

import torch
from torch import nn

from instseg_ros.core.models.rtmdet.backbone import CSPNeXt, CSPNeXtPAFPN
from instseg_ros.core.models.rtmdet.config import RtmdetInsConfig
from instseg_ros.core.models.rtmdet.head import HeadOutput, RTMDetInsSepBNHead


class RTMDetIns(nn.Module):
    """Top-level module; state-dict keys ``backbone.*``, ``neck.*``, ``bbox_head.*`` as mmdet's."""

    def __init__(self, cfg: RtmdetInsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = CSPNeXt(cfg)
        self.neck = CSPNeXtPAFPN(cfg)
        self.bbox_head = RTMDetInsSepBNHead(cfg)

    def forward(self, images: torch.Tensor) -> HeadOutput:
        """float ``[B, 3, S, S]`` normalised BGR (S = ``cfg.input_size``) -> :class:`HeadOutput`."""
        return self.bbox_head(self.neck(self.backbone(images)))
