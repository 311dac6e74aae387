"""Mask / box AP of the shipped model for each precision x backend (bench/model.py --ap-scenes N).

The evaluation set of models/MODEL_CARD.md: ``instseg-synth --num-images N --seed 7`` (PNG, no
depth; N = 100 is the card's set), score threshold 0.05, up to 100 detections per image.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'instseg_ros'))
from instseg_ros.core.predictor import InferenceParams, Predictor  # noqa: E402
from instseg_ros.ros.model_loading import SHIPPED_WEIGHTS  # noqa: E402  (no rclpy import)
from instseg_ros.synth.dataset import write_coco_dataset  # noqa: E402
from instseg_ros.training.evaluate import evaluate_coco, predict_dataset  # noqa: E402

EVAL_SEED = 7


def shipped_model_ap(configs: list[tuple[str, str]], scenes: int, device: str = 'cpu') -> dict:
    """{'backend/precision': {'mask_AP', 'box_AP', 'ms_per_image', 'delta_mask_AP_vs_torch_fp32'}}."""
    params = InferenceParams(score_threshold=0.05, max_detections=100)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        gt = write_coco_dataset(Path(tmp) / 'eval', scenes, EVAL_SEED, image_format='png',
                                write_depth=False)
        for backend, precision in configs:
            predictor = Predictor.from_checkpoint(SHIPPED_WEIGHTS, device=device, precision=precision,
                                                  backend=backend)
            found, ids, sec = predict_dataset(lambda im: predictor(im, 'bgr', params).to('cpu'), gt)
            metrics = evaluate_coco(gt, found, image_ids=ids)
            results[f'{backend}/{precision}'] = {
                'mask_AP': round(100 * metrics['mask']['AP'], 2), 'box_AP': round(100 * metrics['box']['AP'], 2),
                'ms_per_image': round(1e3 * sec, 1), 'ran_precision': predictor.precision}
            print(f'  AP {backend}/{precision}: {results[f"{backend}/{precision}"]}', file=sys.stderr,
                  flush=True)
    reference = results.get('torch/fp32', {}).get('mask_AP')
    for value in results.values():
        if reference is not None:
            value['delta_mask_AP_vs_torch_fp32'] = round(value['mask_AP'] - reference, 2)
    return {'scenes': scenes, 'seed': EVAL_SEED, 'weights': SHIPPED_WEIGHTS.name, 'configs': results}
