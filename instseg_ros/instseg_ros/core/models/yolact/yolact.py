"""YOLACT / YOLACT++ network (reference ``yolact.py::Yolact``) returning raw head outputs.

Attribute names follow the official state-dict keys, in the official order: ``backbone``,
``proto_net``, ``maskiou_net`` (++ only), ``fpn``, ``prediction_layers.0`` (shared head),
``semantic_seg_conv`` (train-only head). Detection / NMS / mask assembly live elsewhere.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from instseg_ros.core.config import ModelConfig
from instseg_ros.core.models.yolact.backbone import build_backbone
from instseg_ros.core.models.yolact.dcn import DCNv2
from instseg_ros.core.models.yolact.fpn import FPN
from instseg_ros.core.models.yolact.head import PredictionHead, make_proto_net
from instseg_ros.core.models.yolact.maskiou import MaskIoUNet
from instseg_ros.core.models.yolact.priors import make_priors

_MAX_CACHED_PRIORS = 4


class YolactOutput(NamedTuple):
    """Raw network outputs for a batch of B images of side S (P priors, C classes incl. background).

    loc: float [B, P, 4] box regression (decode with priors, variances 0.1 / 0.2).
    conf: float [B, P, C] raw class logits, background at index 0 (no softmax).
    coeffs: float [B, P, K] mask coefficients after tanh.
    proto: float [B, Hp, Wp, K] prototypes after ReLU, channels-last (Hp = 2 * P3 height).
    priors: float [P, 4] anchors (cx, cy, w, h) relative to the input (float32 for bf16/fp16 inputs).
    segm: float [B, C-1, h3, w3] semantic-segmentation logits (training mode only, else None).
    """

    loc: torch.Tensor
    conf: torch.Tensor
    coeffs: torch.Tensor
    proto: torch.Tensor
    priors: torch.Tensor
    segm: torch.Tensor | None


class Yolact(nn.Module):
    """YOLACT network for a ``ModelConfig``; forward(x float [B, 3, S, S], normalised RGB) -> YolactOutput."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        f = cfg.fpn_features
        self.backbone = build_backbone(cfg)
        self.proto_net = make_proto_net(f, cfg.mask_dim)
        if cfg.use_maskiou:
            self.maskiou_net = MaskIoUNet(cfg.num_classes)
        self.fpn = FPN([self.backbone.channels[i] for i in cfg.selected_layers], f, cfg.num_downsample)
        self.prediction_layers = nn.ModuleList(
            [PredictionHead(f, cfg.num_anchors, cfg.num_classes, cfg.mask_dim)])
        self.semantic_seg_conv = nn.Conv2d(f, cfg.num_classes - 1, 1)
        self._priors_cache: dict[tuple, torch.Tensor] = {}

    def priors_for(self, feature_sizes: list[tuple[int, int]], device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
        """Anchors float [P, 4] for these FPN sizes, cached on this instance (bounded, per device/dtype/mode)."""
        key = (tuple(feature_sizes), device, dtype, torch.is_inference_mode_enabled())
        priors = self._priors_cache.get(key)
        if priors is None:
            if len(self._priors_cache) >= _MAX_CACHED_PRIORS:
                self._priors_cache.clear()
            cfg = self.cfg
            priors = make_priors(feature_sizes, cfg.pred_scales, cfg.aspect_ratios, cfg.max_size,
                                 cfg.square_anchors, device=device, dtype=dtype)
            self._priors_cache[key] = priors
        return priors

    def forward(self, x: torch.Tensor) -> YolactOutput:
        stages = self.backbone(x)
        pyramid = self.fpn([stages[i] for i in self.cfg.selected_layers])
        proto = F.relu(self.proto_net(pyramid[0])).permute(0, 2, 3, 1).contiguous()
        head = self.prediction_layers[0]
        locs, confs, coeffs = zip(*(head(p) for p in pyramid))
        sizes = [(int(p.shape[-2]), int(p.shape[-1])) for p in pyramid]
        # anchors never in bf16/fp16 (8 / 11 bit mantissas shift boxes by pixels); float64 stays float64
        priors = self.priors_for(sizes, x.device, torch.promote_types(x.dtype, torch.float32))
        segm = self.semantic_seg_conv(pyramid[0]) if self.training else None
        return YolactOutput(loc=torch.cat(locs, 1), conf=torch.cat(confs, 1), coeffs=torch.cat(coeffs, 1),
                            proto=proto, priors=priors, segm=segm)

    def rescore(self, masks_soft: torch.Tensor) -> torch.Tensor:
        """Mask-IoU prediction float [N, C-1] for soft cropped masks float [N, 1, Hp, Wp] (Hp, Wp >= 63)."""
        if not self.cfg.use_maskiou:
            raise RuntimeError(f'preset {self.cfg.name} has no maskiou_net (use_maskiou=False)')
        if masks_soft.shape[0] == 0:
            return masks_soft.new_zeros((0, self.cfg.num_classes - 1))
        return self.maskiou_net(masks_soft)


def init_weights_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Deterministic random init in place (returns ``model``).

    Conv / DCN weights ~ N(0, 1 / fan_in), biases 0, DCN ``conv_offset_mask`` 0 (offsets 0, mask 0.5),
    BatchNorm weight 1, bias 0, running_mean 0, running_var 1. Works on any device incl. 'meta';
    ``generator`` must live on the parameters' device.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, DCNv2)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
        for m in model.modules():  # after the generic pass, which also visited conv_offset_mask
            if isinstance(m, DCNv2):
                m.conv_offset_mask.weight.zero_()
                m.conv_offset_mask.bias.zero_()
    return model
