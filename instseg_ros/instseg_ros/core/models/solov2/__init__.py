"""SOLOv2 (Wang et al. 2020) with a ResNet-50 FPN, in pure PyTorch, loading mmdetection 3.x
checkpoints with strict keys (no mmcv / mmdet / mmengine at run time).

Exports: ``PRESETS``, ``preset_from_file_name(name) -> preset | None`` and
``build_segmenter(weights, preset, device, half, class_names, **options) -> SoloV2Segmenter``.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from instseg_ros.core.models.solov2.checkpoint import load_checkpoint, preset_from_file_name
from instseg_ros.core.models.solov2.config import PRESETS, SoloV2Config, preset_config
from instseg_ros.core.models.solov2.segmenter import SoloV2Segmenter

__all__ = ['PRESETS', 'SoloV2Config', 'SoloV2Segmenter', 'build_segmenter', 'preset_config',
           'preset_from_file_name']

_CONFIG_OPTIONS = ('test_scale', 'score_thr', 'mask_thr', 'filter_thr', 'nms_pre', 'max_per_img', 'kernel',
                   'sigma')


def build_segmenter(weights: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
                    half: bool = False, class_names: Sequence[str] | None = None,
                    **options) -> SoloV2Segmenter:
    """A :class:`SoloV2Segmenter` for an mmdetection SOLOv2 checkpoint.

    Args:
        weights: ``.pth`` file as mmdet publishes it (``{'meta', 'state_dict'}``).
        preset: one of PRESETS or 'auto' (from the tensors, else the file name).
        device, half: where to run; half precision only on CUDA.
        class_names: names by 0-based label (default: the file's meta, else COCO for 80 classes).
        options: ``precision`` ('fp32' | 'bf16' | 'fp16'); ``backend`` 'torch', 'onnxruntime' or
            'openvino' (the ONNX export; ``weights`` may be an instseg-export .onnx); config
            overrides among ``test_scale`` (long, short), ``score_thr``, ``mask_thr``,
            ``filter_thr``, ``nms_pre``, ``max_per_img``, ``kernel``, ``sigma``; other keys (options
            of other families) are ignored; None values mean "default".

    Raises:
        CheckpointError: one line, for a missing / truncated / wrong-family file or a class-count
            mismatch. ValueError / ImportError: an export that does not fit / a runtime not installed.
    """
    from instseg_ros.core.models.solov2.export import TRAITS
    from instseg_ros.core.roi_segmenter import build_on_backend

    overrides = {k: options[k] for k in _CONFIG_OPTIONS if options.get(k) is not None}
    if 'test_scale' in overrides:
        overrides['test_scale'] = tuple(int(v) for v in overrides['test_scale'])

    def build_torch() -> SoloV2Segmenter:
        model, cfg, names = load_checkpoint(weights, preset, class_names, **overrides)
        return SoloV2Segmenter(model, cfg, names, device=device, half=half, precision=options.get('precision'))

    return build_on_backend(TRAITS, weights, preset, device, half, class_names, options, build_torch,
                            config_overrides=overrides)
