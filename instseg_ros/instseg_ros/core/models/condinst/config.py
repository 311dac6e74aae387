"""CondInst preset (ResNet-50 FPN, mmdetection 3.x ``condinst_r50_fpn_ms-poly-90k_coco_instance``)
as a frozen dataclass: network sizes, test preprocessing and ``test_cfg``."""

from __future__ import annotations

from dataclasses import dataclass, replace

from instseg_ros.core.ops.dynamic_masks import DynamicMaskLayout

__all__ = ['PRESETS', 'CondInstConfig', 'get_config']

PRESETS: tuple[str, ...] = ('condinst_r50',)


@dataclass(frozen=True)
class CondInstConfig:
    """One CondInst variant.

    Attributes:
        name: preset name, one of PRESETS.
        num_classes: object classes (sigmoid outputs, no background).
        fpn_channels: FPN output channels (also the box head's channels).
        stacked_convs: 3x3 conv + GroupNorm + ReLU layers of each box-head tower.
        strides: strides of the five FPN levels P3..P7 (input pixels per cell).
        mask_feat_channels: hidden channels of the mask-feature branch (P3..P5 fused).
        num_prototypes: channels of the mask features (inputs of the dynamic convs, besides the
            two relative-coordinate channels).
        dyconv_channels / num_dyconvs: hidden channels and layers of the dynamic 1x1 convs.
        size_of_interest: relative coordinates are divided by ``stride * size_of_interest``.
        mask_feat_stride / mask_out_stride: stride of the mask features (8) and of the mask
            logits after the first aligned upsampling (4).
        test_scale: (long, short) edge limits of mmdet's keep-ratio resize.
        size_divisor: padding multiple of the network input.
        mean_rgb / std_rgb: normalisation, RGB order, 0..255 scale (the network sees RGB).
        nms_pre, score_thr, nms_iou, max_per_img, mask_thr: mmdet's ``test_cfg``.
    """

    name: str = 'condinst_r50'
    num_classes: int = 80
    fpn_channels: int = 256
    stacked_convs: int = 4
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    mask_feat_channels: int = 128
    num_prototypes: int = 8
    dyconv_channels: int = 8
    num_dyconvs: int = 3
    size_of_interest: int = 8
    mask_feat_stride: int = 8
    mask_out_stride: int = 4
    test_scale: tuple[int, int] = (1333, 800)
    size_divisor: int = 32
    mean_rgb: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std_rgb: tuple[float, float, float] = (58.395, 57.12, 57.375)
    nms_pre: int = 1000
    score_thr: float = 0.05
    nms_iou: float = 0.6
    max_per_img: int = 100
    mask_thr: float = 0.5

    @property
    def mask_layout(self) -> DynamicMaskLayout:
        """Layout of the per-instance dynamic convs (169 parameters for the defaults)."""
        return DynamicMaskLayout(self.num_prototypes, self.dyconv_channels, self.num_dyconvs)

    @property
    def num_dynamic_params(self) -> int:
        """Channels of the box head's ``controller`` (169 for the defaults)."""
        return self.mask_layout.num_params


def get_config(preset: str = 'condinst_r50', num_classes: int = 80) -> CondInstConfig:
    """The config of ``preset`` with ``num_classes``; KeyError for an unknown preset."""
    if preset not in PRESETS:
        raise KeyError(f'unknown CondInst preset {preset!r}; known: {list(PRESETS)}')
    return replace(CondInstConfig(name=preset), num_classes=int(num_classes))
