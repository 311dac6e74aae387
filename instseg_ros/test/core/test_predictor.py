"""Predictor with a small random-weight YOLACT: device handling, batch == singles, timings, checkpoints."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from instseg_ros.core.checkpoint import save_checkpoint
from instseg_ros.core.classes import COCO_CLASSES, load_class_names
from instseg_ros.core.config import get_preset
from instseg_ros.core.encoding import masks_to_rois
from instseg_ros.core.models.yolact.yolact import Yolact, init_weights_
from instseg_ros.core.pipeline import FramePipeline
from instseg_ros.core.predictor import InferenceParams, Predictor, default_class_names, resolve_device

# 4 classes incl. background, 128 px input: proto 32x32, fast on a 2-core CPU.
SMALL_CFG = replace(get_preset('yolact_small', num_classes=4), max_size=128)
# score_threshold 0 keeps every NMS survivor so the comparisons below are not vacuous.
ALL_PARAMS = InferenceParams(score_threshold=0.0, max_detections=20)


@pytest.fixture(scope='module')
def predictor() -> Predictor:
    model = init_weights_(Yolact(SMALL_CFG), torch.Generator().manual_seed(0))
    return Predictor(model, SMALL_CFG, device='cpu')


def _images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8),
            rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)]


def _assert_same(a, b):
    assert a.image_size == b.image_size and len(a) == len(b) > 0
    assert torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)
    assert (a.boxes_xyxy - b.boxes_xyxy).abs().max().item() <= 1.0  # truncation may flip at .0
    assert (a.masks != b.masks).float().mean().item() < 0.01  # pixels at ~0.5 may flip


def test_single_image_result_on_device(predictor):
    image = _images()[0]
    inst = predictor(image, params=ALL_PARAMS)
    assert 0 < len(inst) <= 20
    assert inst.masks.shape == (len(inst), 48, 64) and inst.masks.dtype == torch.bool
    assert inst.boxes_xyxy.dtype == torch.float32 and inst.masks.device.type == 'cpu'
    assert torch.all(inst.scores[:-1] >= inst.scores[1:])
    assert torch.all(inst.boxes_xyxy[:, 2] <= 64) and torch.all(inst.boxes_xyxy[:, 3] <= 48)
    assert torch.equal(inst.boxes_xyxy, inst.boxes_xyxy.trunc())
    assert set(predictor.last_timings_ms) == {'preprocess', 'forward', 'postprocess'}
    assert all(v >= 0 for v in predictor.last_timings_ms.values())
    assert inst.class_names == ('class_0', 'class_1', 'class_2')


def test_batch_of_two_equals_two_single_calls(predictor):
    images = _images()
    batch = predictor.predict_batch(images, params=ALL_PARAMS)
    singles = [predictor(image, params=ALL_PARAMS) for image in images]
    assert len(batch) == 2
    for from_batch, single in zip(batch, singles):
        _assert_same(from_batch, single)
    assert predictor.predict_batch([]) == []


def test_predict_rois_equals_the_full_masks(predictor):
    """predict_rois (no full frames) returns exactly __call__'s detections with the masks' tight ROIs,
    and the FramePipeline keeps them (empty masks and those under min_mask_area dropped)."""
    image = _images()[0]
    full = predictor(image, params=ALL_PARAMS)
    dets = predictor.predict_rois(image, params=ALL_PARAMS)
    assert set(predictor.last_timings_ms) == {'preprocess', 'forward', 'postprocess'}
    assert np.array_equal(dets.boxes_xyxy, full.boxes_xyxy.numpy())
    assert np.array_equal(dets.scores, full.scores.numpy()) and np.array_equal(dets.labels, full.labels.numpy())
    expected = masks_to_rois(full.masks)
    assert len(dets.rois) == len(expected) == len(full) > 0
    for roi, ref in zip(dets.rois, expected):
        assert (roi is None) == (ref is None)
        if roi is not None:
            assert roi[:2] == ref[:2] and np.array_equal(roi[2], ref[2])
    areas = [0 if roi is None else int(roi[2].sum()) for roi in expected]
    min_area = sorted(areas)[len(areas) // 2]
    result = FramePipeline(predictor).process(image, ALL_PARAMS, min_mask_area=min_area)
    kept = [i for i, area in enumerate(areas) if area >= max(min_area, 1)]
    assert 0 < len(result) == len(kept) < len(full)
    assert np.array_equal(result.scores, full.scores.numpy()[kept])
    assert [roi[:2] for roi in result.rois] == [expected[i][:2] for i in kept]
    assert set(result.timings_ms) == {'preprocess', 'forward', 'postprocess', 'encode'}


def test_rgb_color_order_matches_bgr(predictor):
    bgr = _images()[0]
    from_bgr = predictor(bgr, color_order='bgr', params=ALL_PARAMS)
    from_rgb = predictor(np.ascontiguousarray(bgr[:, :, ::-1]), color_order='rgb', params=ALL_PARAMS)
    _assert_same(from_bgr, from_rgb)


def test_default_params_threshold_and_warmup(predictor):
    predictor.warmup(image_size=(24, 32))
    inst = predictor(_images()[0])
    assert torch.all(inst.scores > 0.3)


def test_resolve_device():
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    if not torch.cuda.is_available():
        for name in ('cuda', 'cuda:1'):
            with pytest.warns(RuntimeWarning, match='CUDA is not available'):
                assert resolve_device(name) == torch.device('cpu')


def test_half_is_ignored_on_cpu():
    model = Yolact(SMALL_CFG)
    with pytest.warns(RuntimeWarning, match='half'):
        pred = Predictor(model, SMALL_CFG, device='cpu', half=True)
    assert not pred.half and next(pred.model.parameters()).dtype == torch.float32


def test_class_names(tmp_path):
    assert default_class_names(81) == COCO_CLASSES and len(COCO_CLASSES) == 80
    assert COCO_CLASSES[0] == 'person' and COCO_CLASSES[79] == 'toothbrush'
    names_file = tmp_path / 'names.txt'
    names_file.write_text('# mine\ncup\n\nbowl\nfork\n')
    assert load_class_names(names_file) == ('cup', 'bowl', 'fork')
    (tmp_path / 'names.yaml').write_text('names:\n  0: cup\n  1: bowl\n')
    assert load_class_names(tmp_path / 'names.yaml') == ('cup', 'bowl')
    (tmp_path / 'names.json').write_text('["a", "b", "c"]')
    pred = Predictor(Yolact(SMALL_CFG), SMALL_CFG, class_names=tmp_path / 'names.json')
    assert pred.class_names == ('a', 'b', 'c')
    (tmp_path / 'bad.json').write_text('{"x": 1}')
    with pytest.raises(ValueError):
        load_class_names(tmp_path / 'bad.json')


def test_from_checkpoint_loads_weights(tmp_path, predictor):
    path = tmp_path / 'tiny.pth'
    save_checkpoint(predictor.model, path)
    loaded = Predictor.from_checkpoint(path, preset='yolact_small', device='cpu', num_classes=4)
    assert loaded.device == torch.device('cpu') and loaded.cfg.num_classes == 4
    reference = predictor.model.state_dict()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, reference[key]), key
