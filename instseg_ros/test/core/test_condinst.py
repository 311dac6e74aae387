"""CondInst R50 (core/models/condinst) and its use of the shared dynamic-kernel mask op.

Runs without mmdet: the key layout and the golden detections were dumped from mmdet 3.3.0 once
(``bench/parity_mmdet.py --family condinst --golden``) into small JSON files under test/data/.
Inputs are wide and short (the keep-ratio resize makes the network input 96 x 1344) so that a
ResNet-50 forward stays a few seconds on a CPU.
"""

from __future__ import annotations

import json
import sys
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instseg_ros.core.checkpoint import CheckpointError
from instseg_ros.core.classes import COCO_CLASSES
from instseg_ros.core.models import condinst
from instseg_ros.core.models.condinst.config import get_config
from instseg_ros.core.models.condinst.network import CondInst, aligned_upsample
from instseg_ros.core.models.condinst.postprocess import mask_taps
from instseg_ros.core.models.condinst.preprocess import preprocess_batch
from instseg_ros.core.models.condinst.testing import calibrated_state_dict
from instseg_ros.core.ops.dynamic_masks import dynamic_mask_logits, mask_rois
from instseg_ros.core.postprocess import InferenceParams
from instseg_ros.core.segmenter import Segmenter


sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmdet_files import one_line_error, save_published, save_training_run  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / 'data'
PACKAGE = Path(condinst.__file__).resolve().parent
GOLDEN_CONFIG = 'condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py'
GOLDEN_SEED = 0
GOLDEN_CLS_BIAS = -6.5
GOLDEN_HW = (40, 640)
PUBLISHED_NAME = 'condinst_r50_fpn_ms-poly-90k_coco_instance_20221129_125223-4c186406.pth'


# ---------------------------------------------------------------- helpers shared with the bench
def golden_image() -> np.ndarray:
    """uint8 BGR ``[40, 640, 3]``: gradients, two discs, a bar and noise (pure numpy, deterministic)."""
    height, width = GOLDEN_HW
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack((cols / width * 200, rows / height * 180, 90 + 40 * np.sin(cols / 23.0)), axis=2)
    image[(rows - 20) ** 2 + (cols - 120) ** 2 < 15 ** 2] = (30, 40, 220)
    image[(rows - 22) ** 2 + (cols - 420) ** 2 < 12 ** 2] = (210, 60, 40)
    image[8:34, 250:300] = (200, 160, 20)
    noise = np.random.default_rng(3).normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def golden_state_dict(seed: int = GOLDEN_SEED) -> dict[str, torch.Tensor]:
    """Synthetic R50 weights, BatchNorm statistics measured on :func:`golden_image`."""
    cfg = get_config()
    batch = preprocess_batch([golden_image()], 'bgr', cfg.test_scale, cfg.size_divisor, cfg.mean_rgb,
                             cfg.std_rgb, torch.device('cpu'))
    return calibrated_state_dict(cfg, batch.images, seed, cls_bias=GOLDEN_CLS_BIAS)


@pytest.fixture(scope='module')
def golden_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('condinst') / PUBLISHED_NAME
    return save_published(golden_state_dict(), path, classes=[f'c{i}' for i in range(80)], meta={'iter': 90000})


@pytest.fixture(scope='module')
def golden_segmenter(golden_file):
    return condinst.build_segmenter(golden_file)


@pytest.fixture(scope='module')
def golden_detections(golden_segmenter):
    return golden_segmenter.predict_rois(golden_image(), params=condinst.MMDET_TEST_PARAMS)


