"""The shipped model under every precision x backend on unseen scenes of its evaluation set.

The first SCENES scenes of models/MODEL_CARD.md's set (seed 7; the 100-scene figures are in
bench/results/model.json, ``shipped_model_accuracy``): mask AP of bf16 and of the exported runtimes
within 0.5 AP points of torch fp32, fp32 runtimes within 0.1; bf16 masks of the fp32 detections
with IoU > 0.95 for at least 99 % of them.
"""

import sys
from pathlib import Path

import pytest

from instseg_ros.core.precision import cpu_has_native_bf16
from instseg_ros.core.predictor import InferenceParams, Predictor
from instseg_ros.ros.model_loading import SHIPPED_WEIGHTS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_helpers import best_mask_ious, eval_scenes, evaluate_predictor  # noqa: E402

pytest.importorskip('onnxruntime')
pytest.importorskip('openvino')

SCENES, SEED = 25, 7
PARAMS = InferenceParams(score_threshold=0.05, max_detections=100)
CONFIGS = [('torch', 'fp32'), ('onnxruntime', 'fp32'), ('openvino', 'fp32')]
if cpu_has_native_bf16():
    CONFIGS += [('torch', 'bf16'), ('openvino', 'bf16')]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """{(backend, precision): (mask AP, box AP, [Instances per image])}."""
    coco, images = eval_scenes(tmp_path_factory.mktemp('eval'), SCENES, SEED)
    out = {}
    with pytest.MonkeyPatch.context() as patch:  # the checkpoint's export goes to a temporary cache
        patch.setenv('INSTSEG_CACHE_DIR', str(tmp_path_factory.mktemp('cache')))
        predictors = {config: Predictor.from_checkpoint(SHIPPED_WEIGHTS, device='cpu', precision=config[1],
                                                        backend=config[0]) for config in CONFIGS}
    for config, predictor in predictors.items():
        metrics, found = evaluate_predictor(predictor, coco, images, PARAMS)
        out[config] = (metrics['mask']['AP'], metrics['box']['AP'], found)
    return out


@pytest.mark.parametrize('config', CONFIGS[1:], ids='/'.join)
def test_mask_ap_within_bounds_of_torch_fp32(runs, config):
    reference_ap = runs['torch', 'fp32'][0]
    assert reference_ap > 0.6  # the model works on these scenes (card: 72.1 on all 100)
    bound = 0.001 if config[1] == 'fp32' else 0.005
    print(config, runs[config][0], reference_ap)
    assert abs(runs[config][0] - reference_ap) <= bound


@pytest.mark.skipif(not cpu_has_native_bf16(), reason='CPU without native bf16')
def test_bf16_masks_match_fp32_masks(runs):
    ious = best_mask_ious(runs['torch', 'fp32'][2], runs['torch', 'bf16'][2])
    print(f'bf16 vs fp32 mask IoU over {len(ious)} instances: min {ious.min():.4f}, '
          f'1st percentile {ious.quantile(0.01):.4f}, median {ious.median():.4f}')
    assert len(ious) >= 80  # 2-6 objects per scene
    assert (ious > 0.95).float().mean().item() >= 0.99


def test_fp32_runtimes_masks_equal_torch(runs):
    for backend in ('onnxruntime', 'openvino'):
        ious = best_mask_ious(runs['torch', 'fp32'][2], runs[backend, 'fp32'][2])
        assert ious.min().item() > 0.99, backend
