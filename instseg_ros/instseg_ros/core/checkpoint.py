"""Load / save YOLACT checkpoints in the official flat state-dict layout.

Official files (``yolact_base_54_800000.pth`` ...) are flat ``OrderedDict``s written by torch 1.x with
the legacy (non-zip) serialization and storages tagged ``cuda:0``; they load on CPU with
``torch.load(map_location='cpu', weights_only=True)``. Our own training checkpoints may wrap the state
dict as ``{'model': sd, ...}`` or ``{'state_dict': sd, ...}``. Keys are matched by name, never by order.
"""

from __future__ import annotations

import os
import re
import textwrap
import warnings
from pathlib import Path

import torch
from torch import nn

from instseg_ros.core.config import PRESETS, ModelConfig, get_preset
from instseg_ros.core.models.yolact.yolact import Yolact

StateDict = dict[str, torch.Tensor]

_FILE_NAME_RE = re.compile(r'^(?P<name>.+?)_(?P<epoch>\d+)_(?P<iter>\d+)(?:_interrupt)?$')
_DOWNSAMPLE_RE = re.compile(r'^fpn\.downsample_layers\.(\d+)\.')
_MAX_LISTED_KEYS = 5


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not fit the requested model."""


def _unwrap(obj: object, path: str) -> StateDict:
    """Flat state dict from a loaded object (flat dict or {'model'|'state_dict': sd} wrapper)."""
    if isinstance(obj, dict):
        for wrapper_key in ('model', 'state_dict'):
            inner = obj.get(wrapper_key)
            if isinstance(inner, dict):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f'{path}: not a YOLACT checkpoint (expected a state dict of tensors, '
                              f'got {type(obj).__name__})')
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'{path}: not a YOLACT checkpoint (non-tensor entries, e.g. {bad[:3]})')
    sd = dict(obj)
    if all(k.startswith('module.') for k in sd):  # saved from (Distributed)DataParallel
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    return sd


def drop_legacy_keys(state_dict: StateDict, num_downsample: int = 2) -> StateDict:
    """Reference compat deletions: pre-v1 ``backbone.layer*`` (not ``backbone.layers``) keys and
    ``fpn.downsample_layers.N`` for N >= num_downsample."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith('backbone.layer') and not key.startswith('backbone.layers'):
            continue
        m = _DOWNSAMPLE_RE.match(key)
        if m is not None and int(m.group(1)) >= num_downsample:
            continue
        out[key] = value
    return out


def read_weights_file(path: str | os.PathLike) -> object:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with one-line errors: every
    model family reads its files through this.

    Raises CheckpointError naming the file when it is missing, truncated, not a PyTorch file, or
    holds Python objects other than tensors and plain containers (refused, never unpickled).
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file not found')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt data (RuntimeError, EOFError, Unpickling...)
        detail = f'{type(exc).__name__}: {_shorten(exc)}'
        if 'weights_only' in str(exc):  # torch's text advises weights_only=False: never repeat that
            detail, referenced = _unpickler_detail(exc)
            if referenced:  # a reference to a Python class or function
                raise CheckpointError(f'{path}: refused: the file holds Python objects other than '
                                      f'tensors and plain containers ({detail}), which are never '
                                      'unpickled; pass a checkpoint that holds a state dict') from None
        raise CheckpointError(f'{path}: cannot read checkpoint (truncated, corrupt or not a PyTorch '
                              f'weights file): {detail}') from None


def load_state_dict_file(path: str | os.PathLike) -> StateDict:
    """Read a checkpoint onto the CPU (weights_only) and return its flat state dict (legacy keys dropped).

    Raises CheckpointError naming the file when it is missing, truncated or not a checkpoint.
    """
    return drop_legacy_keys(_unwrap(read_weights_file(path), str(path)))


