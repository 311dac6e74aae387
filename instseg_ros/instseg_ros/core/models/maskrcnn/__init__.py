"""Mask R-CNN (torchvision's classes, the user's file loaded with strict keys; never downloads).

Exports:
    PRESETS: ('maskrcnn_resnet50_fpn', 'maskrcnn_resnet50_fpn_v2').
    preset_from_file_name(name) -> preset | None.
    build_segmenter(weights, preset='auto', device='cpu', half=False, class_names=None, **options)
        -> MaskRcnnSegmenter (a core.segmenter.Segmenter); options min_size, max_size.
"""

from instseg_ros.core.models.maskrcnn.segmenter import (MASKRCNN_PRESETS, MaskRcnnConfig, MaskRcnnSegmenter,
                                                        build_model, build_segmenter, load_model,
                                                        paste_mask_rois, preset_from_file_name,
                                                        preset_from_shapes)

#: the Mask R-CNN preset names
PRESETS: tuple[str, ...] = MASKRCNN_PRESETS

__all__ = ['MASKRCNN_PRESETS', 'PRESETS', 'MaskRcnnConfig', 'MaskRcnnSegmenter', 'build_model',
           'build_segmenter', 'load_model', 'paste_mask_rois', 'preset_from_file_name',
           'preset_from_shapes']