def _paste(rois, hw) -> np.ndarray:
    masks = np.zeros((len(rois), *hw), dtype=bool)
    for i, roi in enumerate(rois):
        if roi is not None:
            x0, y0, crop = roi
            masks[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return masks


# ---------------------------------------------------------------- layout and config
def test_state_dict_layout_equals_mmdet():
    """Every key and shape of mmdet 3.3.0's state dict (dumped from its config), in its order."""
    expected = [(k, tuple(s)) for k, s in json.loads(
        (DATA / 'state_dicts' / 'condinst_state_dict_condinst_r50.json').read_text())]
    ours = [(k, tuple(v.shape)) for k, v in CondInst(get_config()).state_dict().items()]
    assert ours == expected


def test_config_and_exports():
    cfg = get_config()
    assert condinst.PRESETS == ('condinst_r50',) and cfg.num_dynamic_params == 169
    assert cfg.strides == (8, 16, 32, 64, 128) and cfg.test_scale == (1333, 800)
    assert get_config(num_classes=3).num_classes == 3
    with pytest.raises(KeyError):
        get_config('condinst_r101')


def test_package_imports_no_openmmlab():
    for source in PACKAGE.rglob('*.py'):
        assert not re.search(r'^\s*(import|from)\s+(mmcv|mmdet|mmengine)\b', source.read_text(), re.M), source


# ---------------------------------------------------------------- mask maths
def test_aligned_upsample_samples_shifted_positions():
    """Output u reads the input at max(u - f // 2, 0) / f, held constant past the last sample."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 5, 7, generator=gen)
    for factor in (2, 4):
        out = aligned_upsample(x, factor)
        assert out.shape == (1, 2, 5 * factor, 7 * factor)
        pos_y = np.maximum(np.arange(5 * factor) - factor // 2, 0) / factor
        pos_x = np.maximum(np.arange(7 * factor) - factor // 2, 0) / factor
        rows = np.stack([np.interp(pos_y, np.arange(5), col) for col in x[0, 0].numpy().T], axis=1)
        expected = np.stack([np.interp(pos_x, np.arange(7), row) for row in rows])
        np.testing.assert_allclose(out[0, 0].numpy(), expected, atol=1e-5)
    assert aligned_upsample(x, 1) is x


def test_dynamic_params_layout_equals_grouped_conv():
    """CondInst's flat layout (all weights, then all biases; inputs: rel x, rel y, 8 features)
    evaluated with grouped 1x1 convs and points at cell centres (offset 0.5) equals the shared op."""
    gen = torch.Generator().manual_seed(2)
    num, height, width = 3, 5, 6
    params = torch.randn(num, 169, generator=gen)
    feats = torch.randn(8, height, width, generator=gen)
    points = torch.rand(num, 2, generator=gen) * 40
    strides = torch.tensor([8.0, 16.0, 32.0])
    ys, xs = torch.meshgrid((torch.arange(height) + 0.5) * 8, (torch.arange(width) + 0.5) * 8, indexing='ij')
    rel = (points[:, :, None, None] - torch.stack((xs, ys))[None]) / (strides * 8)[:, None, None, None]
    x = torch.cat((rel, feats[None].expand(num, -1, -1, -1)), dim=1).reshape(1, -1, height, width)
    w0, w1, w2, b0, b1, b2 = torch.split(params, [80, 64, 8, 8, 8, 1], dim=1)
    x = F.relu(F.conv2d(x, w0.reshape(num * 8, 10, 1, 1), b0.reshape(-1), groups=num))
    x = F.relu(F.conv2d(x, w1.reshape(num * 8, 8, 1, 1), b1.reshape(-1), groups=num))
    expected = F.conv2d(x, w2.reshape(num, 8, 1, 1), b2.reshape(-1), groups=num)[0]
    ours = dynamic_mask_logits(params, feats, points, strides * 8, grid_stride=8.0, grid_offset=0.5)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_mask_rois_on_probabilities_equal_full_frame_chain():
    """ROIs from the taps equal mmdet's full-frame chain: aligned x4, crop, bilinear resize, > 0.5."""
    gen = torch.Generator().manual_seed(5)
    coarse = torch.randn(4, 3, 5, generator=gen) * 4
    probs = F.interpolate(coarse[None], size=(12, 20), mode='bilinear')[0].sigmoid()  # stride-4 grid
    resized_hw, source_hw = (45, 77), (31, 50)
    full = F.interpolate(aligned_upsample(probs[None], 4)[:, :, :45, :77], size=source_hw,
                         mode='bilinear', align_corners=False)[0] > 0.5
    taps_y, taps_x = mask_taps((12, 20), resized_hw, source_hw)
    rois = mask_rois(probs, taps_y, taps_x, 0.5, probabilities=True)
    assert full.flatten(1).any(1).all() and not full.flatten(1).all(1).any()
    np.testing.assert_array_equal(_paste(rois, source_hw), full.numpy())
    for roi in rois:
        crop = roi[2]
        assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
    assert mask_rois(torch.full((1, 12, 20), 0.4), taps_y, taps_x, 0.5, probabilities=True) == [None]


# ---------------------------------------------------------------- golden detections (mmdet)
def test_golden_detections_match_mmdet(golden_detections):
    golden = json.loads((DATA / 'condinst_golden.json').read_text())
    det = golden_detections
    top = len(golden['scores'])
    assert len(det.scores) == golden['count'] and top > 0
    np.testing.assert_allclose(det.scores[:top], golden['scores'], atol=1e-4)
    np.testing.assert_allclose(det.boxes_xyxy[:top], golden['boxes_xyxy'], atol=0.5)
    assert det.labels[:top].tolist() == golden['labels']
    pixels = [0 if r is None else int(r[2].sum()) for r in det.rois[:top]]
    np.testing.assert_allclose(pixels, golden['mask_pixels'], rtol=0.01, atol=3)


def test_segmenter_interface(golden_segmenter, golden_detections):
    seg, image = golden_segmenter, golden_image()
    assert isinstance(seg, Segmenter)
    assert seg.name == 'condinst_r50' and seg.backend == 'torch' and seg.precision == 'fp32'
    assert seg.class_names[:2] == ('c0', 'c1') and seg.device == torch.device('cpu')
    both = seg.predict_rois_batch([image, np.ascontiguousarray(image[:, :, ::-1])], color_order='rgb',
                                  params=condinst.MMDET_TEST_PARAMS)
    assert set(seg.last_timings_ms) == {'preprocess', 'forward', 'postprocess'}
    np.testing.assert_allclose(both[1].scores, golden_detections.scores, atol=1e-4)
    np.testing.assert_allclose(both[1].boxes_xyxy, golden_detections.boxes_xyxy, atol=1e-3)
    assert len(both[0].scores) > 0  # the same pixels read as RGB: other detections
    instances = seg(image, params=condinst.MMDET_TEST_PARAMS)
    assert instances.masks.shape == (len(golden_detections.scores), *GOLDEN_HW)
    np.testing.assert_array_equal(instances.masks.numpy(), _paste(golden_detections.rois, GOLDEN_HW))


def test_inference_params_filter_and_empty(golden_segmenter, golden_detections):
    det = golden_detections
    wanted = int(det.labels[0])
    only = golden_segmenter.predict_rois(golden_image(), params=InferenceParams(
        score_threshold=float(det.scores[2]), nms_threshold=0.6, conf_threshold=0.05, class_ids=(wanted,)))
    assert len(only.scores) > 0 and set(only.labels.tolist()) == {wanted}
    assert (only.scores > det.scores[2]).all()
    none = golden_segmenter.predict_rois(golden_image(), params=InferenceParams(conf_threshold=0.9999))
    assert none.boxes_xyxy.shape == (0, 4) and none.scores.shape == (0,) and none.rois == []
    assert golden_segmenter.predict_rois_batch([]) == []


# ---------------------------------------------------------------- checkpoints and bad input
def test_preset_from_file_name_and_shapes():
    assert condinst.preset_from_file_name(PUBLISHED_NAME) == 'condinst_r50'
    assert condinst.preset_from_file_name('/x/condinst_r50_fpn_ms-poly-90k_coco_instance_20231229_000000-abc.pth') \
        == 'condinst_r50'
    assert condinst.preset_from_file_name('condinst_r101_fpn.pth') is None
    assert condinst.preset_from_file_name('rtmdet-ins_s_8xb32-300e_coco.pth') is None
    shapes = CondInst(get_config()).state_dict()
    assert condinst.preset_from_shapes(shapes) == 'condinst_r50'
    assert condinst.preset_from_shapes({'bbox_head.rtm_cls.0.weight': torch.zeros(80, 96, 1, 1)}) is None


def test_bad_images(golden_segmenter):
    with pytest.raises(ValueError, match='uint8'):
        golden_segmenter.predict_rois(golden_image().astype(np.float32))
    with pytest.raises(ValueError, match='uint8'):
        golden_segmenter.predict_rois(golden_image()[:, :, 0])
    with pytest.raises(ValueError, match='color_order'):
        golden_segmenter.predict_rois(golden_image(), color_order='bgra')


def test_truncated_missing_and_pickled_files(tmp_path, golden_file):
    data = golden_file.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 3])
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(tmp_path / 'cut.pth')
    assert 'cannot read checkpoint' in one_line_error(excinfo)
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(tmp_path / 'absent.pth')
    assert 'not found' in one_line_error(excinfo)
    torch.save({'state_dict': {}, 'hook': Path('x')}, tmp_path / 'object.pth')
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(tmp_path / 'object.pth')
    assert 'refused' in one_line_error(excinfo) and 'Path' in str(excinfo.value)