def _unpickler_detail(exc: BaseException) -> tuple[str, bool]:
    """(what torch's weights-only unpickler refused, whether it was a reference to a Python
    class or function), without the rest of torch's text (which advises weights_only=False)."""
    referenced = re.search(r'GLOBAL\s+([\w.]+)', str(exc))
    if referenced is not None:  # only the name: torch's sentence goes on to advise allowing it
        return f'a reference to {referenced.group(1)[:80]}', True
    match = re.search(r'WeightsUnpickler error:\s*(.+?)(?:\n\n|Check the documentation|$)', str(exc), re.S)
    detail = ' '.join(match.group(1).split()) if match else 'not a plain weights file'
    return textwrap.shorten(detail, width=160, placeholder=' ...'), False


def _shorten(exc: BaseException, width: int = 300) -> str:
    """``str(exc)`` on one line, cut at a word boundary (with ' ...') when longer than ``width``."""
    return textwrap.shorten(' '.join(str(exc).split()), width=width, placeholder=' ...')


class PresetMismatchWarning(UserWarning):
    """The preset named by a checkpoint's file name does not fit its tensors (another one does)."""


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the state dict of ``Yolact(cfg)`` (built on the meta device, no memory)."""
    with torch.device('meta'):
        model = Yolact(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _mismatches(state_dict: StateDict, shapes: dict[str, tuple[int, ...]]) -> tuple[list, list, list]:
    """(missing keys, unexpected keys, 'key: file shape vs model shape' strings)."""
    missing = [k for k in shapes if k not in state_dict]
    unexpected = [k for k in state_dict if k not in shapes]
    wrong = [f'{k}: file {list(v.shape)} vs model {list(shapes[k])}' for k, v in state_dict.items()
             if k in shapes and tuple(v.shape) != shapes[k]]
    return missing, unexpected, wrong


def _mismatch_text(missing: list, unexpected: list, wrong: list) -> str:
    parts = []
    for label, items in (('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong)):
        if items:
            more = f' (+{len(items) - _MAX_LISTED_KEYS} more)' if len(items) > _MAX_LISTED_KEYS else ''
            parts.append(f'{len(items)} {label}: {items[:_MAX_LISTED_KEYS]}{more}')
    return '; '.join(parts)


def num_classes_from(state_dict: StateDict) -> int | None:
    """Classes incl. background from ``conf_layer`` / ``bbox_layer`` output channels, None if absent."""
    conf = state_dict.get('prediction_layers.0.conf_layer.weight')
    bbox = state_dict.get('prediction_layers.0.bbox_layer.weight')
    if conf is None or bbox is None or bbox.shape[0] % 4 or conf.shape[0] % (bbox.shape[0] // 4):
        return None
    return int(conf.shape[0] // (bbox.shape[0] // 4))


def preset_from_file_name(path: str | os.PathLike) -> str | None:
    """Preset named by the file (``<preset>_<epoch>_<iter>.pth`` or ``<preset>.pth``), None if unknown."""
    stem = Path(path).name.split('.')[0]
    m = _FILE_NAME_RE.match(stem)
    name = m.group('name') if m else stem
    return name if name in PRESETS else None


def preset_from_shapes(state_dict: StateDict) -> str | None:
    """Best preset guess from the tensors: backbone kind/depth, DCN and maskiou keys (550 vs 700 is
    indistinguishable: yolact_base is returned for a ResNet-101 v1 file)."""
    if 'backbone._preconv.0.weight' in state_dict:
        return 'yolact_darknet53'
    if 'backbone.layers.0.0.conv1.weight' not in state_dict:
        return None
    if 'backbone.layers.0.0.conv3.weight' not in state_dict:
        return 'yolact_small'
    depth_101 = any(k.startswith('backbone.layers.2.22.') for k in state_dict)
    plus = any(k.startswith('maskiou_net.') or 'conv_offset_mask' in k for k in state_dict)
    if plus:
        return 'yolact_plus_base' if depth_101 else 'yolact_plus_resnet50'
    return 'yolact_base' if depth_101 else 'yolact_resnet50'


def _config_for(name: str, state_dict: StateDict, num_classes: int | None) -> ModelConfig:
    return get_preset(name, num_classes if num_classes is not None else num_classes_from(state_dict))


def check_state_dict(path: str | os.PathLike, state_dict: StateDict, cfg: ModelConfig) -> None:
    """Raise CheckpointError (file, preset, first mismatching keys, what to do) unless shapes match exactly."""
    problems = _mismatches(state_dict, expected_shapes(cfg))
    if any(problems):
        guess = preset_from_shapes(state_dict)
        hint = f'pass the matching preset, e.g. preset:={guess}' if guess and guess != cfg.name else \
            'pass the matching preset (preset:=...) and num_classes, or use a checkpoint of this architecture'
        raise CheckpointError(f'{path}: checkpoint does not match preset {cfg.name!r} '
                              f'(num_classes={cfg.num_classes}): {_mismatch_text(*problems)}. '
                              f'To fix: {hint}.')


def infer_preset(path: str | os.PathLike, state_dict: StateDict, num_classes: int | None = None) -> ModelConfig:
    """ModelConfig for a checkpoint: preset from the file name if it fits the tensors, else from the
    tensor shapes (with a PresetMismatchWarning naming both when the file name named another one);
    num_classes from ``conf_layer`` unless given. Raises CheckpointError if none fits."""
    from_name = preset_from_file_name(path)
    candidates = [n for n in (from_name, preset_from_shapes(state_dict)) if n]
    for name in dict.fromkeys(candidates):
        cfg = _config_for(name, state_dict, num_classes)
        if not any(_mismatches(state_dict, expected_shapes(cfg))):
            if from_name is not None and name != from_name:
                warnings.warn(f'{Path(path).name}: the file name says preset {from_name!r} but the '
                              f'tensors fit {name!r}; loading it as {name!r} (pass preset:={name} '
                              'to confirm, or check that this is the file you meant)',
                              PresetMismatchWarning, stacklevel=2)
            return cfg
    if not candidates:
        raise CheckpointError(f'{path}: cannot infer the model preset from the file name or the tensors; '
                              f'pass preset:=<one of {sorted(PRESETS)}>')
    cfg = _config_for(candidates[0], state_dict, num_classes)
    check_state_dict(path, state_dict, cfg)  # raises with the detailed mismatch list
    return cfg


def load_model(path: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
               num_classes: int | None = None) -> tuple[Yolact, ModelConfig]:
    """Build the model for ``path`` (preset 'auto' = infer_preset), load it strictly, eval(), to(device)."""
    state_dict = load_state_dict_file(path)
    if preset == 'auto':
        cfg = infer_preset(path, state_dict, num_classes)
    else:
        if preset not in PRESETS:
            raise CheckpointError(f'{path}: unknown preset {preset!r}; use one of {sorted(PRESETS)} or auto')
        cfg = _config_for(preset, state_dict, num_classes)
        check_state_dict(path, state_dict, cfg)
    with torch.device('meta'):
        model = Yolact(cfg)
    model.to_empty(device='cpu')  # uninitialised storage, every entry is overwritten below
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # e.g. dtype that cannot be copied
        raise CheckpointError(f'{path}: loading into preset {cfg.name!r} failed: {exc}') from exc
    return model.eval().to(device), cfg


def save_checkpoint(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write the flat official-layout state dict of ``model`` (CPU, contiguous plain tensors).

    With ``extra`` (weights_only-safe values: numbers, strings, tensors, lists/dicts of them) the file is
    ``{'model': state_dict, **extra}``, which load_state_dict_file also accepts.
    """
    state_dict = {k: v.detach().to('cpu').contiguous().clone() for k, v in model.state_dict().items()}
    obj: dict = state_dict
    if extra:
        if 'model' in extra or 'state_dict' in extra:
            raise ValueError("extra must not contain the keys 'model' or 'state_dict'")
        obj = {'model': state_dict, **extra}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)
