"""SOLOv2 (core/models/solov2) and Matrix NMS (core/ops/matrix_nms): no mmdet needed.

- key layouts: our state dict equals mmdetection's key -> shape maps (test/data/state_dicts);
- golden: mmdetection 3.3.0's outputs on seeded weights (test/data/solov2_golden.json, written by
  bench/solov2_golden.py) against ours on the same weights and image;
- Matrix NMS on hand-made 4x4 masks with decays computed by hand, and against a loop formula;
- mask ROIs against the full-frame upsampling, preprocessing sizes, checkpoint errors, the
  Segmenter interface.
"""

from __future__ import annotations

import base64
import json
import sys
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instseg_ros.core.checkpoint import CheckpointError
from instseg_ros.core.classes import COCO_CLASSES
from instseg_ros.core.models import solov2
from instseg_ros.core.models.solov2.checkpoint import class_names_for, expected_shapes, preset_from_shapes
from instseg_ros.core.models.solov2.postprocess import (axis_taps, decode_single, dynamic_mask_probs, full_masks,
                                                       mask_rois)
from instseg_ros.core.models.solov2.preprocess import preprocess_batch, resized_shape
from instseg_ros.core.ops.matrix_nms import matrix_nms, matrix_nms_decay
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.segmenter import Segmenter
from instseg_ros.synth.scene import Camera, render_scene
from instseg_ros.core.models.solov2.testing import seeded_model, seeded_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmdet_files import one_line_error, save_training_run  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / 'data'
GOLDEN = json.loads((DATA / 'solov2_golden.json').read_text())


def _image(seed: int, height: int, width: int) -> np.ndarray:
    return render_scene(seed, Camera(width, height)).image_bgr


def _golden_image() -> np.ndarray:
    return _image(GOLDEN['image_seed'], *GOLDEN['image_hw'])


# ----------------------------------------------------------------------------- key layouts

@pytest.mark.parametrize('preset', solov2.PRESETS)
def test_state_dict_layout_matches_mmdet(preset):
    rows = json.loads((DATA / 'state_dicts' / f'solov2_state_dict_{preset}.json').read_text())
    mmdet_shapes = {key: tuple(shape) for key, shape in rows}
    assert expected_shapes(solov2.preset_config(preset)) == mmdet_shapes


def test_preset_from_file_name():
    assert solov2.preset_from_file_name('solov2_r50_fpn_1x_coco_20220512_125858-a357fa23.pth') == 'solov2_r50'
    assert solov2.preset_from_file_name('/x/solov2_r50_fpn_ms-3x_coco_20220512_125856-fed092d4.pth') == 'solov2_r50'
    assert solov2.preset_from_file_name('solov2-light_r50_fpn_ms-3x_coco_20220512_165256-c93a6074.pth') \
        == 'solov2_light_r50'
    assert solov2.preset_from_file_name('solov2_light_r50_fpn_3x_coco.pth') == 'solov2_light_r50'
    for other in ('solov2-light_r50-dcn_fpn_ms-3x_coco.pth', 'solov2_r101_fpn_ms-3x_coco.pth',
                  'yolact_base_54_800000.pth', 'rtmdet-ins_s_8xb32-300e_coco.pth'):
        assert solov2.preset_from_file_name(other) is None


def test_preset_from_shapes():
    for preset in solov2.PRESETS:
        shapes = {k: torch.empty(v, device='meta') for k, v in expected_shapes(solov2.preset_config(preset)).items()}
        assert preset_from_shapes(shapes) == preset


# ----------------------------------------------------------------------------- Matrix NMS

def _grid_masks(*cells_per_mask) -> torch.Tensor:
    """bool [N, 4, 4] masks, each given as (row, col) cells."""
    masks = torch.zeros((len(cells_per_mask), 4, 4), dtype=torch.bool)
    for i, cells in enumerate(cells_per_mask):
        for r, c in cells:
            masks[i, r, c] = True
    return masks


# A: rows 0-1, cols 0-1; B: rows 0-1, cols 1-2; C: rows 0-1, cols 2-3 (4 px each)
# IoU(A, B) = IoU(B, C) = 2 / 6 = 1/3, IoU(A, C) = 0
A = [(0, 0), (0, 1), (1, 0), (1, 1)]
B = [(0, 1), (0, 2), (1, 1), (1, 2)]
C = [(0, 2), (0, 3), (1, 2), (1, 3)]
D = [(3, 0), (3, 1), (3, 2), (3, 3)]


