"""SOLOv2's :class:`~instseg_ros.core.family_export.ExportTraits`: an RGB input of any size
(multiples of the size divisor; height and width dynamic in the graph), outputs per-level category
logits and kernels and the mask features."""

from __future__ import annotations

from instseg_ros.core.family_export import ExportTraits, keep_ratio_example_hw, rgb_input_note
from instseg_ros.core.models.solov2.checkpoint import load_checkpoint
from instseg_ros.core.models.solov2.config import SoloV2Config, preset_config
from instseg_ros.core.models.solov2.network import SoloV2
from instseg_ros.core.models.solov2.segmenter import SoloV2Segmenter

TRAITS = ExportTraits(
    family='solov2', title='SOLOv2', config_type=SoloV2Config, output_type=tuple,
    fields=('cls_logits', 'kernels', 'mask_feats'), fixed_input=False, example_hw=keep_ratio_example_hw,
    input_note=rgb_input_note, load=load_checkpoint,
    random=lambda preset: (SoloV2(preset_config(preset)).eval(), preset_config(preset)),
    segmenter=lambda network, cfg, names: SoloV2Segmenter(network, cfg, names))
