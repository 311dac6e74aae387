"""RTMDet-Ins presets (tiny, s, m) as frozen dataclasses; every size the modules need derives
from the two scaling factors of mmdetection 3.x's configs."""

from __future__ import annotations

from dataclasses import dataclass

#: P5 CSPNeXt stages: (in channels, out channels, blocks, add_identity, use_spp) before scaling.
P5_STAGES: tuple[tuple[int, int, int, bool, bool], ...] = (
    (64, 128, 3, True, False), (128, 256, 6, True, False),
    (256, 512, 6, True, False), (512, 1024, 3, False, True))


@dataclass(frozen=True)
class RtmdetInsConfig:
    """One RTMDet-Ins preset.

    Attributes:
        name: preset name, e.g. 'rtmdet_ins_tiny'.
        deepen_factor: block-count scale of the backbone stages.
        widen_factor: channel scale of backbone and neck.
        neck_blocks: CSP blocks per neck CSP layer.
        num_classes: classes (background excluded).
        input_size: side of the square network input in pixels (resize keep-ratio + pad).
        strides: feature strides of the three head levels in input pixels.
        num_prototypes / dyconv_channels / num_dyconvs: dynamic mask head layout.
        pad_value: grey level of the padding (per channel, BGR).
        mean_bgr / std_bgr: input normalisation, BGR order (the network sees BGR).
        nms_pre: candidates per level entering NMS.
        mask_threshold: probability threshold of the binary masks.
    """

    name: str
    deepen_factor: float
    widen_factor: float
    neck_blocks: int
    num_classes: int = 80
    input_size: int = 640
    strides: tuple[int, int, int] = (8, 16, 32)
    num_prototypes: int = 8
    dyconv_channels: int = 8
    num_dyconvs: int = 3
    pad_value: int = 114
    mean_bgr: tuple[float, float, float] = (103.53, 116.28, 123.675)
    std_bgr: tuple[float, float, float] = (57.375, 57.12, 58.395)
    nms_pre: int = 1000
    mask_threshold: float = 0.5

    @property
    def stem_channels(self) -> int:
        """Output channels of the stem (its first two convs have half of them)."""
        return int(P5_STAGES[0][0] * self.widen_factor)

    @property
    def backbone_out_channels(self) -> tuple[int, int, int]:
        """Channels of the stage 2/3/4 outputs (strides 8/16/32)."""
        return tuple(int(s[1] * self.widen_factor) for s in P5_STAGES[1:])  # type: ignore[return-value]

    @property
    def feat_channels(self) -> int:
        """Neck output and head channels."""
        return int(256 * self.widen_factor)

    def stage_blocks(self, index: int) -> int:
        """CSP blocks of backbone stage ``index`` (0-based)."""
        return max(round(P5_STAGES[index][2] * self.deepen_factor), 1)

    @property
    def num_dynamic_params(self) -> int:
        """Parameters per instance of the dynamic mask convs (169 for the defaults)."""
        c, p = self.dyconv_channels, self.num_prototypes
        weights = (p + 2) * c + c * c * (self.num_dyconvs - 2) + c
        return weights + c * (self.num_dyconvs - 1) + 1


PRESET_CONFIGS: dict[str, RtmdetInsConfig] = {
    'rtmdet_ins_tiny': RtmdetInsConfig('rtmdet_ins_tiny', deepen_factor=0.167, widen_factor=0.375,
                                       neck_blocks=1),
    'rtmdet_ins_s': RtmdetInsConfig('rtmdet_ins_s', deepen_factor=0.33, widen_factor=0.5, neck_blocks=1),
    'rtmdet_ins_m': RtmdetInsConfig('rtmdet_ins_m', deepen_factor=0.67, widen_factor=0.75, neck_blocks=2),
}

PRESETS: tuple[str, ...] = tuple(PRESET_CONFIGS)


def get_config(preset: str, num_classes: int = 80) -> RtmdetInsConfig:
    """The config of ``preset`` with ``num_classes``; KeyError for an unknown preset."""
    from dataclasses import replace
    return replace(PRESET_CONFIGS[preset], num_classes=int(num_classes))