def test_matrix_nms_gaussian_by_hand():
    masks = _grid_masks(A, B, D)
    out = matrix_nms(masks, torch.tensor([0, 0, 0]), torch.tensor([0.9, 0.8, 0.7]), sigma=2.0)
    # B: exp(-2 * (1/3)^2) = exp(-2/9) -> 0.8 * 0.80074 = 0.64059 < D's untouched 0.7
    assert out.keep_indices.tolist() == [0, 2, 1]
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.7, 0.8 * math.exp(-2.0 / 9.0)]))
    assert out.labels.tolist() == [0, 0, 0]


def test_matrix_nms_linear_by_hand():
    masks = _grid_masks(A, B, D)
    out = matrix_nms(masks, torch.tensor([1, 1, 1]), torch.tensor([0.9, 0.8, 0.7]), kernel='linear')
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.7, 0.8 * (1.0 - 1.0 / 3.0)]))


def test_matrix_nms_compensation_by_hand():
    """C overlaps only B, which is itself suppressed by A with the same IoU: C keeps its score
    (gaussian exp(-2/9) / exp(-2/9) = 1, linear (2/3) / (2/3) = 1)."""
    masks = _grid_masks(A, B, C)
    scores = torch.tensor([0.9, 0.8, 0.7])
    for kernel, decay_b in (('gaussian', math.exp(-2.0 / 9.0)), ('linear', 2.0 / 3.0)):
        decay = matrix_nms_decay(masks, torch.tensor([0, 0, 0]), masks.flatten(1).sum(1).float(), kernel, 2.0)
        torch.testing.assert_close(decay, torch.tensor([1.0, decay_b, 1.0]))
        out = matrix_nms(masks, torch.tensor([0, 0, 0]), scores, kernel=kernel)
        assert out.keep_indices.tolist() == [0, 2, 1]


def test_matrix_nms_other_labels_and_order_and_areas():
    masks = _grid_masks(B, A)  # given in the wrong order: sorted by score first
    out = matrix_nms(masks, torch.tensor([3, 3]), torch.tensor([0.5, 0.9]), sigma=0.5)
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.5 * math.exp(-0.5 / 9.0)]))
    assert out.keep_indices.tolist() == [1, 0]
    out = matrix_nms(masks, torch.tensor([3, 4]), torch.tensor([0.5, 0.9]))
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.5]))  # different labels: no decay
    # the given areas are used (mmdet passes its stride-4 mask sums): IoU = 2 / (8 + 8 - 2) = 1/7
    out = matrix_nms(masks, torch.tensor([0, 0]), torch.tensor([0.5, 0.9]), mask_areas=torch.tensor([8.0, 8.0]))
    torch.testing.assert_close(out.scores[1], torch.tensor(0.5 * math.exp(-2.0 / 49.0)))


def test_matrix_nms_filter_pre_max_and_empty():
    masks = _grid_masks(A, B, D)
    labels, scores = torch.tensor([0, 0, 0]), torch.tensor([0.9, 0.8, 0.7])
    out = matrix_nms(masks, labels, scores, filter_thr=0.65)  # B decays to 0.6406
    assert out.keep_indices.tolist() == [0, 2]
    out = matrix_nms(masks, labels, scores, nms_pre=2)  # D never enters
    assert out.keep_indices.tolist() == [0, 1]
    out = matrix_nms(masks, labels, scores, max_num=1)
    assert out.keep_indices.tolist() == [0]
    assert len(matrix_nms(masks, labels, scores, filter_thr=0.95).scores) == 0
    empty = matrix_nms(masks[:0], labels[:0], scores[:0])
    assert empty.scores.shape == (0,) and empty.keep_indices.dtype == torch.int64
    with pytest.raises(ValueError, match='kernel'):
        matrix_nms(masks, labels, scores, kernel='box')
    with pytest.raises(ValueError, match='same length'):
        matrix_nms(masks, labels[:2], scores)


