"""YOLACT / YOLACT++ (Bolya et al. 2019/2020): the network modules in pure torch (yolact,
backbone, fpn, head, dcn, priors, maskiou) and the family's segmenter. Configs, checkpoint
loading, pre/post-processing and the predictor are shared with the export backends and stay in
``instseg_ros.core`` (config, checkpoint, preprocess, postprocess, predictor).

Exports:
    PRESETS: the YOLACT preset names (``core.config.PRESETS``).
    build_segmenter(weights, preset='auto', device='cpu', half=False, class_names=None, **options)
        -> YolactSegmenter (a core.segmenter.Segmenter).
    Yolact, YolactOutput, init_weights_: the network.
"""

from instseg_ros.core.config import PRESETS as _PRESET_CONFIGS
from instseg_ros.core.models.yolact.segmenter import YolactSegmenter, build_segmenter
from instseg_ros.core.models.yolact.yolact import Yolact, YolactOutput, init_weights_

#: YOLACT preset names (their configs: ``instseg_ros.core.config.PRESETS``)
PRESETS: tuple[str, ...] = tuple(_PRESET_CONFIGS)

__all__ = ['PRESETS', 'Yolact', 'YolactOutput', 'YolactSegmenter', 'build_segmenter', 'init_weights_']
