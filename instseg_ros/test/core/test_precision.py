"""precision fp32 / bf16 / fp16 of the network part: resolution rules, bf16 on a native-bf16 CPU.

bf16 must touch only the network: anchors, decoded boxes, scores and masks stay float32, and a
bf16 model's detections match its fp32 detections (random weights: raw outputs; the shipped model:
masks of real scenes).
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from instseg_ros.core.config import get_preset
from instseg_ros.core.models.yolact.yolact import Yolact, init_weights_
from instseg_ros.core.precision import cpu_has_native_bf16, resolve_precision
from instseg_ros.core.predictor import InferenceParams, Predictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_helpers import random_yolact_plus  # noqa: E402

CPU = torch.device('cpu')
SMALL_CFG = replace(get_preset('yolact_small', num_classes=4), max_size=128)
needs_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason='CPU without native bf16')


def _model():
    return init_weights_(Yolact(SMALL_CFG), torch.Generator().manual_seed(0))


def test_fp32_is_the_default_contiguous_and_bf16_channels_last():
    resolved = resolve_precision(None, CPU)
    assert resolved.name == 'fp32' and resolved.dtype == torch.float32 and not resolved.channels_last
    assert resolve_precision('fp32', CPU, channels_last=True).channels_last


@pytest.mark.parametrize('request_, half', [('fp16', False), (None, True), ('FP16', False)])
def test_fp16_on_the_cpu_is_one_warning_and_fp32(request_, half):
    with pytest.warns(RuntimeWarning, match='half precision is only used on CUDA') as caught:
        resolved = resolve_precision(request_, CPU, half=half)
    assert len(caught) == 1 and resolved.name == 'fp32' and resolved.dtype == torch.float32


def test_unknown_precision_is_a_value_error():
    with pytest.raises(ValueError, match="precision 'int4' is not one of fp32, bf16, fp16"):
        resolve_precision('int4', CPU)


def test_bf16_without_native_support_is_one_warning_and_fp32(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', lambda: False)
    with pytest.warns(RuntimeWarning, match='no native bf16') as caught:
        assert resolve_precision('bf16', CPU).name == 'fp32'
    assert len(caught) == 1


@needs_bf16
def test_bf16_predictor_converts_only_the_network():
    pred = Predictor(_model(), SMALL_CFG, device='cpu', precision='bf16')
    assert pred.precision == 'bf16' and not pred.half and pred.backend == 'torch'
    weight = pred.model.backbone.conv1.weight
    assert weight.dtype == torch.bfloat16 and weight.is_contiguous(memory_format=torch.channels_last)
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    inst = pred(image, params=InferenceParams(score_threshold=0.0, max_detections=10))
    assert len(inst) == 10
    assert inst.boxes_xyxy.dtype == torch.float32 and inst.scores.dtype == torch.float32
    assert inst.masks.dtype == torch.bool
    with torch.inference_mode():
        out = pred.network(torch.zeros(1, 3, 128, 128))
    assert out.loc.dtype == torch.bfloat16 and out.priors.dtype == torch.float32


@needs_bf16
def test_bf16_raw_outputs_close_to_fp32():
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = Predictor(_model(), SMALL_CFG, precision='fp32').network(x)
        low = Predictor(_model(), SMALL_CFG, precision='bf16').network(x)
    for name in ('loc', 'conf', 'coeffs', 'proto'):
        a, b = getattr(ref, name), getattr(low, name).float()
        # bf16 keeps 8 mantissa bits: relative error ~ 2**-8 per op, a few percent of the range
        assert (a - b).abs().max().item() <= 0.05 * a.abs().max().item() + 1e-3, name
    assert torch.equal(ref.priors, low.priors)


@needs_bf16
def test_bf16_yolact_plus_runs_its_deformable_convolutions_in_float32():
    """torchvision's deform_conv2d has no bf16 kernel: the DCN layers compute in float32 inside the
    bf16 network instead of failing every frame."""
    reference, cfg = random_yolact_plus()
    model, _ = random_yolact_plus()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = Predictor(reference, cfg, precision='fp32').network(x)
        low = Predictor(model, cfg, precision='bf16').network(x)
    assert low.loc.dtype == torch.bfloat16
    for name in ('loc', 'conf', 'coeffs', 'proto'):
        a, b = getattr(ref, name), getattr(low, name).float()
        assert (a - b).abs().max().item() <= 0.05 * a.abs().max().item() + 1e-3, name
    image = np.random.default_rng(0).integers(0, 256, (192, 256, 3), dtype=np.uint8)
    pred = Predictor(model, cfg, precision='bf16')
    inst = pred(image, params=InferenceParams(score_threshold=0.0, max_detections=5))
    assert len(inst) == 5 and inst.scores.dtype == torch.float32