def test_matrix_nms_matches_loop_formula():
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand((12, 6, 7), generator=gen) > 0.5
    labels = torch.randint(0, 3, (12,), generator=gen)
    scores = torch.rand(12, generator=gen)
    out = matrix_nms(masks, labels, scores, sigma=1.5)
    order = scores.argsort(descending=True).tolist()
    m = masks[order].flatten(1).float()
    lab = labels[order].tolist()
    iou = lambda i, j: float((m[i] * m[j]).sum() / ((m[i] + m[j]) > 0).sum())  # noqa: E731
    comp = [max([iou(k, i) for k in range(i) if lab[k] == lab[i]], default=0.0) for i in range(12)]
    expected = []
    for j in range(12):
        ratios = [math.exp(-1.5 * iou(i, j) ** 2) / math.exp(-1.5 * comp[i] ** 2)
                  for i in range(j) if lab[i] == lab[j]]
        expected.append(float(scores[order[j]]) * min(ratios + [1.0]))
    by_index = dict(zip(out.keep_indices.tolist(), out.scores.tolist()))
    for rank, index in enumerate(order):
        assert by_index[index] == pytest.approx(expected[rank], rel=1e-5)


# ----------------------------------------------------------------------------- mask ROIs

def test_axis_taps_equal_interpolate():
    row = torch.rand(1, 1, 1, 13)
    for out in (5, 13, 40, 52):
        taps = axis_taps(13, out, torch.device('cpu'))
        mine = row[0, 0, 0, taps.index0] * taps.weight0 + row[0, 0, 0, taps.index1] * taps.weight1
        ref = F.interpolate(row, size=(1, out), mode='bilinear', align_corners=False)[0, 0, 0]
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize('feat_hw,resized_hw,source_hw', [((10, 12), (37, 45), (61, 83)),
                                                          ((8, 8), (30, 32), (48, 64)),
                                                          ((20, 25), (80, 97), (75, 100))])
