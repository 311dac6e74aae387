"""What reading mmdetection 3.x checkpoints (``{'meta', 'state_dict'}``) shares across the
families (RTMDet-Ins, CondInst, SOLOv2): the numpy globals a weights-only load allows, meta /
state dict split, the ``module.`` prefix, class names from ``meta['dataset_meta']`` and the strict
load. Each family keeps its own file checks and one-line error texts.
"""

from __future__ import annotations

from typing import Sequence

import torch

from instseg_ros.core.checkpoint import CheckpointError
from instseg_ros.core.classes import COCO_CLASSES

__all__ = ['load_strict', 'numpy_scalar_types', 'resolve_class_names', 'split_meta',
           'strip_module_prefix']

StateDict = dict[str, torch.Tensor]


def numpy_scalar_types() -> list:
    """Globals of pickled numpy scalars (meta of some published or training-run files holds e.g. a
    numpy float): plain data, allowed in the weights-only load (weights_only stays on)."""
    import numpy as np
    core = getattr(np, '_core', None) or np.core
    kinds = (np.float64, np.float32, np.int64, np.int32, np.bool_)
    return [core.multiarray.scalar, np.dtype, *{type(np.dtype(k)) for k in kinds}]


def split_meta(obj: object) -> tuple[object, dict]:
    """(``obj['state_dict']`` or ``obj`` itself, ``obj['meta']`` when it is a dict else {}) of a
    loaded file; the state is not checked here."""
    meta = obj.get('meta') if isinstance(obj, dict) and isinstance(obj.get('meta'), dict) else {}
    state = obj.get('state_dict', obj) if isinstance(obj, dict) else obj
    return state, meta


def strip_module_prefix(state: dict) -> dict:
    """``state`` without the ``module.`` prefix of a (Distributed)DataParallel save, when every key
    has it; else ``state`` itself."""
    if state and all(k.startswith('module.') for k in state):
        return {k[len('module.'):]: v for k, v in state.items()}
    return state


def resolve_class_names(path: str, num_classes: int, meta: dict,
                        class_names: Sequence[str] | None) -> tuple[str, ...]:
    """Names by label: ``class_names`` if given, else meta['dataset_meta']['classes'], else COCO for
    80 classes, else 'class_<i>'. CheckpointError (one line) when the count differs from the model's."""
    source = 'class names were given'
    if class_names is None:
        dataset_meta = meta.get('dataset_meta') if isinstance(meta, dict) else None
        stored = dataset_meta.get('classes') if isinstance(dataset_meta, dict) else None
        if stored is not None:
            class_names, source = [str(n) for n in stored], "names are in its meta['dataset_meta']"
        elif num_classes == len(COCO_CLASSES):
            class_names = COCO_CLASSES
        else:
            class_names = [f'class_{i}' for i in range(num_classes)]
    names = tuple(str(n) for n in class_names)
    if len(names) != num_classes:
        raise CheckpointError(f'{path}: the checkpoint has {num_classes} classes but {len(names)} {source}')
    return names


def load_strict(path: str, model: torch.nn.Module, state: StateDict, name: str) -> torch.nn.Module:
    """``model`` (preset ``name``) in eval mode with ``state`` loaded with strict=True; CheckpointError
    (one line) names the first missing / unexpected / wrong-shape keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f'{path}: does not fit {name} (missing {missing[:3]}, unexpected '
                              f'{unexpected[:3]}, wrong shape {wrong[:3]})')
    model.load_state_dict(state, strict=True)
    return model.eval()