def test_wrong_family_is_refused(tmp_path):
    rtmdet_like = {'bbox_head.rtm_cls.0.weight': torch.zeros(80, 96, 1, 1),
                   'bbox_head.rtm_kernel.0.weight': torch.zeros(169, 96, 1, 1)}
    save_published(rtmdet_like, tmp_path / 'rtmdet-ins_tiny.pth')
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(tmp_path / 'rtmdet-ins_tiny.pth')
    assert 'not a CondInst checkpoint' in one_line_error(excinfo) and 'RTMDet-Ins' in str(excinfo.value)


def test_class_names_count_mismatch_and_backend(golden_file):
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(golden_file, class_names=['a', 'b'])
    assert '80 classes but 2 class names' in one_line_error(excinfo)
    with pytest.raises(ValueError, match="unknown backend 'tvm'"):
        condinst.build_segmenter(golden_file, backend='tvm')
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(golden_file, preset='condinst_r101')
    assert 'unknown CondInst preset' in one_line_error(excinfo)


def test_meta_classes_coco_fallback_and_strict_keys(tmp_path):
    sd = CondInst(get_config(num_classes=3)).state_dict()
    path = save_published(sd, tmp_path / 'condinst_r50_custom.pth', classes=['a', 'b'], best=np.float64(0.4),
                          optimizer={'state': {}, 'param_groups': [{'lr': 0.01}]})  # a training-run file
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(path)
    assert '3 classes but 2 names are in its meta' in one_line_error(excinfo)
    assert condinst.build_segmenter(path, class_names=['x', 'y', 'z']).class_names == ('x', 'y', 'z')
    coco = CondInst(get_config()).state_dict()
    assert condinst.build_segmenter(save_published(coco, tmp_path / 'renamed.pth')).class_names == COCO_CLASSES
    del coco['mask_head.mask_feature_head.conv_branch.2.bn.running_var']
    coco['bbox_head.extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(save_published(coco, tmp_path / 'broken.pth'))
    text = one_line_error(excinfo)
    assert 'conv_branch.2.bn.running_var' in text and 'bbox_head.extra.weight' in text


def test_training_run_with_mmengine_objects_is_refused(tmp_path, monkeypatch):
    path = save_training_run({'bbox_head.controller.weight': torch.zeros(1)}, tmp_path / 'iter_90000.pth',
                             monkeypatch)
    with pytest.raises(CheckpointError) as excinfo:
        condinst.build_segmenter(path)
    text = one_line_error(excinfo)
    assert 'publish_model' in text and 'HistoryBuffer' in text
