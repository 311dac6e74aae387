"""Reading mmdetection 3.x SOLOv2 checkpoints: ``{'meta', 'state_dict'}`` files as mmdet publishes
them (``torch.load(weights_only=True)``), preset from the file name or the tensors, class names
from ``meta['dataset_meta']['classes']``. Every failure is a one-line CheckpointError."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import torch

from instseg_ros.core.checkpoint import CheckpointError, _mismatch_text, _mismatches, _shorten
from instseg_ros.core.classes import COCO_CLASSES
from instseg_ros.core.models.mmdet_checkpoint import numpy_scalar_types, strip_module_prefix
from instseg_ros.core.models.solov2.config import PRESETS, SoloV2Config, preset_config
from instseg_ros.core.models.solov2.network import SoloV2

__all__ = ['class_names_for', 'expected_shapes', 'load_checkpoint', 'preset_from_file_name',
           'preset_from_shapes', 'resolve_config']

StateDict = dict[str, torch.Tensor]
_KERNEL_KEY = 'mask_head.conv_kernel.weight'
_CLS_KEY = 'mask_head.conv_cls.weight'
# mmdet names: solov2_r50_fpn_1x_coco_*.pth, solov2_r50_fpn_ms-3x_coco_*, solov2_r50_fpn_3x_coco_* (2.x),
# solov2-light_r50_fpn_ms-3x_coco_*, solov2_light_r50_fpn_3x_coco_*; DCN variants are not supported
_LIGHT_RE = re.compile(r'^solov2[-_]light[-_]r50(?![-_]?dcn)(?:[-_.].*)?$', re.IGNORECASE)
_FULL_RE = re.compile(r'^solov2[-_]r50(?![-_]?dcn)(?:[-_.].*)?$', re.IGNORECASE)


def preset_from_file_name(name: str | os.PathLike) -> str | None:
    """Preset named by a checkpoint file name, e.g. ``solov2_r50_fpn_1x_coco_20220512_125858-a357fa23.pth``
    -> 'solov2_r50', ``solov2-light_r50_fpn_ms-3x_coco_*.pth`` -> 'solov2_light_r50'; None otherwise."""
    stem = Path(name).name
    if _LIGHT_RE.match(stem):
        return 'solov2_light_r50'
    if _FULL_RE.match(stem):
        return 'solov2_r50'
    return None


def preset_from_shapes(state_dict: StateDict) -> str | None:
    """Preset from the head: kernel length x head channels 256 x 512 (solov2_r50) or 128 x 256
    (solov2_light_r50); None for other layouts (or a non-ResNet-50 backbone)."""
    kernel = state_dict.get(_KERNEL_KEY)
    if kernel is None or kernel.ndim != 4 or 'backbone.layer3.5.conv1.weight' not in state_dict \
            or 'backbone.layer3.6.conv1.weight' in state_dict:
        return None
    return {(256, 512): 'solov2_r50', (128, 256): 'solov2_light_r50'}.get(tuple(kernel.shape[:2]))


def expected_shapes(cfg: SoloV2Config) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``SoloV2(cfg)``'s state dict (built on the meta device)."""
    with torch.device('meta'):
        model = SoloV2(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _read_error(path: str, exc: BaseException) -> str:
    """One line for a failed weights-only read (torch's own advice left out)."""
    text = ' '.join(str(exc).split())
    found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', text)
    if found and found.group(1).startswith('mmengine'):
        return (f'{path}: an mmengine training-run checkpoint (its message_hub/optimizer pickle '
                f"{found.group(1)}, not plain weights); strip it with mmdetection's "
                'tools/model_converters/publish_model.py first')
    if found or 'Weights only load failed' in text:
        what = f'it pickles {found.group(1)}' if found else 'it pickles non-tensor objects'
        return f'{path}: not a plain weights file ({what}); use a checkpoint as mmdetection publishes them'
    return (f'{path}: cannot read checkpoint (truncated, corrupt or not a PyTorch weights file): '
            f'{type(exc).__name__}: {_shorten(exc, 160)}')


def _read(path: str) -> tuple[StateDict, dict]:
    """(state dict, meta) of an mmdet file; training-run extras (optimizer, message_hub) dropped."""
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file not found')
    try:
        with torch.serialization.safe_globals(numpy_scalar_types()):
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # truncated zip, pickle of non-tensor objects, ...
        raise CheckpointError(_read_error(path, exc)) from exc
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        meta = obj.get('meta') if isinstance(obj.get('meta'), dict) else {}
        obj = obj['state_dict']
    else:
        meta = {}
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f'{path}: not a SOLOv2 checkpoint (expected a state dict of tensors)')
    return strip_module_prefix(dict(obj)), meta


