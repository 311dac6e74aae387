"""Checkpoint loading: legacy cuda-tagged official files, preset inference, clear errors, save round trip."""

import json
import zipfile
from pathlib import Path

import pytest
import torch

from instseg_ros.core.checkpoint import (CheckpointError, PresetMismatchWarning, drop_legacy_keys,
                                         infer_preset, load_model,
                                         load_state_dict_file, preset_from_file_name, preset_from_shapes,
                                         save_checkpoint)
from instseg_ros.core.config import OFFICIAL_PRESETS, get_preset
from instseg_ros.core.models.yolact import Yolact, init_weights_

STATE_DICTS = Path(__file__).resolve().parents[1] / 'data' / 'state_dicts'


def random_official_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the official (key, shape) list; num_batches_tracked as int64."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in json.loads((STATE_DICTS / f'yolact_state_dict_{name}.json').read_text()):
        if key.endswith('num_batches_tracked'):
            sd[key] = torch.tensor(800000, dtype=torch.int64)
        elif key.endswith('running_var'):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.05
    return sd


def save_legacy_cuda_tagged(obj, path: Path, monkeypatch) -> None:
    """Write like torch 1.0-1.3 on a GPU: legacy (non-zip) pickle whose storages are tagged 'cuda:0'."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, 'location_tag', lambda storage: 'cuda:0')
        torch.save(obj, path, _use_new_zipfile_serialization=False)


def meta_state_dict(name: str, **kw) -> dict[str, torch.Tensor]:
    with torch.device('meta'):
        return Yolact(get_preset(name, **kw)).state_dict()


@pytest.fixture(scope='module')
def resnet50_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'yolact_resnet50_54_800000.pth'
    sd = random_official_state_dict('yolact_resnet50')
    monkeypatch = pytest.MonkeyPatch()
    try:
        save_legacy_cuda_tagged(sd, path, monkeypatch)
    finally:
        monkeypatch.undo()
    return path, sd


def test_official_legacy_cuda_file_loads_strictly_on_cpu(resnet50_file):
    path, sd = resnet50_file
    assert not zipfile.is_zipfile(path)
    assert b'cuda:0' in path.read_bytes()[:200_000]  # the location tags precede the raw storages
    model, cfg = load_model(path)  # preset inferred from the file name
    assert cfg.name == 'yolact_resnet50' and cfg.num_classes == 81 and not model.training
    loaded = model.state_dict()
    assert list(loaded) == list(sd)
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    assert loaded['backbone.layers.2.5.conv2.weight'].device.type == 'cpu'


def test_wrong_preset_names_file_preset_keys_and_fix(resnet50_file):
    path, _ = resnet50_file
    with pytest.raises(CheckpointError) as info:
        load_model(path, preset='yolact_base')
    msg = str(info.value)
    assert str(path) in msg and "'yolact_base'" in msg
    assert 'missing' in msg and 'backbone.layers.2.6.conv1.weight' in msg
    assert 'preset:=yolact_resnet50' in msg


def test_truncated_and_non_checkpoint_files(tmp_path, monkeypatch):
    model = init_weights_(Yolact(get_preset('yolact_small', num_classes=3)))
    good_zip, good_legacy = tmp_path / 'yolact_small_1_10.pth', tmp_path / 'yolact_small_1_11.pth'
    save_checkpoint(model, good_zip)
    save_legacy_cuda_tagged(model.state_dict(), good_legacy, monkeypatch)
    assert load_model(good_legacy)[1].num_classes == 3
    broken = []
    for i, good in enumerate((good_zip, good_legacy)):
        truncated = tmp_path / f'yolact_small_2_2{i}.pth'
        truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        broken.append(truncated)
    text = tmp_path / 'notes.pth'
    text.write_text('these are not weights\n')
    for path in broken + [text, tmp_path / 'missing.pth']:
        with pytest.raises(CheckpointError, match=str(path.name)):
            load_model(path)
    torch.save({'epoch': 3}, tmp_path / 'meta_only.pth')
    with pytest.raises(CheckpointError, match='not a YOLACT checkpoint'):
        load_state_dict_file(tmp_path / 'meta_only.pth')


def test_save_load_round_trip_small_with_wrapper(tmp_path):
    model = init_weights_(Yolact(get_preset('yolact_small', num_classes=4)), torch.Generator().manual_seed(7)).eval()
    flat, wrapped = tmp_path / 'yolact_small_3_300.pth', tmp_path / 'yolact_small_4_400.pth'
    save_checkpoint(model, flat)
    save_checkpoint(model, wrapped, extra={'epoch': 4, 'iteration': 400})
    raw = torch.load(wrapped, map_location='cpu', weights_only=True)
    assert raw['epoch'] == 4 and set(raw['model']) == set(model.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = model(x)
        for path in (flat, wrapped):
            loaded, cfg = load_model(path)
            assert (cfg.name, cfg.num_classes) == ('yolact_small', 4)
            torch.testing.assert_close(loaded(x).conf, expected.conf, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match='wrong shape.*conf_layer'):
        load_model(flat, preset='yolact_small', num_classes=81)


def test_legacy_compat_keys_are_dropped(tmp_path):
    model = init_weights_(Yolact(get_preset('yolact_small', num_classes=3)))
    sd = dict(model.state_dict())
    sd['backbone.layer1.0.conv1.weight'] = torch.zeros(2)  # pre-v1 name
    sd['fpn.downsample_layers.2.weight'] = torch.zeros(2)  # v1.0 extra level
    kept = drop_legacy_keys(sd)
    assert 'backbone.layer1.0.conv1.weight' not in kept and 'fpn.downsample_layers.2.weight' not in kept
    assert 'fpn.downsample_layers.1.weight' in kept and 'backbone.layers.0.0.conv1.weight' in kept
    path = tmp_path / 'old.pth'
    torch.save({'module.' + k: v for k, v in sd.items()}, path)  # DataParallel prefix too
    loaded, cfg = load_model(path)  # no preset in the name -> from shapes
    assert cfg.name == 'yolact_small' and cfg.num_classes == 3
    assert torch.equal(loaded.fpn.downsample_layers[1].weight, model.fpn.downsample_layers[1].weight)


def test_preset_from_file_name():
    assert preset_from_file_name('/w/yolact_plus_base_54_800000.pth') == 'yolact_plus_base'
    assert preset_from_file_name('yolact_im700_54_800000.pth') == 'yolact_im700'
    assert preset_from_file_name('yolact_base_10_1000_interrupt.pth') == 'yolact_base'
    assert preset_from_file_name('yolact_small.pth') == 'yolact_small'
    assert preset_from_file_name('weights_1_2.pth') is None


@pytest.mark.parametrize('name', OFFICIAL_PRESETS)
def test_preset_from_shapes(name):
    expected = 'yolact_base' if name == 'yolact_im700' else name  # 550 vs 700 has identical tensors
    assert preset_from_shapes(meta_state_dict(name)) == expected


def test_infer_preset_name_checked_against_shapes():
    base_sd = meta_state_dict('yolact_base')
    assert infer_preset('yolact_im700_54_800000.pth', base_sd).name == 'yolact_im700'  # name fits: kept
    with pytest.warns(PresetMismatchWarning, match="says preset 'yolact_plus_base' but the "
                      "tensors fit 'yolact_resnet50'"):
        cfg = infer_preset('yolact_plus_base_54_800000.pth', meta_state_dict('yolact_resnet50'))
    assert cfg.name == 'yolact_resnet50'  # renamed file: the tensors decide, with a warning
    cfg = infer_preset('model.pth', meta_state_dict('yolact_darknet53', num_classes=9))
    assert (cfg.name, cfg.num_classes) == ('yolact_darknet53', 9)
    with pytest.raises(CheckpointError, match='cannot infer'):
        infer_preset('model.pth', {'foo.weight': torch.zeros(1)})
