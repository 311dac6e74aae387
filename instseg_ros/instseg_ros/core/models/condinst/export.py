"""CondInst's :class:`~instseg_ros.core.family_export.ExportTraits`: an RGB input of any size
(multiples of the size divisor; height and width dynamic in the graph), outputs the fields of
:class:`~.network.CondInstOutput` per level."""

from __future__ import annotations

from instseg_ros.core.family_export import ExportTraits, keep_ratio_example_hw, rgb_input_note
from instseg_ros.core.models.condinst.config import CondInstConfig, get_config
from instseg_ros.core.models.condinst.network import CondInst, CondInstOutput
from instseg_ros.core.models.condinst.segmenter import CondInstSegmenter

TRAITS = ExportTraits(
    family='condinst', title='CondInst', config_type=CondInstConfig, output_type=CondInstOutput,
    fields=CondInstOutput._fields, fixed_input=False, example_hw=keep_ratio_example_hw,
    input_note=rgb_input_note, load=CondInstSegmenter.load,
    random=lambda preset: (CondInst(get_config(preset)).eval(), get_config(preset)),
    segmenter=lambda network, cfg, names: CondInstSegmenter(network, cfg, class_names=names))
