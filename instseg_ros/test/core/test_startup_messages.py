"""Core startup messages: bad device names, file name vs tensor preset, truncated files."""

import warnings

import pytest
import torch

from instseg_ros.core.checkpoint import (PresetMismatchWarning, _shorten, infer_preset,
                                         load_state_dict_file, save_checkpoint)
from instseg_ros.core.config import get_preset
from instseg_ros.core.models.yolact.yolact import Yolact
from instseg_ros.core.predictor import resolve_device


def test_a_bad_device_name_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match=r"device 'bogus' is not a device name \(auto, cpu, cuda, "
                                         r"cuda:N\)"):
        resolve_device('bogus')
    assert resolve_device(' CPU ') == torch.device('cpu')


def test_file_name_disagreeing_with_the_tensors_warns_naming_both(tmp_path):
    path = tmp_path / 'yolact_base_54_800000.pth'
    save_checkpoint(Yolact(get_preset('yolact_small', num_classes=6)), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cfg = infer_preset(path, load_state_dict_file(path))
    assert cfg.name == 'yolact_small'
    messages = [str(w.message) for w in caught if issubclass(w.category, PresetMismatchWarning)]
    assert messages == ["yolact_base_54_800000.pth: the file name says preset 'yolact_base' but "
                        "the tensors fit 'yolact_small'; loading it as 'yolact_small' (pass "
                        'preset:=yolact_small to confirm, or check that this is the file you '
                        'meant)']


def test_long_error_texts_are_cut_at_a_word_boundary():
    text = _shorten(RuntimeError('word ' * 100 + 'end\nsecond line'), width=60)
    assert len(text) <= 60 and text.endswith(' ...') and '\n' not in text
    assert all(part in ('word', '...') for part in text.split())
    assert _shorten(RuntimeError('short one')) == 'short one'
