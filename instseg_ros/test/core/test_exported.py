"""instseg-export and the onnxruntime / openvino backends on random-weight models.

Raw outputs of both runtimes within 1e-4 of torch fp32 (dynamic batch), masks through the shared
post-processing with IoU > 0.99, YOLACT++ DeformConv on ONNX Runtime (and a clear refusal on
OpenVINO), an official-format checkpoint through the CLI, missing packages as one clear error.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from instseg_ros.core.checkpoint import save_checkpoint
from instseg_ros.core.config import get_preset
from instseg_ros.core.export import export_onnx
from instseg_ros.core.exported import OnnxRuntimeNetwork, OpenVinoNetwork, load_network
from instseg_ros.core.models.yolact.yolact import Yolact, init_weights_
from instseg_ros.core.predictor import InferenceParams, Predictor
from instseg_ros.tools.export import main as export_main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_helpers import random_yolact_plus  # noqa: E402

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
pytest.importorskip('openvino')

SMALL_CFG = replace(get_preset('yolact_small', num_classes=4), max_size=128)
NAMES = ('a', 'b', 'c')
RAW = ('loc', 'conf', 'coeffs', 'proto', 'priors')


def _random(cfg, seed=0):
    return init_weights_(Yolact(cfg), torch.Generator().manual_seed(seed)).eval()


@pytest.fixture(scope='module')
def small_export(tmp_path_factory):
    path = tmp_path_factory.mktemp('export') / 'small.onnx'
    sidecar = export_onnx(_random(SMALL_CFG), SMALL_CFG, path, NAMES, source='random')
    return path, sidecar


def _max_diff(ref, out):
    return {name: (getattr(ref, name) - getattr(out, name)).abs().max().item() for name in RAW}


def test_sidecar_names_preset_classes_and_input(small_export):
    path, sidecar = small_export
    on_disk = json.loads(path.with_suffix('.json').read_text())
    assert on_disk == sidecar
    assert sidecar['preset'] == 'yolact_small' and sidecar['names'] == list(NAMES)
    assert sidecar['input']['shape'] == ['batch', 3, 128, 128] and sidecar['maskiou_graph'] is None
    assert sidecar['outputs']['proto'] == [32, 32, 32] and sidecar['opset'] == 17


@pytest.mark.parametrize('runtime', [OnnxRuntimeNetwork, OpenVinoNetwork])
def test_raw_outputs_within_1e4_of_torch_with_dynamic_batch(small_export, runtime):
    network = runtime(small_export[0])
    x = torch.randn(3, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = _random(SMALL_CFG)(x)
    out = network(x)
    assert out.loc.shape == ref.loc.shape and out.proto.shape == ref.proto.shape
    assert max(_max_diff(ref, out).values()) <= 1e-4


def _mask_ious(a, b):
    inter = (a.masks[:, None] & b.masks[None]).flatten(2).sum(-1).float()
    union = (a.masks[:, None] | b.masks[None]).flatten(2).sum(-1).float()
    # two empty masks agree (IoU 1)
    return torch.where(union > 0, inter / union.clamp(min=1), 1.0).diagonal()


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_predictor_masks_match_torch(small_export, backend):
    network, cfg, names = load_network(small_export[0], backend)
    exported = Predictor(network, cfg, class_names=names)
    reference = Predictor(_random(SMALL_CFG), SMALL_CFG, class_names=NAMES)
    assert (exported.backend, exported.precision, exported.model) == (backend, 'fp32', None)
    image = np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    params = InferenceParams(score_threshold=0.0, max_detections=15)
    a, b = reference(image, params=params), exported(image, params=params)
    assert len(a) == len(b) == 15 and torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-4)
    assert a.masks.flatten(1).any(1).sum().item() >= 3  # not vacuous: some masks have pixels
    assert _mask_ious(a, b).min().item() > 0.99
    assert b.class_names == NAMES


def test_yolact_plus_deform_conv_on_onnxruntime_and_refused_on_openvino(tmp_path):
    model, cfg = random_yolact_plus()
    path = tmp_path / 'plus.onnx'
    sidecar = export_onnx(model, cfg, path, ('x', 'y'))
    assert sidecar['opset'] == 19 and sidecar['maskiou_graph'] == 'plus.maskiou.onnx'
    network, _, _ = load_network(path, 'onnxruntime')
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    masks = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        ref, ref_iou = model(x), model.rescore(masks)
    assert max(_max_diff(ref, network(x)).values()) <= 1e-4
    assert (network.rescore(masks) - ref_iou).abs().max().item() <= 1e-4
    with pytest.raises(ValueError, match='deformable convolutions .* OpenVINO cannot convert'):
        load_network(path, 'openvino')


def test_official_checkpoint_through_the_cli(tmp_path, capsys):
    """A random yolact_resnet50 in the official layout, preset from the file name, at 550 px."""
    weights = tmp_path / 'yolact_resnet50_54_800000.pth'
    cfg = get_preset('yolact_resnet50')
    model = _random(cfg, seed=1)
    save_checkpoint(model, weights)
    assert export_main([str(weights)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'yolact_resnet50: 80 classes, input 550x550, opset 17'
    assert lines[1:] == [str(weights.with_suffix('.onnx')), str(weights.with_suffix('.json'))]
    x = torch.randn(1, 3, 550, 550, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        ref = model(x)
    for backend in ('onnxruntime', 'openvino'):
        network, loaded_cfg, names = load_network(weights.with_suffix('.onnx'), backend)
        assert loaded_cfg == cfg and names[0] == 'person'
        assert max(_max_diff(ref, network(x)).values()) <= 1e-4, backend


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    assert export_main([str(tmp_path / 'missing.pth')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('instseg-export: ') and err.count('\n') == 1
    assert export_main(['--random', 'yolact_small', '--out', str(tmp_path / 'x.pt')]) == 2


def test_checkpoint_is_exported_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('INSTSEG_CACHE_DIR', str(tmp_path / 'cache'))
    weights = tmp_path / 'tiny.pth'
    save_checkpoint(_random(get_preset('yolact_small', num_classes=3)), weights)
    first = Predictor.from_checkpoint(weights, preset='yolact_small', device='cpu', backend='onnxruntime')
    files = sorted(p.name for p in (tmp_path / 'cache' / 'onnx').iterdir())
    assert len(files) == 2 and files[0].startswith('tiny-') and files[0].endswith('.json')
    mtime = (tmp_path / 'cache' / 'onnx' / files[1]).stat().st_mtime_ns
    second = Predictor.from_checkpoint(weights, preset='yolact_small', device='cpu', backend='onnxruntime')
    assert (tmp_path / 'cache' / 'onnx' / files[1]).stat().st_mtime_ns == mtime
    assert first.cfg == second.cfg and first.backend == 'onnxruntime'


def test_missing_package_and_unoffered_precision_are_clear(small_export, monkeypatch):
    with pytest.warns(RuntimeWarning, match='precision bf16 is not offered by backend onnxruntime'):
        network, _, _ = load_network(small_export[0], 'onnxruntime', precision='bf16')
    assert network.precision.name == 'fp32'
    monkeypatch.setitem(sys.modules, 'openvino', None)
    with pytest.raises(ImportError, match="backend openvino needs the Python package 'openvino'"):
        load_network(small_export[0], 'openvino')


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(('info', text))

    def warning(self, text):
        self.lines.append(('warn', text))


def _node_params(**overrides):
    from instseg_ros.ros.params import PARAMETERS, NodeParams
    return NodeParams.from_values({**{s.name: s.default for s in PARAMETERS}, 'device': 'cpu', **overrides})


def test_node_startup_passes_precision_and_backend(tmp_path, monkeypatch):
    """load_pipeline (the node's and instseg-bag's startup) with backend/precision parameters."""
    from instseg_ros.ros.model_loading import StartupError, load_pipeline
    monkeypatch.setenv('INSTSEG_CACHE_DIR', str(tmp_path))
    log = _Log()
    pipeline = load_pipeline(_node_params(backend='openvino', precision='fp16'), log)
    assert (pipeline.predictor.backend, pipeline.predictor.precision) == ('openvino', 'fp32')
    assert pipeline.predictor.class_names[0] == 'ball'  # the shipped model's side-car names
    assert any(level == 'warn' and 'precision fp16 is not offered by backend openvino' in text
               for level, text in log.lines)
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(StartupError, match="^backend onnxruntime needs the Python package 'onnxruntime'"):
        load_pipeline(_node_params(backend='onnxruntime'), _Log())
