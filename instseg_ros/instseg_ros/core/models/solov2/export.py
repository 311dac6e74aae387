"""SOLOv2's :class:`~instseg_ros.core.family_export.ExportTraits`: an RGB input of any size
(multiples of the size divisor; height and width dynamic in the graph), outputs per-level category
logits and kernels and the mask features."""

from __future__ import annotations

from instseg_ros.core.family_export import ExportTraits, keep_ratio_example_hw, rgb_input_note
from instseg_ros.core.models.solov2.config import SoloV2Config


def _segmenter(network, cfg, class_names):
    from instseg_ros.core.models.solov2.segmenter import SoloV2Segmenter
    return SoloV2Segmenter(network, cfg, class_names)


def _load(path, preset, class_names):
    from instseg_ros.core.models.solov2.checkpoint import load_checkpoint
    return load_checkpoint(path, preset, class_names)


def _random(preset):
    from instseg_ros.core.models.solov2.config import preset_config
    from instseg_ros.core.models.solov2.network import SoloV2
    cfg = preset_config(preset)
    return SoloV2(cfg).eval(), cfg


TRAITS = ExportTraits(
    family='solov2', title='SOLOv2', config_type=SoloV2Config, output_type=tuple,
    fields=('cls_logits', 'kernels', 'mask_feats'), fixed_input=False, example_hw=keep_ratio_example_hw,
    input_note=rgb_input_note, load=_load, random=_random, segmenter=_segmenter)
