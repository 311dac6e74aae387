"""One segmenter interface for the pipeline, node, bag tool and evaluator; each model family
implements it in its subpackage of ``core/models`` (yolact, maskrcnn, rtmdet, solov2, condinst).
A plain dict of builders (``BUILDERS``) picks the implementation; nothing else here knows a
model's internals.

The interface (:class:`Segmenter`): uint8 image(s) in, ``RoiDetections`` (host arrays, tight mask
ROIs) or ``Instances`` (full masks, for the evaluator) out, plus ``name`` (preset), ``device``,
``precision`` ('fp32' | 'fp16'), ``class_names`` (by 0-based label), ``warmup()`` and
``last_timings_ms`` ('preprocess', 'forward', 'postprocess' of the last call).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from instseg_ros.core.checkpoint import CheckpointError
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.structures import Instances

__all__ = ['BUILDERS', 'InferenceParams', 'RoiDetections', 'Segmenter', 'all_presets', 'load_segmenter',
           'model_family']


@runtime_checkable
class Segmenter(Protocol):
    """What the pipeline, node, bag tool and evaluator call."""

    name: str
    device: torch.device
    precision: str
    class_names: Sequence[str]
    last_timings_ms: dict[str, float]

    def predict_rois(self, image: np.ndarray, color_order: str = 'bgr',
                     params: InferenceParams | None = None) -> RoiDetections:
        """One uint8 [H, W, 3] image -> detections with tight mask ROIs on the host."""

    def predict_rois_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                           params: InferenceParams | None = None) -> list[RoiDetections]:
        """Several images (sizes may differ) with one forward pass; timings of the whole batch."""

    def __call__(self, image: np.ndarray, color_order: str = 'bgr',
                 params: InferenceParams | None = None) -> Instances:
        """One image -> Instances with full-frame masks, on ``device``."""

    def warmup(self, image_size: tuple[int, int] = (480, 640), iterations: int = 1) -> None:
        """Run predictions on a grey image (kernel selection, allocator)."""


def _build_family(module: str):
    """Builder of a family whose subpackage (core/models/<family>) exports build_segmenter."""
    def build(weights, preset, device, half, class_names, **options) -> Segmenter:
        return importlib.import_module(module).build_segmenter(
            weights, preset=preset, device=device, half=half, class_names=class_names, **options)
    return build


#: model family -> its subpackage under core/models (exports PRESETS and build_segmenter)
FAMILY_MODULES = {'yolact': 'instseg_ros.core.models.yolact', 'maskrcnn': 'instseg_ros.core.models.maskrcnn',
                  'rtmdet_ins': 'instseg_ros.core.models.rtmdet', 'solov2': 'instseg_ros.core.models.solov2',
                  'condinst': 'instseg_ros.core.models.condinst'}

#: model family -> builder(weights, preset, device, half, class_names, **options) -> Segmenter
BUILDERS: dict[str, Callable[..., Segmenter]] = {
    family: _build_family(module) for family, module in FAMILY_MODULES.items()}

#: each family in words (the node's Ready line)
FAMILY_TITLES = {'yolact': 'YOLACT', 'maskrcnn': 'Mask R-CNN (torchvision)',
                 'rtmdet_ins': 'RTMDet-Ins (mmdetection)', 'solov2': 'SOLOv2 (mmdetection)',
                 'condinst': 'CondInst (mmdetection)'}


def family_presets() -> dict[str, tuple[str, ...]]:
    """Family -> its preset names (each subpackage's PRESETS)."""
    return {family: tuple(importlib.import_module(module).PRESETS) for family, module in FAMILY_MODULES.items()}


def _family_from_file_name(weights: str | os.PathLike) -> str | None:
    from instseg_ros.core.models import condinst, rtmdet, solov2
    name = Path(weights).name
    if name.lower().endswith('.onnx'):  # an export: its side-car names the family
        from instseg_ros.core.family_export import sidecar_family
        return sidecar_family(weights)
    if name.lower().startswith('maskrcnn'):
        return 'maskrcnn'
    for family, module in (('rtmdet_ins', rtmdet), ('solov2', solov2), ('condinst', condinst)):
        if module.preset_from_file_name(name):
            return family
    return None


def all_presets() -> list[str]:
    """Every preset name of every family (sorted)."""
    return sorted(p for presets in family_presets().values() for p in presets)


def model_family(preset: str, weights: str | os.PathLike, model: str = 'auto') -> str:
    """Which builder: ``model`` if given, else the family of the preset, else from the file name
    (``maskrcnn_*``, mmdetection's ``rtmdet-ins_*`` / ``solov2*`` / ``condinst_*`` names; anything
    else 'yolact').
    Raises CheckpointError for an unknown model or preset, or a model that contradicts the preset."""
    if model not in ('auto', *BUILDERS):
        raise CheckpointError(f"unknown model {model!r}; use one of {sorted(BUILDERS)} or auto")
    if preset != 'auto':
        family = next((f for f, presets in family_presets().items() if preset in presets), None)
        if family is None:
            raise CheckpointError(f'{weights}: unknown preset {preset!r}; use one of {all_presets()} or auto')
        if model not in ('auto', family):
            raise CheckpointError(f'preset {preset!r} is a {family} preset, not a {model} one; '
                                  f'pass model:={family} or a {model} preset')
        return family
    if model != 'auto':
        return model
    return _family_from_file_name(weights) or 'yolact'


def load_segmenter(weights: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
                   half: bool = False, class_names: Sequence[str] | None = None, model: str = 'auto',
                   **options) -> Segmenter:
    """Build the segmenter for a checkpoint or an instseg-export .onnx (``options``: precision and
    backend for every family but Mask R-CNN, num_classes for YOLACT, min_size, max_size for Mask
    R-CNN, config overrides for SOLOv2). Raises CheckpointError (file, preset) or ValueError (names, device)."""
    family = model_family(preset, weights, model)
    return BUILDERS[family](str(weights), preset, device, half, class_names, **options)
