"""RTMDet-Ins's :class:`~instseg_ros.core.family_export.ExportTraits`: a fixed ``S x S`` BGR input
(letterboxed), outputs the fields of :class:`~.head.HeadOutput` per level."""

from __future__ import annotations

from instseg_ros.core.family_export import ExportTraits
from instseg_ros.core.models.rtmdet.config import RtmdetInsConfig, get_config
from instseg_ros.core.models.rtmdet.head import HeadOutput
from instseg_ros.core.models.rtmdet.model import RTMDetIns
from instseg_ros.core.models.rtmdet.segmenter import RtmdetInsSegmenter

TRAITS = ExportTraits(
    family='rtmdet_ins', title='RTMDet-Ins', config_type=RtmdetInsConfig, output_type=HeadOutput,
    fields=HeadOutput._fields, fixed_input=True, example_hw=lambda cfg: (cfg.input_size, cfg.input_size),
    input_note=lambda cfg: {'channels': 'BGR', 'mean': list(cfg.mean_bgr), 'std': list(cfg.std_bgr),
                            'resize': f'keep ratio into {cfg.input_size} x {cfg.input_size}, padded '
                                      f'right/bottom with {cfg.pad_value}'},
    load=RtmdetInsSegmenter.load, random=lambda preset: (RTMDetIns(get_config(preset)).eval(), get_config(preset)),
    segmenter=lambda network, cfg, names: RtmdetInsSegmenter(network, cfg, class_names=names))
