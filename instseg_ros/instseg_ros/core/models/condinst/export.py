"""CondInst's :class:`~instseg_ros.core.family_export.ExportTraits`: an RGB input of any size
(multiples of the size divisor; height and width dynamic in the graph), outputs the fields of
:class:`~.network.CondInstOutput` per level."""

from __future__ import annotations

from instseg_ros.core.family_export import ExportTraits, keep_ratio_example_hw, rgb_input_note
from instseg_ros.core.models.condinst.config import CondInstConfig
from instseg_ros.core.models.condinst.network import CondInstOutput


def _segmenter(network, cfg, class_names):
    from instseg_ros.core.models.condinst.segmenter import CondInstSegmenter
    return CondInstSegmenter(network, cfg, class_names=class_names)


def _load(path, preset, class_names):
    from instseg_ros.core.models.condinst.segmenter import CondInstSegmenter
    return CondInstSegmenter.load(path, preset, class_names)


def _random(preset):
    from instseg_ros.core.models.condinst.config import get_config
    from instseg_ros.core.models.condinst.network import CondInst
    cfg = get_config(preset)
    return CondInst(cfg).eval(), cfg


TRAITS = ExportTraits(
    family='condinst', title='CondInst', config_type=CondInstConfig, output_type=CondInstOutput,
    fields=CondInstOutput._fields, fixed_input=False, example_hw=keep_ratio_example_hw,
    input_note=rgb_input_note, load=_load, random=_random, segmenter=_segmenter)
