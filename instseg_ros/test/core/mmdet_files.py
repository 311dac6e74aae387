"""Files as mmdetection writes them, for the family tests (imported by name: pytest puts this
folder on sys.path)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch

_MMENGINE = ('mmengine', 'mmengine.logging', 'mmengine.logging.history_buffer')


def save_published(state_dict, path: Path, classes=None, meta=None, **extra) -> Path:
    """Write like mmdet publishes: {'meta': {'mmdet_version', ..., 'dataset_meta': {'classes'}},
    'state_dict'} (``meta``: more plain entries, e.g. {'epoch': 300}); ``extra``: more top-level
    entries (a training run's 'message_hub')."""
    meta = {'mmdet_version': '3.3.0', **(meta or {})}
    if classes is not None:
        meta['dataset_meta'] = {'classes': tuple(classes)}
    torch.save({'meta': meta, 'state_dict': state_dict, **extra}, str(path))
    return path


class HistoryBuffer:  # stands in for mmengine's (pickled under mmengine's module name)
    def __init__(self):
        self.values = [1.0]


def save_training_run(state_dict, path: Path, monkeypatch) -> Path:
    """Write like an mmengine training run: the published layout plus a 'message_hub' that pickles
    an mmengine object (``mmengine.logging.history_buffer.HistoryBuffer``), which a weights-only
    load refuses. The fake mmengine modules exist only while the file is written."""
    with monkeypatch.context() as patch:
        for name in _MMENGINE:
            patch.setitem(sys.modules, name, types.ModuleType(name))
        sys.modules[_MMENGINE[-1]].HistoryBuffer = HistoryBuffer
        patch.setattr(HistoryBuffer, '__module__', _MMENGINE[-1])
        return save_published(state_dict, path, message_hub={'log_scalars': {'loss': HistoryBuffer()}})


def one_line_error(excinfo) -> str:
    """The text of a raised error, checked to be one line that does not suggest weights_only=False."""
    text = str(excinfo.value)
    assert '\n' not in text and 'weights_only=False' not in text
    return text
