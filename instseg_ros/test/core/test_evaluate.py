"""Tests of the COCO evaluation helpers (no model needed), and instseg-eval end to end with a random
RTMDet-Ins-tiny file."""

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


def test_category_map_for_a_model_with_more_classes(gt_json):
    """A model with more classes than the dataset (e.g. COCO-80 on a few COCO classes): mapped by
    name, the other labels left out of the results; names that do not cover the categories: one
    ValueError line instead of a KeyError later."""
    from pycocotools.coco import COCO

    from instseg_ros.training.evaluate import label_to_category_map
    coco = COCO(str(gt_json))
    mapping = label_to_category_map(coco, ['x', 'b', 'y', 'a'])
    assert mapping == {1: 2, 3: 1}
    res = instances_to_coco_results(1, np.array([[2, 2, 22, 22], [0, 0, 5, 5]], np.float32),
                                    np.array([0.9, 0.8]), np.array([3, 2]), None, mapping)
    assert [r['category_id'] for r in res] == [1]
    assert label_to_category_map(coco, ['p', 'q']) == {0: 1, 1: 2}   # same count: by position
    with pytest.raises(ValueError, match=r"3 classes and the dataset 2 categories, and the "
                                         r"category name\(s\) \['b'\] are not model class names"):
        label_to_category_map(coco, ['a', 'x', 'y'])


RTMDET_NAME = 'rtmdet-ins_tiny_8xb32-300e_coco_20221130_151134-random.pth'
SHAPE_CLASSES = ['ball', 'box', 'triangle', 'ring', 'star']


def test_instseg_eval_with_an_mmdetection_rtmdet_ins_file(tmp_path, capsys):
    """instseg-eval (its entry point) with a random RTMDet-Ins-tiny file in mmdetection's layout
    (family and preset from the file name) whose 80 class names include the synthetic dataset's 5:
    the AP JSON holds numbers in [0, 1] (-1: no ground truth of that size), the family and
    preset; detections of the 75 other classes are left out and counted. A COCO-80 file on the same
    data, --precision bf16 and --backend onnxruntime end in one line each, never a traceback."""
    from instseg_ros.core.classes import COCO_CLASSES
    from instseg_ros.core.models.rtmdet.config import get_config
    from instseg_ros.core.models.rtmdet.testing import calibrated_state_dict
    from instseg_ros.synth.scene import Camera
    from instseg_ros.training.evaluate import main

    data = tmp_path / 'data'
    write_coco_dataset(data, num_images=1, seed=3, camera=Camera(160, 120), write_depth=False)
    state_dict = calibrated_state_dict(get_config('rtmdet_ins_tiny'), seed=0)
    weights, coco_weights = tmp_path / RTMDET_NAME, tmp_path / 'coco' / RTMDET_NAME
    coco_weights.parent.mkdir()
    for path, names in ((weights, SHAPE_CLASSES + [f'other_{i}' for i in range(75)]),
                        (coco_weights, list(COCO_CLASSES))):
        torch.save({'meta': {'mmdet_version': '3.3.0', 'dataset_meta': {'classes': names}},
                    'state_dict': state_dict}, path)

    out = tmp_path / 'metrics.json'
    assert main(['--data', str(data), '--weights', str(weights), '--out', str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert (metrics['family'], metrics['preset'], metrics['num_images']) == (
        'rtmdet_ins', 'rtmdet_ins_tiny', 1)
    assert (metrics['precision'], metrics['backend']) == ('fp32', 'torch')
    for key in ('box', 'mask'):
        assert 0.0 <= metrics[key]['AP'] <= metrics[key]['AP50'] <= 1.0
        assert all(0.0 <= v <= 1.0 or v == -1.0 for v in metrics[key].values()), metrics[key]
    assert metrics['num_predictions'] + metrics['num_unscored_predictions'] > 0
    assert set(metrics['per_class']['mask']) == set(SHAPE_CLASSES)
    capsys.readouterr()

    def one_line_run(*args: str) -> tuple[int, str]:
        code = main(['--data', str(data), '--out', str(tmp_path / 'x.json'), *args])
        err = capsys.readouterr().err
        assert 'Traceback' not in err and 'warnings.warn' not in err, err
        return code, err

    code, err = one_line_run('--weights', str(coco_weights))
    assert code == 2 and err.count('\n') == 1, err
    assert err.startswith("instseg-eval: the model has 80 classes and the dataset 5 categories")
    for option, value in (('--precision', 'bf16'), ('--backend', 'onnxruntime')):
        code, err = one_line_run('--weights', str(weights), option, value)
        if code == 2:         # refused (an exported runtime not installed, ...): one line
            assert err.count('\n') == 1 and err.startswith('instseg-eval: '), err
            continue
        assert code == 0, err
        ran = json.loads((tmp_path / 'x.json').read_text())
        attribute = option[2:]
        if ran[attribute] != value:   # not used: said on one line
            lines = [line for line in err.splitlines() if value in line]
            assert len(lines) == 1 and lines[0].startswith('instseg-eval: '), err
