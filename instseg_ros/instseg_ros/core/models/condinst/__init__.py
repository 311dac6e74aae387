"""CondInst (Tian et al. 2020) with a ResNet-50 FPN in pure PyTorch, loading mmdetection 3.x
checkpoints (``condinst_r50_fpn_ms-poly-90k_coco_instance_*.pth``) with strict keys; no mmcv /
mmdet / mmengine at run time. Masks use the shared dynamic-kernel op
(:mod:`instseg_ros.core.ops.dynamic_masks`).

Exports:
    PRESETS: ('condinst_r50',).
    preset_from_file_name(name) -> preset | None; preset_from_shapes(state_dict) -> preset | None.
    build_segmenter(weights, preset='auto', device='cpu', half=False, class_names=None, **options)
        -> CondInstSegmenter (a core.segmenter.Segmenter).
"""

from instseg_ros.core.models.condinst.checkpoint import load_model, preset_from_file_name, preset_from_shapes
from instseg_ros.core.models.condinst.config import PRESETS, CondInstConfig, get_config
from instseg_ros.core.models.condinst.network import CondInst
from instseg_ros.core.models.condinst.segmenter import MMDET_TEST_PARAMS, CondInstSegmenter, build_segmenter

__all__ = ['MMDET_TEST_PARAMS', 'PRESETS', 'CondInst', 'CondInstConfig', 'CondInstSegmenter',
           'build_segmenter', 'get_config', 'load_model', 'preset_from_file_name', 'preset_from_shapes']
