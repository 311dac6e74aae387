"""Model configurations: the six official YOLACT / YOLACT++ presets and a small CPU-trainable one.

Pure core module (no ROS). Values follow the reference ``data/config.py``
(dbolya/yolact @ 902073d): backbones, FPN, anchors (scales, aspect ratios) and input sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

BACKBONES = ('resnet50', 'resnet101', 'darknet53', 'resnet18')
NORMALIZATIONS = ('resnet', 'darknet')

# Per-channel statistics of the 'resnet' normalization, in BGR order, 0..255 pixel scale.
MEANS_BGR = (103.94, 116.78, 123.68)
STD_BGR = (57.38, 57.12, 58.40)

# Residual blocks per stage.
BACKBONE_BLOCKS = {
    'resnet18': (2, 2, 2, 2),
    'resnet50': (3, 4, 6, 3),
    'resnet101': (3, 4, 23, 3),
    'darknet53': (1, 2, 8, 8, 4),
}

_V1_SCALES_550 = ((24.0,), (48.0,), (96.0,), (192.0,), (384.0,))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters of one YOLACT variant.

    Attributes:
        name: preset name (also the checkpoint file-name prefix).
        backbone: one of BACKBONES.
        max_size: side of the square network input in pixels; anchor sizes are divided by it.
        num_classes: number of classes INCLUDING background (index 0); 81 for COCO.
        mask_dim: number of prototypes / mask coefficients K.
        fpn_features: channels of every FPN level, the proto net and the prediction head.
        pred_scales: anchor sizes in pixels (of a max_size input), one tuple per FPN level P3..P7.
        aspect_ratios: anchor aspect ratios w/h (the reference takes their sqrt).
        square_anchors: v1 compatibility bug: anchor height := width.
        use_maskiou: YOLACT++ mask re-scoring network present.
        normalization: 'resnet' ((x - MEANS_BGR) / STD_BGR, then BGR->RGB) or 'darknet' (x / 255, BGR->RGB).
        selected_layers: backbone stage indices fed to the FPN (C3, C4, C5).
        num_downsample: extra stride-2 FPN levels after P5 (P6, P7).
        dcn_layers: per ResNet stage, how many trailing blocks may use DCNv2 (0 = none).
        dcn_interval: every dcn_interval-th block (by index) of those uses DCNv2.
        backbone_width: ResNet stem / first-stage channels (64 in every official preset; stage i
            has backbone_width * 2**i planes). Smaller values make a cheaper model.
    """

    name: str
    backbone: str
    max_size: int
    num_classes: int = 81
    mask_dim: int = 32
    fpn_features: int = 256
    pred_scales: tuple[tuple[float, ...], ...] = _V1_SCALES_550
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)
    square_anchors: bool = True
    use_maskiou: bool = False
    normalization: str = 'resnet'
    selected_layers: tuple[int, ...] = (1, 2, 3)
    num_downsample: int = 2
    dcn_layers: tuple[int, ...] = (0, 0, 0, 0)
    dcn_interval: int = 1
    backbone_width: int = 64

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f'backbone must be one of {BACKBONES}, got {self.backbone!r}')
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f'normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}')
        if self.num_classes < 2:
            raise ValueError(f'num_classes includes background and must be >= 2, got {self.num_classes}')
        levels = len(self.selected_layers) + self.num_downsample
        if len(self.pred_scales) != levels:
            raise ValueError(f'pred_scales needs {levels} levels, got {len(self.pred_scales)}')
        if len({len(s) for s in self.pred_scales}) != 1:
            raise ValueError('every FPN level needs the same number of scales')

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map cell (scales per level x aspect ratios)."""
        return len(self.pred_scales[0]) * len(self.aspect_ratios)

    @property
    def backbone_blocks(self) -> tuple[int, ...]:
        """Residual blocks per backbone stage."""
        return BACKBONE_BLOCKS[self.backbone]


def _plus_scales() -> tuple[tuple[float, ...], ...]:
    """YOLACT++ anchors: three octave-spaced scales per level (reference: i * 2 ** (j / 3.0))."""
    return tuple(tuple(s * 2 ** (j / 3.0) for j in range(3)) for s in (24, 48, 96, 192, 384))


def _build_presets() -> dict[str, ModelConfig]:
    base = ModelConfig(name='yolact_base', backbone='resnet101', max_size=550)
    plus = replace(base, name='yolact_plus_base', pred_scales=_plus_scales(), square_anchors=False,
                   use_maskiou=True, dcn_layers=(0, 4, 23, 3), dcn_interval=3)
    presets = [
        base,
        replace(base, name='yolact_resnet50', backbone='resnet50'),
        replace(base, name='yolact_darknet53', backbone='darknet53', normalization='darknet',
                selected_layers=(2, 3, 4)),
        replace(base, name='yolact_im700', max_size=700,
                pred_scales=tuple((float(int(s[0] / 550 * 700)),) for s in _V1_SCALES_550)),
        plus,
        replace(plus, name='yolact_plus_resnet50', backbone='resnet50', dcn_layers=(0, 4, 6, 3),
                dcn_interval=1),
        ModelConfig(name='yolact_small', backbone='resnet18', max_size=320, fpn_features=128,
                    pred_scales=tuple((s[0] * 320 / 550,) for s in _V1_SCALES_550),
                    square_anchors=False, backbone_width=32),
    ]
    return {p.name: p for p in presets}


PRESETS: dict[str, ModelConfig] = _build_presets()

OFFICIAL_PRESETS: tuple[str, ...] = ('yolact_base', 'yolact_resnet50', 'yolact_darknet53', 'yolact_im700',
                                     'yolact_plus_base', 'yolact_plus_resnet50')


def get_preset(name: str, num_classes: int | None = None) -> ModelConfig:
    """Preset ``name``, optionally with a different ``num_classes`` (including background)."""
    if name not in PRESETS:
        raise KeyError(f'unknown model preset {name!r}; known: {sorted(PRESETS)}')
    cfg = PRESETS[name]
    return cfg if num_classes is None else replace(cfg, num_classes=int(num_classes))
