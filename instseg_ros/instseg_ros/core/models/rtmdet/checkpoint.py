"""Load mmdetection 3.x RTMDet-Ins checkpoints (``{'meta', 'state_dict'}``) with weights_only.

Published files (``rtmdet-ins_tiny_8xb32-300e_coco_20221130_151134-af2cf8b6.pth``) hold plain
types only. Training-run files also carry 'optimizer', 'message_hub', ...: when those are plain
they are ignored (only 'state_dict' is used); when they hold mmengine objects the file cannot be
read with weights_only and is refused with a pointer to mmdet's publish_model tool.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from instseg_ros.core.checkpoint import CheckpointError, PresetMismatchWarning
from instseg_ros.core.models.mmdet_checkpoint import load_strict, numpy_scalar_types, split_meta, strip_module_prefix
from instseg_ros.core.models.rtmdet.config import PRESETS, RtmdetInsConfig, get_config
from instseg_ros.core.models.rtmdet.model import RTMDetIns

StateDict = dict[str, torch.Tensor]

_FILE_NAME_RE = re.compile(r'rtmdet[-_]ins[-_](tiny|s|m)(?:[-_.]|$)', re.IGNORECASE)
#: stem width (output channels of backbone.stem.0) -> preset
_STEM_WIDTHS = {get_config(p).stem_channels // 2: p for p in PRESETS}
_CLS_KEY = 'bbox_head.rtm_cls.0.weight'
_STEM_KEY = 'backbone.stem.0.conv.weight'


def preset_from_file_name(name: str | os.PathLike) -> str | None:
    """'rtmdet_ins_tiny' | 'rtmdet_ins_s' | 'rtmdet_ins_m' named by a file name (mmdet's
    ``rtmdet-ins_s_8xb32-...pth`` or ours ``rtmdet_ins_s...``), else None."""
    match = _FILE_NAME_RE.search(Path(name).name)
    return f'rtmdet_ins_{match.group(1).lower()}' if match else None


def preset_from_shapes(state_dict: StateDict) -> str | None:
    """The preset whose stem width fits the tensors (the width alone tells tiny/s/m apart)."""
    stem = state_dict.get(_STEM_KEY)
    return None if stem is None else _STEM_WIDTHS.get(int(stem.shape[0]))


def _read(path: str) -> object:
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file not found')
    try:
        with torch.serialization.safe_globals(numpy_scalar_types()):
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # corrupt / truncated data raise many types
        text = ' '.join(str(exc).split())
        if 'mmengine' in text or 'HistoryBuffer' in text:
            raise CheckpointError(
                f'{path}: a training-run checkpoint holding mmengine objects (message_hub); keep only '
                "its weights with mmdet's tools/model_converters/publish_model.py and load that file"
            ) from None
        raise CheckpointError(f'{path}: cannot read checkpoint (truncated, corrupt or not a PyTorch '
                              f'weights file): {type(exc).__name__}: {text[:200]}') from None


def load_rtmdet_file(path: str | os.PathLike) -> tuple[StateDict, dict]:
    """Read a checkpoint onto the CPU: (state dict, meta dict or {}).

    Raises CheckpointError (one line) for a missing, truncated or unreadable file, or one that is
    not an RTMDet-Ins state dict (e.g. a YOLACT or Mask R-CNN checkpoint).
    """
    path = str(path)
    obj = _read(path)
    state, meta = split_meta(obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{path}: not an RTMDet-Ins checkpoint (expected a state dict of tensors '
                              f"under 'state_dict', got {type(state).__name__})")
    state = strip_module_prefix(state)
    if _CLS_KEY not in state or 'bbox_head.rtm_kernel.0.weight' not in state:
        family = 'YOLACT' if any(k.startswith('proto_net.') for k in state) else 'another model'
        raise CheckpointError(f'{path}: not an RTMDet-Ins checkpoint (no bbox_head.rtm_kernel keys; '
                              f'it looks like {family})')
    return dict(state), meta


def resolve_config(path: str, state_dict: StateDict, preset: str = 'auto') -> RtmdetInsConfig:
    """Preset (argument, else file name, else tensor shapes) with the checkpoint's class count. A
    file name contradicting the tensors gives a PresetMismatchWarning and the tensors' preset; an
    explicit preset contradicting them a CheckpointError."""
    if preset not in ('auto', *PRESETS):
        raise CheckpointError(f'{path}: unknown RTMDet-Ins preset {preset!r}; use one of {list(PRESETS)} or auto')
    by_shapes = preset_from_shapes(state_dict)
    chosen = preset if preset != 'auto' else (preset_from_file_name(path) or by_shapes)
    if preset == 'auto' and by_shapes is not None and chosen != by_shapes:
        warnings.warn(f'{path}: the file name says {chosen} but the tensors are {by_shapes}; using '
                      f'{by_shapes}', PresetMismatchWarning, stacklevel=3)
        chosen = by_shapes
    if chosen is None:
        raise CheckpointError(f'{path}: RTMDet-Ins weights of no known preset ({list(PRESETS)}); '
                              f'stem width {tuple(state_dict[_STEM_KEY].shape)[:1]}')
    if by_shapes != chosen:
        raise CheckpointError(f'{path}: preset {chosen} does not fit the tensors (they fit '
                              f'{by_shapes or "no known preset"})')
    return get_config(chosen, num_classes=int(state_dict[_CLS_KEY].shape[0]))


def load_model(path: str | os.PathLike, preset: str = 'auto') -> tuple[RTMDetIns, RtmdetInsConfig, dict]:
    """(model in eval mode on the CPU, config, meta) of a checkpoint, loaded with strict=True."""
    path = str(path)
    state, meta = load_rtmdet_file(path)
    cfg = resolve_config(path, state, preset)
    return load_strict(path, RTMDetIns(cfg), state, cfg.name), cfg, meta
