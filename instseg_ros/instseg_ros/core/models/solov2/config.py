"""SOLOv2 presets: one frozen dataclass per architecture (mmdetection 3.x layouts).

``solov2_r50``: mmdet's ``solov2_r50_fpn_1x_coco.py`` and ``solov2_r50_fpn_ms-3x_coco.py`` (same
network, different training schedule). ``solov2_light_r50``: ``solov2-light_r50_fpn_ms-3x_coco.py``
(2 stacked head convs of 256 channels, 128 mask-feature channels, test scale 768x448).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ['PRESETS', 'SoloV2Config', 'preset_config']

PRESETS = ('solov2_r50', 'solov2_light_r50')


@dataclass(frozen=True)
class SoloV2Config:
    """One SOLOv2 variant (ResNet-50 + FPN + SOLOv2 head).

    Attributes:
        name: preset name, one of PRESETS.
        num_classes: object classes (sigmoid outputs, no background).
        stacked_convs: convs in each of the kernel and category branches.
        head_channels: channels of those convs.
        mask_feat_channels: hidden channels of the unified mask-feature branch.
        mask_out_channels: channels of the mask features (= dynamic 1x1 kernel length).
        num_grids: S x S grid of each of the 5 levels.
        strides: stride of each level, the minimum mask area (feature pixels) of its instances.
        fpn_channels: FPN output channels.
        test_scale: (long, short) edge limits of the keep-ratio resize, mmdet's ``Resize.scale``.
        size_divisor: padding multiple of the network input.
        mean_rgb, std_rgb: input normalisation (RGB order, 0..255 scale).
        score_thr, mask_thr, filter_thr, nms_pre, max_per_img, kernel, sigma: mmdet ``test_cfg``.
    """

    name: str
    num_classes: int = 80
    stacked_convs: int = 4
    head_channels: int = 512
    mask_feat_channels: int = 128
    mask_out_channels: int = 256
    num_grids: tuple[int, ...] = (40, 36, 24, 16, 12)
    strides: tuple[int, ...] = (8, 8, 16, 32, 32)
    fpn_channels: int = 256
    test_scale: tuple[int, int] = (1333, 800)
    size_divisor: int = 32
    mean_rgb: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std_rgb: tuple[float, float, float] = (58.395, 57.12, 57.375)
    score_thr: float = 0.1
    mask_thr: float = 0.5
    filter_thr: float = 0.05
    nms_pre: int = 500
    max_per_img: int = 100
    kernel: str = 'gaussian'
    sigma: float = 2.0

    def __post_init__(self) -> None:
        if self.name not in PRESETS:
            raise ValueError(f'unknown SOLOv2 preset {self.name!r}; known: {list(PRESETS)}')
        if self.num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {self.num_classes}')
        if len(self.num_grids) != 5 or len(self.strides) != 5:
            raise ValueError('SOLOv2 has 5 levels: num_grids and strides need 5 entries')
        if self.kernel not in ('gaussian', 'linear'):
            raise ValueError(f"kernel must be 'gaussian' or 'linear', got {self.kernel!r}")
        if min(self.test_scale) < 1:
            raise ValueError(f'test_scale must be positive, got {self.test_scale}')


_PRESET_FIELDS: dict[str, dict] = {
    'solov2_r50': {},
    'solov2_light_r50': {'stacked_convs': 2, 'head_channels': 256, 'mask_out_channels': 128,
                         'test_scale': (768, 448)},
}


def preset_config(name: str, **overrides) -> SoloV2Config:
    """The config of preset ``name`` with optional field overrides (e.g. ``num_classes=3``)."""
    if name not in _PRESET_FIELDS:
        raise ValueError(f'unknown SOLOv2 preset {name!r}; known: {list(PRESETS)}')
    return replace(SoloV2Config(name, **_PRESET_FIELDS[name]), **overrides)
