"""Load mmdetection 3.x CondInst checkpoints (``{'meta', 'state_dict'}``) with strict keys.

Files are read by :func:`instseg_ros.core.checkpoint.read_weights_file` (weights-only; numpy
scalars in meta allowed), so every failure is one line naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from instseg_ros.core.checkpoint import CheckpointError, read_weights_file
from instseg_ros.core.models.condinst.config import PRESETS, CondInstConfig, get_config
from instseg_ros.core.models.condinst.network import CondInst
from instseg_ros.core.models.mmdet_checkpoint import (load_strict, numpy_scalar_types, resolve_class_names,
                                                      split_meta, strip_module_prefix)

__all__ = ['load_condinst_file', 'load_model', 'preset_from_file_name', 'preset_from_shapes',
           'resolve_class_names', 'resolve_config']

StateDict = dict[str, torch.Tensor]

_FILE_NAME_RE = re.compile(r'condinst[-_]r50(?:[-_.]|$)', re.IGNORECASE)
_CLS_KEY = 'bbox_head.conv_cls.weight'
_CONTROLLER_KEY = 'bbox_head.controller.weight'
_MASK_KEY = 'mask_head.mask_feature_head.conv_pred.weight'


def preset_from_file_name(name: str | os.PathLike) -> str | None:
    """'condinst_r50' for mmdet's ``condinst_r50_fpn_ms-poly-90k_coco_instance_<date>-<hash>.pth``
    (or any name holding ``condinst_r50`` / ``condinst-r50``), else None."""
    return 'condinst_r50' if _FILE_NAME_RE.search(Path(name).name) else None


def preset_from_shapes(state_dict: StateDict) -> str | None:
    """'condinst_r50' when the tensors have a ResNet-50 stem, a 169-parameter controller and the
    mask-feature branch, else None."""
    stem, controller = state_dict.get('backbone.conv1.weight'), state_dict.get(_CONTROLLER_KEY)
    if stem is None or controller is None or _MASK_KEY not in state_dict:
        return None
    cfg = get_config('condinst_r50')
    fits = tuple(stem.shape) == (64, 3, 7, 7) and int(controller.shape[0]) == cfg.num_dynamic_params
    return 'condinst_r50' if fits and 'backbone.layer4.2.conv3.weight' in state_dict else None


def _family_hint(state: dict) -> str:
    if any(k.startswith('proto_net.') for k in state):
        return 'YOLACT'
    if 'bbox_head.rtm_kernel.0.weight' in state:
        return 'RTMDet-Ins'
    if any(k.startswith('mask_head.kernel_convs') for k in state):
        return 'SOLOv2'
    if any(k.startswith('roi_heads.') or k.startswith('roi_head.') for k in state):
        return 'Mask R-CNN'
    return 'another model'


def load_condinst_file(path: str | os.PathLike) -> tuple[StateDict, dict]:
    """Read a checkpoint onto the CPU: (state dict, meta dict or {}).

    Raises CheckpointError (one line) for a missing, truncated or unreadable file, one holding
    Python objects, or one that is not a CondInst state dict (naming the family it looks like).
    """
    path = str(path)
    try:
        with torch.serialization.safe_globals(numpy_scalar_types()):
            obj = read_weights_file(path)
    except CheckpointError as exc:
        if 'mmengine' not in str(exc):
            raise
        raise CheckpointError(f"{exc}; keep only its weights with mmdet's "
                              'tools/model_converters/publish_model.py and load that file') from None
    state, meta = split_meta(obj)
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f'{path}: not a CondInst checkpoint (expected a state dict of tensors '
                              f"under 'state_dict', got {type(state).__name__})")
    state = strip_module_prefix(state)
    if _CLS_KEY not in state or _CONTROLLER_KEY not in state:
        raise CheckpointError(f'{path}: not a CondInst checkpoint (no bbox_head.controller keys; '
                              f'it looks like {_family_hint(state)})')
    return dict(state), meta


def resolve_config(path: str, state_dict: StateDict, preset: str = 'auto') -> CondInstConfig:
    """The preset (argument, or 'auto': the tensors' preset, the file name being irrelevant with
    a single preset) with the checkpoint's class count; CheckpointError for an unknown preset or
    tensors fitting none."""
    if preset not in ('auto', *PRESETS):
        raise CheckpointError(f'{path}: unknown CondInst preset {preset!r}; use one of {list(PRESETS)} or auto')
    by_shapes = preset_from_shapes(state_dict)
    if by_shapes is None:
        raise CheckpointError(f'{path}: CondInst weights of no known preset ({list(PRESETS)}): stem '
                              f"{tuple(state_dict.get('backbone.conv1.weight', torch.empty(0)).shape)}, "
                              f'controller {tuple(state_dict[_CONTROLLER_KEY].shape)[:1]}')
    if preset != 'auto' and preset != by_shapes:
        raise CheckpointError(f'{path}: preset {preset} does not fit the tensors (they fit {by_shapes})')
    return get_config(by_shapes, num_classes=int(state_dict[_CLS_KEY].shape[0]))


def load_model(path: str | os.PathLike, preset: str = 'auto') -> tuple[CondInst, CondInstConfig, dict]:
    """(model in eval mode on the CPU, config, meta) of a checkpoint, loaded with strict=True.
    CheckpointError (one line) names the first missing / unexpected / wrong-shape keys."""
    path = str(path)
    state, meta = load_condinst_file(path)
    cfg = resolve_config(path, state, preset)
    return load_strict(path, CondInst(cfg), state, cfg.name), cfg, meta
