"""The demo model shipped in the package, evaluated on freshly generated scenes.

The training set used image seeds 0..1599 (instseg-synth --seed 0, see models/MODEL_CARD.md);
this evaluation renders 100 scenes from seed 7 (image seeds 700000..700099), never seen in
training, and asserts COCO mask AP50 >= 0.90 and mask AP >= 0.60.
"""

import json
import pathlib

import pytest

from instseg_ros.core.classes import sidecar_class_names
from instseg_ros.core.predictor import InferenceParams, Predictor
from instseg_ros.synth.dataset import image_seed, write_coco_dataset
from instseg_ros.synth.scene import CLASS_NAMES
from instseg_ros.training.evaluate import evaluate_coco, predict_dataset

MODELS = pathlib.Path(__file__).resolve().parents[2] / 'instseg_ros' / 'models'
SHIPPED = MODELS / 'yolact_small_synth.pth'
TRAIN_SEED, TRAIN_IMAGES = 0, 1600
EVAL_SEED, EVAL_IMAGES = 7, 100


def test_shipped_model_is_small_and_names_its_classes():
    assert SHIPPED.is_file(), 'the demo model must be shipped in the package'
    assert SHIPPED.stat().st_size < 25 * 2**20
    assert sidecar_class_names(SHIPPED) == CLASS_NAMES
    card = (MODELS / 'MODEL_CARD.md').read_text()
    assert 'instseg-train' in card and 'AP50' in card


def test_evaluation_seeds_were_never_used_in_training():
    train = {image_seed(TRAIN_SEED, i) for i in range(TRAIN_IMAGES)}
    evaluation = {image_seed(EVAL_SEED, i) for i in range(EVAL_IMAGES)}
    assert not train & evaluation


@pytest.mark.slow
def test_shipped_model_accuracy_on_fresh_scenes(tmp_path):
    gt_json = write_coco_dataset(tmp_path / 'eval', EVAL_IMAGES, EVAL_SEED, image_format='png',
                                 write_depth=False)
    predictor = Predictor.from_checkpoint(SHIPPED, device='cpu')
    params = InferenceParams(score_threshold=0.05, max_detections=100)
    results, ids, _sec = predict_dataset(lambda img: predictor(img, 'bgr', params).to('cpu'),
                                         gt_json)
    metrics = evaluate_coco(gt_json, results, image_ids=ids)
    print(json.dumps(metrics, indent=1))
    assert len(ids) == EVAL_IMAGES
    assert metrics['mask']['AP50'] >= 0.90
    assert metrics['mask']['AP'] >= 0.60