def resolve_config(path: str, state_dict: StateDict, preset: str = 'auto', **overrides) -> SoloV2Config:
    """Config fitting the file: ``preset`` or (auto) the file name's, else the tensors'; the class
    count from ``mask_head.conv_cls``. Raises CheckpointError when it does not fit."""
    if preset != 'auto' and preset not in PRESETS:
        raise CheckpointError(f'{path}: unknown SOLOv2 preset {preset!r}; use one of {list(PRESETS)} or auto')
    if _KERNEL_KEY not in state_dict or _CLS_KEY not in state_dict:
        raise CheckpointError(f'{path}: not an mmdetection SOLOv2 checkpoint (no {_KERNEL_KEY}); use the '
                              'builder of its model family')
    from_shapes = preset_from_shapes(state_dict)
    name = preset if preset != 'auto' else (from_shapes or preset_from_file_name(path))
    if name is None:
        raise CheckpointError(f'{path}: cannot infer the SOLOv2 preset from its tensors (only ResNet-50 '
                              f'without DCN is supported); pass one of {list(PRESETS)}')
    cfg = preset_config(name, num_classes=int(state_dict[_CLS_KEY].shape[0]), **overrides)
    problems = _mismatches(state_dict, expected_shapes(cfg))
    if any(problems):
        hint = f' (its tensors fit {from_shapes!r})' if from_shapes and from_shapes != name else ''
        raise CheckpointError(f'{path}: checkpoint does not match SOLOv2 preset {name!r}{hint}: '
                              f'{_mismatch_text(*problems)}')
    return cfg


def class_names_for(path: str, num_classes: int, meta: dict,
                    class_names: Sequence[str] | None = None) -> tuple[str, ...]:
    """Names by 0-based label: ``class_names`` if given, else the file's
    ``meta['dataset_meta']['classes']`` (mmdet 3.x) or ``meta['CLASSES']`` (2.x), else COCO's for 80
    classes, else ``class_<i>``."""
    if class_names is not None:
        names = tuple(str(n) for n in class_names)
        if len(names) != num_classes:
            raise CheckpointError(f'{path}: {len(names)} class names given but the checkpoint has '
                                  f'{num_classes} classes')
        return names
    dataset_meta = meta.get('dataset_meta') if isinstance(meta, dict) else None
    stored = dataset_meta.get('classes') if isinstance(dataset_meta, dict) else None
    if stored is None and isinstance(meta, dict):
        stored = meta.get('CLASSES')  # files written by mmdet 2.x (the published SOLOv2 weights)
    if isinstance(stored, (list, tuple)) and len(stored) == num_classes:
        return tuple(str(n) for n in stored)
    if num_classes == len(COCO_CLASSES):
        return COCO_CLASSES
    return tuple(f'class_{i}' for i in range(num_classes))


def load_checkpoint(path: str | os.PathLike, preset: str = 'auto', class_names: Sequence[str] | None = None,
                    **overrides) -> tuple[SoloV2, SoloV2Config, tuple[str, ...]]:
    """(SoloV2 in eval mode on the CPU loaded with strict keys, its config, class names)."""
    path = str(path)
    state_dict, meta = _read(path)
    cfg = resolve_config(path, state_dict, preset, **overrides)
    names = class_names_for(path, cfg.num_classes, meta, class_names)
    with torch.device('meta'):
        model = SoloV2(cfg)
    model.to_empty(device='cpu')
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f'{path}: loading into SOLOv2 preset {cfg.name!r} failed: {_shorten(exc)}') from exc
    return model.eval(), cfg, names