@pytest.mark.parametrize('large_fraction', [0.25, 2.0])  # 2.0: every window by per-window taps
def test_mask_rois_equal_full_frame_upsampling(feat_hw, resized_hw, source_hw, large_fraction, monkeypatch):
    from instseg_ros.core.models.solov2 import postprocess
    monkeypatch.setattr(postprocess, 'LARGE_WINDOW_FRACTION', large_fraction)
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn((5, *feat_hw), generator=gen) * 3 - 2
    logits[0] = -5.0  # empty
    logits[1] = -5.0
    logits[1, 2:4, 3:5] = 4.0  # one small blob
    probs = torch.sigmoid(logits)
    padded = (4 * feat_hw[0], 4 * feat_hw[1])
    full = full_masks(probs, padded, resized_hw, source_hw, 0.5).numpy()
    rois, boxes = mask_rois(probs, padded, resized_hw, source_hw, 0.5)
    assert rois[0] is None and boxes[0].tolist() == [0, 0, 0, 0]
    for i, roi in enumerate(rois[1:], start=1):
        x0, y0, crop = roi
        pasted = np.zeros(source_hw, dtype=bool)
        pasted[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        assert np.array_equal(pasted, full[i])
        ys, xs = np.nonzero(full[i])
        assert boxes[i].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert crop.any(axis=0)[[0, -1]].all() and crop.any(axis=1)[[0, -1]].all()  # tight


# ----------------------------------------------------------------------------- preprocessing

def test_resized_shape_like_mmcv():
    assert resized_shape(480, 640, (1333, 800)) == (800, 1067)
    assert resized_shape(720, 1280, (1333, 800)) == (750, 1333)
    assert resized_shape(375, 500, (1333, 800)) == (800, 1067)
    assert resized_shape(480, 640, (768, 448)) == (448, 597)


def test_preprocess_batch_pads_and_normalises():
    image = np.zeros((30, 50, 3), dtype=np.uint8)
    image[..., 0] = 255  # blue in BGR
    batch = preprocess_batch([image, image[:20]], 'bgr', (100, 60), 32, (1.0, 2.0, 3.0), (2.0, 2.0, 2.0),
                             torch.device('cpu'))
    assert batch.resized_hw == [(60, 100), (40, 100)] and batch.source_hw == [(30, 50), (20, 50)]
    assert tuple(batch.images.shape) == (2, 3, 64, 128)
    torch.testing.assert_close(batch.images[0, :, 0, 0], torch.tensor([-0.5, -1.0, 126.0]))  # RGB order
    assert float(batch.images[0, :, 60:].abs().sum()) == 0.0 and float(batch.images[0, :, :, 100:].abs().sum()) == 0
    assert float(batch.images[1, :, 40:].abs().sum()) == 0.0 and float(batch.images[1, :, :40, :100].abs().min()) > 0
    with pytest.raises(ValueError, match='uint8'):
        preprocess_batch([image.astype(np.float32)], 'bgr', (100, 60), 32, (0, 0, 0), (1, 1, 1), torch.device('cpu'))
    with pytest.raises(ValueError, match='color_order'):
        preprocess_batch([image], 'bgra', (100, 60), 32, (0, 0, 0), (1, 1, 1), torch.device('cpu'))


# ----------------------------------------------------------------------------- golden (mmdet 3.3.0)

def _assert_summary(tensor: torch.Tensor, golden: dict, name: str) -> None:
    assert list(tensor.shape) == golden['shape'], name
    flat = tensor.detach().float().reshape(-1)
    index = torch.linspace(0, flat.numel() - 1, 16).round().long()
    scale = max(golden['abs_mean'], 1e-6)
    np.testing.assert_allclose(flat[index].numpy(), golden['samples'], rtol=1e-4, atol=1e-4 * scale, err_msg=name)
    assert float(flat.abs().double().mean()) == pytest.approx(golden['abs_mean'], rel=1e-4), name
    tolerance = 1e-3 * scale * flat.numel() ** 0.5
    assert float(flat.double().sum()) == pytest.approx(golden['sum'], rel=1e-4, abs=tolerance), name


@pytest.fixture(scope='module')
def golden_segmenter(tmp_path_factory):
    """solov2_light_r50 with the seeded weights, loaded from a file written as mmdet publishes
    checkpoints (with a training run's optimizer entry, which is dropped), at the golden scale."""
    cfg = solov2.preset_config('solov2_light_r50')
    path = tmp_path_factory.mktemp('solov2') / 'solov2-light_r50_fpn_ms-3x_coco_20220512_165256-c93a6074.pth'
    names = tuple(f'thing{i}' for i in range(cfg.num_classes))
    torch.save({'meta': {'dataset_meta': {'classes': names}, 'mmdet_version': '3.3.0'},
                'state_dict': seeded_state_dict(cfg), 'optimizer': {'state': {}, 'param_groups': []}}, path)
    seg = solov2.build_segmenter(path, 'auto', 'cpu', False, None, test_scale=tuple(GOLDEN['scale']))
    return seg, path


def _check_golden_raw(model, cfg, golden: dict):
    """Our preprocessing and forward against mmdet's summaries; returns (batch, raw outputs)."""
    image = _golden_image()
    batch = preprocess_batch([image], 'bgr', cfg.test_scale, cfg.size_divisor, cfg.mean_rgb, cfg.std_rgb,
                             torch.device('cpu'))
    _assert_summary(batch.images, golden['input'], 'input')
    with torch.inference_mode():
        cls_logits, kernels, mask_feats = model(batch.images)
    _assert_summary(mask_feats, golden['mask_feats'], 'mask_feats')
    for level, (c, k) in enumerate(zip(cls_logits, kernels)):
        _assert_summary(c, golden['cls_logits'][level], f'cls_logits[{level}]')
        _assert_summary(k, golden['kernels'][level], f'kernels[{level}]')
    return batch, (cls_logits, kernels, mask_feats)


def _check_golden_detections(dets, golden: dict) -> None:
    height, width = GOLDEN['image_hw']
    assert len(dets.scores) == len(golden['scores'])
    assert dets.labels.tolist() == golden['labels']
    np.testing.assert_allclose(dets.scores, golden['scores'], rtol=0, atol=1e-4)
    np.testing.assert_allclose(dets.boxes_xyxy, golden['boxes_xyxy'], rtol=0, atol=0.5)
    areas = [0 if roi is None else int(roi[2].sum()) for roi in dets.rois]
    np.testing.assert_allclose(areas, golden['mask_areas'], rtol=0.01, atol=2)
    for roi, packed in zip(dets.rois, golden['packed_masks']):
        ref = np.unpackbits(np.frombuffer(base64.b64decode(packed), np.uint8))[:height * width]
        ref = ref.reshape(height, width).astype(bool)
        ours = np.zeros_like(ref)
        x0, y0, crop = roi
        ours[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        assert (ours & ref).sum() / (ours | ref).sum() > 0.99


def test_golden_light_raw_outputs(golden_segmenter):
    seg, _ = golden_segmenter
    _check_golden_raw(seg.model, seg.cfg, GOLDEN['presets']['solov2_light_r50']['raw'])


def test_golden_light_detections_and_checkpoint_file(golden_segmenter):
    seg, _ = golden_segmenter
    assert seg.name == 'solov2_light_r50' and seg.cfg.test_scale == tuple(GOLDEN['scale'])
    assert seg.class_names == tuple(f'thing{i}' for i in range(80))  # from meta['dataset_meta']
    _check_golden_detections(seg.predict_rois(_golden_image()), GOLDEN['presets']['solov2_light_r50'])


def test_golden_r50():
    """solov2_r50 (its fixed-size grid head is the costly part): one forward, decoded by the same
    functions as the segmenter."""
    cfg = solov2.preset_config('solov2_r50', test_scale=tuple(GOLDEN['scale']))
    seg = solov2.SoloV2Segmenter(seeded_model(cfg), cfg, COCO_CLASSES)
    golden = GOLDEN['presets']['solov2_r50']
    batch, (cls_logits, kernels, mask_feats) = _check_golden_raw(seg.model, cfg, golden['raw'])
    scores, labels, probs = decode_single([c[0] for c in cls_logits], [k[0] for k in kernels], mask_feats[0],
                                          cfg.strides, seg.decode_params(None))
    rois, boxes = mask_rois(probs, tuple(batch.images.shape[-2:]), batch.resized_hw[0], batch.source_hw[0],
                            cfg.mask_thr)
    _check_golden_detections(RoiDetections(boxes, scores.numpy(), labels.numpy(), rois), golden)


# ----------------------------------------------------------------------------- checkpoint errors

def test_wrong_family_truncated_and_missing_files(tmp_path):
    yolact = tmp_path / 'yolact_base_54_800000.pth'
    torch.save({'backbone.layers.0.0.conv1.weight': torch.zeros(2, 2, 1, 1),
                'prediction_layers.0.conf_layer.weight': torch.zeros(3, 2, 3, 3)}, yolact)
    with pytest.raises(CheckpointError, match='not an mmdetection SOLOv2 checkpoint') as info:
        solov2.build_segmenter(yolact)
    assert '\n' not in str(info.value) and 'weights_only=False' not in str(info.value)
    truncated = tmp_path / 'solov2_r50_fpn_1x_coco.pth'
    truncated.write_bytes(yolact.read_bytes()[:200])
    with pytest.raises(CheckpointError, match='cannot read checkpoint') as info:
        solov2.build_segmenter(truncated)
    assert '\n' not in str(info.value) and 'weights_only=False' not in str(info.value)
    with pytest.raises(CheckpointError, match='not found'):
        solov2.build_segmenter(tmp_path / 'absent.pth')
    not_dict = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(CheckpointError, match='state dict of tensors'):
        solov2.build_segmenter(not_dict)


def test_wrong_shapes_and_unknown_preset(tmp_path):
    cfg = solov2.preset_config('solov2_light_r50')
    shapes = expected_shapes(cfg)
    partial = {k: torch.zeros(v) for k, v in shapes.items() if k.startswith('mask_head.conv')}
    partial['backbone.layer3.5.conv1.weight'] = torch.zeros(shapes['backbone.layer3.5.conv1.weight'])
    path = tmp_path / 'solov2-light_r50_fpn_ms-3x_coco_x.pth'
    torch.save({'meta': {}, 'state_dict': partial}, path)
    with pytest.raises(CheckpointError, match="does not match SOLOv2 preset 'solov2_light_r50'.*missing"):
        solov2.build_segmenter(path)
    with pytest.raises(CheckpointError, match="tensors fit 'solov2_light_r50'"):
        solov2.build_segmenter(path, 'solov2_r50')
    with pytest.raises(CheckpointError, match='unknown SOLOv2 preset'):
        solov2.build_segmenter(path, 'solov2_r101')


def test_training_run_file_is_refused_in_one_line(tmp_path, monkeypatch):
    """An mmengine training checkpoint pickles mmengine objects (message_hub): weights_only loading
    refuses them; the error names the fix without suggesting weights_only=False."""
    path = save_training_run({'a': torch.zeros(1)}, tmp_path / 'epoch_12.pth', monkeypatch)
    with pytest.raises(CheckpointError, match='training-run checkpoint.*publish_model') as info:
        solov2.build_segmenter(path)
    one_line_error(info)


def test_class_names():
    assert class_names_for('f', 80, {}) == COCO_CLASSES
    assert class_names_for('f', 3, {'dataset_meta': {'classes': ('a', 'b', 'c')}}) == ('a', 'b', 'c')
    assert class_names_for('f', 2, {}, ['x', 'y']) == ('x', 'y')
    assert class_names_for('f', 2, {}) == ('class_0', 'class_1')
    assert class_names_for('f', 2, {'CLASSES': ('p', 'q')}) == ('p', 'q')  # mmdet 2.x meta
    with pytest.raises(CheckpointError, match='3 class names given but the checkpoint has 80 classes'):
        class_names_for('f', 80, {}, ['a', 'b', 'c'])


# ----------------------------------------------------------------------------- the Segmenter interface

@pytest.fixture(scope='module')
def small_segmenter():
    """ResNet-50 + FPN with a narrow head (3 classes, small grids): the interface, fast."""
    cfg = solov2.preset_config('solov2_light_r50', num_classes=3, head_channels=64, mask_feat_channels=32,
                               mask_out_channels=32, num_grids=(12, 10, 8, 6, 4), test_scale=(160, 96))
    model = seeded_model(cfg, seed=5)
    with torch.no_grad():
        model.mask_head.conv_cls.bias.fill_(-3.0)  # the narrow head's logits vary less
    return solov2.SoloV2Segmenter(model, cfg, ('a', 'b', 'c'))


def test_segmenter_interface(small_segmenter):
    seg = small_segmenter
    assert isinstance(seg, Segmenter)
    assert seg.backend == 'torch' and seg.precision == 'fp32' and seg.device == torch.device('cpu')
    image = _image(21, 90, 120)
    dets = seg.predict_rois(image)
    assert set(seg.last_timings_ms) == {'preprocess', 'forward', 'postprocess'}
    assert len(dets.scores) > 0, 'the seeded small model should detect something'
    assert dets.scores.dtype == np.float32 and dets.labels.dtype == np.int64 and dets.boxes_xyxy.shape[1] == 4
    assert np.all(np.diff(dets.scores) <= 0)
    instances = seg(image)
    assert instances.masks.shape == (len(dets.scores), 90, 120) and instances.masks.dtype == torch.bool
    for mask, roi, box in zip(instances.masks.numpy(), dets.rois, dets.boxes_xyxy):
        ys, xs = np.nonzero(mask)
        assert roi[0] == xs.min() and roi[1] == ys.min() and box.tolist() == [xs.min(), ys.min(), xs.max() + 1,
                                                                                ys.max() + 1]
    rgb = seg.predict_rois(np.ascontiguousarray(image[..., ::-1]), color_order='rgb')
    np.testing.assert_array_equal(rgb.scores, dets.scores)
    twice = seg.predict_rois_batch([image, image])
    np.testing.assert_allclose(twice[1].scores, dets.scores, atol=1e-5)
    assert seg.predict_rois_batch([]) == []
    seg.warmup((48, 64))


def test_segmenter_params_and_bad_input(small_segmenter):
    seg = small_segmenter
    image = _image(21, 90, 120)
    base = seg.predict_rois(image)
    label = int(base.labels[0])
    only = seg.predict_rois(image, params=InferenceParams(score_threshold=0.0, class_ids=(label,)))
    assert len(only.scores) > 0 and set(only.labels.tolist()) == {label}
    cut = float(np.median(base.scores))
    high = seg.predict_rois(image, params=InferenceParams(score_threshold=cut, max_detections=100))
    assert len(high.scores) > 0 and np.all(high.scores > cut)
    one = seg.predict_rois(image, params=InferenceParams(score_threshold=0.0, max_detections=1))
    assert len(one.scores) == 1
    assert len(seg.predict_rois(image, params=InferenceParams(score_threshold=0.0, max_detections=0)).scores) == 0
    with pytest.raises(ValueError, match='uint8'):
        seg.predict_rois(image.astype(np.float32))
    with pytest.raises(ValueError, match='uint8'):
        seg.predict_rois(image[..., 0])
    with pytest.raises(ValueError, match='color_order'):
        seg.predict_rois(image, color_order='yuv')


def test_config_validation():
    with pytest.raises(ValueError, match='unknown SOLOv2 preset'):
        solov2.preset_config('solov2_x101')
    with pytest.raises(ValueError, match='kernel'):
        solov2.preset_config('solov2_r50', kernel='box')
    with pytest.raises(ValueError, match='num_classes'):
        solov2.preset_config('solov2_r50', num_classes=0)


def test_no_mmdet_imports_in_the_package():
    root = Path(solov2.__file__).parent
    sources = [*root.glob('*.py'), Path(matrix_nms.__code__.co_filename)]
    for source in sources:
        text = source.read_text()
        for name in ('mmcv', 'mmdet', 'mmengine'):
            assert f'import {name}' not in text and f'from {name}' not in text, source


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # the TorchScript exporter, as core/export.py
def test_dynamic_masks_one_matmul_exports_to_onnx(tmp_path):
    """The per-cell 1x1 dynamic convolution equals F.conv2d and exports with a dynamic instance count."""
    onnxruntime = pytest.importorskip('onnxruntime')
    gen = torch.Generator().manual_seed(2)
    kernels, feats = torch.randn((7, 16), generator=gen), torch.randn((16, 5, 6), generator=gen)
    ref = torch.sigmoid(F.conv2d(feats[None], kernels[:, :, None, None]))[0]
    torch.testing.assert_close(dynamic_mask_probs(kernels, feats), ref, rtol=1e-5, atol=1e-6)

    class Masks(torch.nn.Module):
        def forward(self, k, f):
            return dynamic_mask_probs(k, f)

    path = tmp_path / 'masks.onnx'
    torch.onnx.export(Masks(), (kernels, feats), str(path), dynamo=False, opset_version=17,
                      input_names=['kernels', 'feats'], output_names=['probs'],
                      dynamic_axes={'kernels': {0: 'n'}, 'probs': {0: 'n'}})
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    out = session.run(None, {'kernels': kernels[:3].numpy(), 'feats': feats.numpy()})[0]
    np.testing.assert_allclose(out, ref[:3].numpy(), rtol=1e-5, atol=1e-6)


def test_decode_chunked_equals_single_pass(monkeypatch):
    """Many candidates are decoded chunk by chunk (memory) with the same result."""
    from instseg_ros.core.models.solov2 import postprocess
    gen = torch.Generator().manual_seed(0)
    sizes = (12, 10, 8, 6, 4)
    cls_logits = [torch.randn((3, s, s), generator=gen) * 2 - 1 for s in sizes]
    kernels = [torch.randn((8, s, s), generator=gen) for s in sizes]
    feats = torch.randn((8, 20, 24), generator=gen)
    params = postprocess.DecodeParams(0.1, 0.5, 0.05, 60, 30, 'gaussian', 2.0)
    single = decode_single(cls_logits, kernels, feats, (8, 8, 16, 32, 32), params)
    assert len(single[0]) == 30
    monkeypatch.setattr(postprocess, '_CHUNK', 7)
    chunked = decode_single(cls_logits, kernels, feats, (8, 8, 16, 32, 32), params)
    for a, b in zip(single, chunked):
        assert torch.equal(a, b)


def test_meta_with_numpy_scalars_is_read_weights_only(tmp_path):
    """A training run's meta may hold numpy scalars: allowed for the load (weights_only stays on);
    the file then fails only on its tensors (wrong family here)."""
    path = tmp_path / 'solov2_r50_fpn_3x_coco_20220512_125856-fed092d4.pth'
    torch.save({'meta': {'hook_msgs': {'best_score': np.float64(0.3)}, 'CLASSES': ('a',)},
                'state_dict': {'x': torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match='not an mmdetection SOLOv2 checkpoint'):
        solov2.build_segmenter(path)
