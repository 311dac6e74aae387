"""The network on a CUDA GPU in fp32 / fp16 / bf16 (run by bench/gpu_check.sh; skipped without CUDA).

On the shipped model's evaluation scenes (the first SCENES of models/MODEL_CARD.md's set, seed 7):
CUDA fp32 gives the CPU's detections (labels equal, scores within 1e-3, masks IoU > 0.99) and mask
AP within 0.1; fp16 and bf16 keep mask AP within 0.5 of CUDA fp32 and IoU > 0.95 on at least 99 %
of the confident masks. YOLACT++'s deformable convolutions run in fp16 (torchvision's CUDA kernel)
and in bf16 (float32 inside the bf16 network); a batch equals its images one at a time.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from instseg_ros.core.models.yolact.yolact import Yolact
from instseg_ros.core.precision import resolve_precision
from instseg_ros.core.predictor import InferenceParams, Predictor
from instseg_ros.ros.model_loading import SHIPPED_WEIGHTS as SHIPPED

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_helpers import best_mask_ious, eval_scenes, evaluate_predictor, random_yolact_plus  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')

CUDA = torch.device('cuda')
SCENES, SEED = 25, 7
PARAMS = InferenceParams(score_threshold=0.05, max_detections=100)
CONFIGS = [('cpu', 'fp32'), ('cuda', 'fp32'), ('cuda', 'fp16'), ('cuda', 'bf16')]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """{(device, precision): (mask AP, [Instances on the CPU per image], precision that ran)}."""
    coco, images = eval_scenes(tmp_path_factory.mktemp('eval'), SCENES, SEED)
    out = {}
    for device, precision in CONFIGS:
        predictor = Predictor.from_checkpoint(SHIPPED, device=device, precision=precision)
        metrics, found = evaluate_predictor(predictor, coco, images, PARAMS)
        out[device, precision] = (metrics['mask']['AP'], found, predictor.precision)
    return out


def test_precision_resolution_on_cuda():
    fp16 = resolve_precision('fp16', CUDA)
    assert fp16.name == 'fp16' and fp16.dtype == torch.float16 and fp16.channels_last
    assert resolve_precision(None, CUDA, half=True).name == 'fp16'
    expected = 'bf16' if torch.cuda.is_bf16_supported() else 'fp32'
    assert resolve_precision('bf16', CUDA).name == expected


def test_cuda_fp32_gives_the_cpu_detections(runs):
    cpu_ap, cpu, _ = runs['cpu', 'fp32']
    gpu_ap, gpu, _ = runs['cuda', 'fp32']
    assert cpu_ap > 0.6 and abs(gpu_ap - cpu_ap) <= 0.001
    for a, b in zip(cpu, gpu):
        confident_a, confident_b = a.scores > 0.3, b.scores > 0.3
        assert torch.equal(a.labels[confident_a], b.labels[confident_b])
        torch.testing.assert_close(a.scores[confident_a], b.scores[confident_b], rtol=0, atol=1e-3)
    assert best_mask_ious(cpu, gpu).min().item() > 0.99


@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_reduced_precision_on_cuda_keeps_ap_and_masks(runs, precision):
    reference_ap, reference, _ = runs['cuda', 'fp32']
    ap, found, ran = runs['cuda', precision]
    if ran != precision:
        pytest.skip(f'{precision} not supported on this GPU')
    print(f'{precision}: mask AP {ap:.4f} vs fp32 {reference_ap:.4f}')
    assert abs(ap - reference_ap) <= 0.005
    ious = best_mask_ious(reference, found)
    print(f'{precision} vs fp32 mask IoU over {len(ious)} instances: min {ious.min():.4f}, '
          f'median {ious.median():.4f}')
    assert len(ious) >= 80 and (ious > 0.95).float().mean().item() >= 0.99


@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_yolact_plus_deformable_convolutions_on_cuda(precision):
    if precision == 'bf16' and not torch.cuda.is_bf16_supported():
        pytest.skip('no bf16 on this GPU')
    state, cfg = random_yolact_plus()
    models = {}
    for name in ('fp32', precision):
        model = Yolact(cfg)
        model.load_state_dict(state.state_dict())
        models[name] = Predictor(model, cfg, device=CUDA, precision=name)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)).to(CUDA)
    with torch.inference_mode():
        ref, low = models['fp32'].network(x), models[precision].network(x)
    assert low.loc.dtype == models[precision].dtype
    for key in ('loc', 'conf', 'coeffs', 'proto'):
        a, b = getattr(ref, key), getattr(low, key).float()
        assert (a - b).abs().max().item() <= 0.05 * a.abs().max().item() + 1e-3, key
    image = np.random.default_rng(0).integers(0, 256, (192, 256, 3), dtype=np.uint8)
    inst = models[precision](image, params=InferenceParams(score_threshold=0.0, max_detections=5))
    assert len(inst) == 5 and inst.scores.dtype == torch.float32 and inst.masks.device.type == 'cuda'


def test_batch_on_cuda_equals_one_image_at_a_time():
    predictor = Predictor.from_checkpoint(SHIPPED, device=CUDA)
    from instseg_ros.synth.scene import Camera, render_scene
    images = [render_scene(100 + i, Camera(640, 480)).image_bgr for i in range(3)]
    batch = predictor.predict_batch(images, 'bgr', PARAMS)
    for image, together in zip(images, batch):
        alone = predictor(image, 'bgr', PARAMS)
        assert torch.equal(alone.labels, together.labels)
        torch.testing.assert_close(alone.scores, together.scores, rtol=0, atol=1e-4)
        assert (alone.masks ^ together.masks).sum().item() <= 0.001 * alone.masks.numel()


def test_onnxruntime_gpu_provider_matches_torch(tmp_path, monkeypatch):
    ort = pytest.importorskip('onnxruntime')
    if 'CUDAExecutionProvider' not in ort.get_available_providers():
        pytest.skip('onnxruntime without the CUDA execution provider (onnxruntime-gpu not installed)')
    monkeypatch.setenv('INSTSEG_CACHE_DIR', str(tmp_path))
    torch_gpu = Predictor.from_checkpoint(SHIPPED, device=CUDA)
    exported = Predictor.from_checkpoint(SHIPPED, device=CUDA, backend='onnxruntime')
    assert exported.network.providers[0] in ('TensorrtExecutionProvider', 'CUDAExecutionProvider')
    from instseg_ros.synth.scene import Camera, render_scene
    image = render_scene(3, Camera(640, 480)).image_bgr
    a, b = torch_gpu(image, 'bgr', PARAMS).to('cpu'), exported(image, 'bgr', PARAMS).to('cpu')
    assert torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-3)
