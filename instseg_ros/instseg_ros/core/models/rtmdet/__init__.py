"""RTMDet-Ins (tiny, s, m) in pure PyTorch, loading mmdetection 3.x checkpoints with strict=True.

Exports:
    PRESETS: ('rtmdet_ins_tiny', 'rtmdet_ins_s', 'rtmdet_ins_m').
    preset_from_file_name(name) -> preset | None.
    build_segmenter(weights, preset='auto', device='cpu', half=False, class_names=None, **options)
        -> RtmdetInsSegmenter (a core.segmenter.Segmenter).
"""

from instseg_ros.core.models.rtmdet.checkpoint import load_model, preset_from_file_name, preset_from_shapes
from instseg_ros.core.models.rtmdet.config import PRESETS, RtmdetInsConfig, get_config
from instseg_ros.core.models.rtmdet.model import RTMDetIns
from instseg_ros.core.models.rtmdet.segmenter import MMDET_TEST_PARAMS, RtmdetInsSegmenter, build_segmenter

__all__ = ['MMDET_TEST_PARAMS', 'PRESETS', 'RTMDetIns', 'RtmdetInsConfig', 'RtmdetInsSegmenter',
           'build_segmenter', 'get_config', 'load_model', 'preset_from_file_name', 'preset_from_shapes']
