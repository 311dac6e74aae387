"""Tests of the COCO evaluation helpers (no model needed)."""

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from instseg_ros.synth.dataset import write_coco_dataset
from instseg_ros.synth.scene import render_scene
from instseg_ros.training.evaluate import (evaluate_coco, format_table, instances_to_coco_results,
                                           predict_dataset, resolve_dataset)

H, W = 64, 80
# COCO's 101-point interpolated AP when exactly half of the ground truth is found at precision 1
HALF_RECALL_AP = 51 / 101

# (image_id, category_id, x, y) of 20x20 squares: category 1 has 4 instances, category 2 has 2
GT_SQUARES = [(1, 1, 2, 2), (1, 1, 40, 30), (1, 2, 10, 35),
              (2, 1, 5, 5), (2, 1, 50, 10), (2, 2, 30, 40)]


def square(x: int, y: int, size: int = 20) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y:y + size, x:x + size] = True
    return m


@pytest.fixture()
def gt_json(tmp_path):
    anns = []
    for k, (image_id, cat, x, y) in enumerate(GT_SQUARES):
        rle = mask_utils.encode(np.asfortranarray(square(x, y).astype(np.uint8)))
        anns.append({'id': k + 1, 'image_id': image_id, 'category_id': cat, 'iscrowd': 0,
                     'segmentation': {'size': rle['size'], 'counts': rle['counts'].decode()},
                     'area': 400, 'bbox': [x, y, 20, 20]})
    data = {'images': [{'id': i, 'file_name': f'{i}.png', 'width': W, 'height': H}
                       for i in (1, 2)],
            'annotations': anns,
            'categories': [{'id': 1, 'name': 'a'}, {'id': 2, 'name': 'b'}]}
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(data))
    return path


def predictions(squares, score=1.0):
    """COCO results for (image_id, category_id, x, y[, score]) squares."""
    out = []
    for item in squares:
        image_id, cat, x, y = item[:4]
        s = item[4] if len(item) > 4 else score
        out += instances_to_coco_results(
            image_id, np.array([[x, y, x + 20, y + 20]], dtype=np.float32), np.array([s]),
            np.array([cat - 1]), square(x, y)[None])
    return out


def test_ground_truth_scores_perfect(gt_json):
    metrics = evaluate_coco(gt_json, predictions(GT_SQUARES))
    for key in ('box', 'mask'):
        assert metrics[key]['AP'] == pytest.approx(1.0)
        assert metrics[key]['AP50'] == pytest.approx(1.0)
        assert metrics[key]['AP75'] == pytest.approx(1.0)
        assert metrics[key]['APs'] == pytest.approx(1.0)
        assert metrics[key]['APm'] == -1.0 and metrics[key]['APl'] == -1.0  # no such GT
    table = format_table(metrics)
    assert '| box | 100.0 | 100.0 | 100.0 | 100.0 | - | - |' in table
    assert '| mask | 100.0 | 100.0 | 100.0 | 100.0 | - | - |' in table


def test_dropping_half_of_a_category(gt_json):
    kept = [sq for sq in GT_SQUARES if not (sq[1] == 1 and sq[0] == 2)]  # drop 2 of 4 'a'
    metrics = evaluate_coco(gt_json, predictions(kept), per_class=True)
    expected = (1.0 + HALF_RECALL_AP) / 2  # category 'b' perfect, 'a' half recall
    for key in ('box', 'mask'):
        assert metrics[key]['AP50'] == pytest.approx(expected)
        assert metrics[key]['AP'] == pytest.approx(expected)
        assert metrics[key]['AP50'] < 1.0
    assert metrics['per_class']['mask']['a']['AP50'] == pytest.approx(HALF_RECALL_AP)
    assert metrics['per_class']['mask']['b']['AP'] == pytest.approx(1.0)
    assert '| a |' in format_table(metrics)


def test_shifted_prediction_lowers_strict_ap(gt_json):
    # shift one 'b' square by 4 px: IoU = 16*20 / (2*400 - 320) = 2/3, scored below the exact one
    preds = [sq for sq in GT_SQUARES if sq != (2, 2, 30, 40)] + [(2, 2, 34, 40, 0.9)]
    metrics = evaluate_coco(gt_json, predictions(preds))
    # 'b' matches at IoU 0.50..0.65 (4 thresholds) and has half recall at 0.70..0.95 (6)
    ap_b = (4 * 1.0 + 6 * HALF_RECALL_AP) / 10
    for key in ('box', 'mask'):
        assert metrics[key]['AP50'] == pytest.approx(1.0)
        assert metrics[key]['AP75'] == pytest.approx((1.0 + HALF_RECALL_AP) / 2)
        assert metrics[key]['AP'] == pytest.approx((1.0 + ap_b) / 2)


def test_no_predictions(gt_json):
    metrics = evaluate_coco(gt_json, [])
    assert metrics['box']['AP'] == 0.0 and metrics['mask']['AP50'] == 0.0


def test_instances_to_coco_results_from_tensors():
    masks = torch.zeros((2, H, W), dtype=torch.bool)
    masks[0, 3:9, 4:14] = True
    masks[1, 20:30, 40:45] = True
    res = instances_to_coco_results(
        7, torch.tensor([[4.0, 3.0, 14.0, 9.0], [40.0, 20.0, 45.0, 30.0]]),
        torch.tensor([0.9, 0.25]), torch.tensor([2, 0]), masks, {0: 5, 2: 9})
    assert [r['category_id'] for r in res] == [9, 5]
    assert [r['image_id'] for r in res] == [7, 7]
    assert res[0]['score'] == pytest.approx(0.9) and res[1]['score'] == pytest.approx(0.25)
    assert res[0]['bbox'] == [4.0, 3.0, 10.0, 6.0]
    assert isinstance(res[1]['segmentation']['counts'], str)
    for r, m in zip(res, masks.numpy()):
        np.testing.assert_array_equal(mask_utils.decode(r['segmentation']).astype(bool), m)
    json.dumps(res)  # serialisable
    empty = instances_to_coco_results(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int),
                                      np.zeros((0, H, W), bool))
    assert empty == []


def test_predict_dataset_with_oracle(tmp_path):
    json_path = write_coco_dataset(tmp_path, num_images=2, seed=9)
    gt_by_image = {}
    for i in range(2):
        sc = render_scene(900000 + i)
        gt_by_image[hashlib.sha1(sc.image_bgr.tobytes()).hexdigest()] = sc

    def oracle(image):
        sc = gt_by_image[hashlib.sha1(image.tobytes()).hexdigest()]
        return SimpleNamespace(boxes_xyxy=torch.from_numpy(sc.boxes_xyxy),
                               scores=torch.ones(len(sc)), labels=torch.from_numpy(sc.labels),
                               masks=torch.from_numpy(sc.masks))

    found_json, root = resolve_dataset(tmp_path)
    assert found_json == json_path and root == tmp_path
    results, ids, sec = predict_dataset(oracle, json_path)
    assert ids == [1, 2] and sec >= 0.0
    assert len(results) == sum(len(s) for s in gt_by_image.values())
    metrics = evaluate_coco(json_path, results)
    for key in ('box', 'mask'):
        assert metrics[key]['AP'] == pytest.approx(1.0)
        assert metrics[key]['AP75'] == pytest.approx(1.0)
