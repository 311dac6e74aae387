"""RTMDet-Ins (core/models/rtmdet) and the dynamic-kernel mask op (core/ops/dynamic_masks).

Runs without mmdet: the key layout and the golden detections were dumped from mmdet 3.3.0 once
(``bench/parity_mmdet.py --golden``) into small JSON files under test/data/.
"""

from __future__ import annotations

import json
import sys
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instseg_ros.core.checkpoint import CheckpointError
from instseg_ros.core.classes import COCO_CLASSES
from instseg_ros.core.models import rtmdet
from instseg_ros.core.models.rtmdet.config import get_config
from instseg_ros.core.models.rtmdet.model import RTMDetIns
from instseg_ros.core.models.rtmdet.postprocess import letterbox, mask_taps, preprocess
from instseg_ros.core.models.rtmdet.testing import calibrated_state_dict
from instseg_ros.core.ops.dynamic_masks import (DynamicMaskLayout, dynamic_mask_logits, mask_rois,
                                                relative_coordinates, resample_taps, split_dynamic_params)
from instseg_ros.core.postprocess import InferenceParams
from instseg_ros.core.segmenter import Segmenter


sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmdet_files import one_line_error, save_published, save_training_run  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / 'data'
PACKAGE = Path(rtmdet.__file__).resolve().parent
GOLDEN_SEED = 0
GOLDEN_CLS_BIAS = -8.0


# ---------------------------------------------------------------- helpers shared with the bench
def golden_image() -> np.ndarray:
    """uint8 BGR ``[300, 400, 3]``: gradients, a disc, a bar and noise (pure numpy, deterministic)."""
    rows, cols = np.mgrid[0:300, 0:400].astype(np.float32)
    image = np.stack((cols / 400 * 200, rows / 300 * 180, 90 + 40 * np.sin(cols / 23.0)), axis=2)
    disc = (rows - 150) ** 2 + (cols - 120) ** 2 < 60 ** 2
    image[disc] = (30, 40, 220)
    image[60:240, 250:330] = (200, 160, 20)
    noise = np.random.default_rng(3).normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def golden_state_dict(seed: int = GOLDEN_SEED) -> dict[str, torch.Tensor]:
    """Synthetic tiny weights, BatchNorm statistics measured on :func:`golden_image`."""
    cfg = get_config('rtmdet_ins_tiny')
    batch, _ = preprocess([golden_image()], cfg, torch.device('cpu'))
    return calibrated_state_dict(cfg, seed, cls_bias=GOLDEN_CLS_BIAS, images=batch)


@pytest.fixture(scope='module')
def golden_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('rtmdet') / 'rtmdet-ins_tiny_8xb32-300e_coco_synthetic.pth'
    return save_published(golden_state_dict(), path, classes=[f'c{i}' for i in range(80)], meta={'epoch': 300})


@pytest.fixture(scope='module')
def golden_segmenter(golden_file):
    return rtmdet.build_segmenter(golden_file)


# ---------------------------------------------------------------- layout and config
@pytest.mark.parametrize('preset', rtmdet.PRESETS)
def test_state_dict_layout_equals_mmdet(preset):
    """Every key and shape of mmdet 3.3.0's state dict (dumped from its config), no more."""
    expected = {k: tuple(s) for k, s in json.loads(
        (DATA / 'state_dicts' / f'rtmdet_state_dict_{preset}.json').read_text())}
    ours = {k: tuple(v.shape) for k, v in RTMDetIns(get_config(preset)).state_dict().items()}
    assert ours == expected


def test_head_shares_convs_like_mmdet():
    head = RTMDetIns(get_config('rtmdet_ins_tiny')).bbox_head
    assert head.reg_convs[1] is head.cls_convs[1]
    assert head.cls_convs[2][1].conv is head.cls_convs[0][1].conv
    assert head.cls_convs[2][1].bn is not head.cls_convs[0][1].bn
    assert head.kernel_convs[2][0].conv is not head.kernel_convs[0][0].conv


def test_config_sizes():
    tiny, s, m = (get_config(p) for p in rtmdet.PRESETS)
    assert rtmdet.PRESETS == ('rtmdet_ins_tiny', 'rtmdet_ins_s', 'rtmdet_ins_m')
    assert (tiny.feat_channels, s.feat_channels, m.feat_channels) == (96, 128, 192)
    assert [m.stage_blocks(i) for i in range(4)] == [2, 4, 4, 2]
    assert tiny.num_dynamic_params == DynamicMaskLayout().num_params == 169


def test_package_imports_no_openmmlab():
    sources = [*PACKAGE.rglob('*.py'), PACKAGE.parents[1] / 'ops' / 'dynamic_masks.py']
    for source in sources:
        assert not re.search(r'^\s*(import|from)\s+(mmcv|mmdet|mmengine)\b', source.read_text(), re.M), source


# ---------------------------------------------------------------- dynamic mask op
def test_split_dynamic_params_layout():
    params = torch.arange(169, dtype=torch.float32)[None].repeat(2, 1)
    weights, biases = split_dynamic_params(params)
    assert [tuple(w.shape) for w in weights] == [(2, 8, 10), (2, 8, 8), (2, 1, 8)]
    assert [tuple(b.shape) for b in biases] == [(2, 8), (2, 8), (2, 1)]
    assert weights[0][0, 1, 0].item() == 10 and weights[1][0, 0, 0].item() == 80
    assert weights[2][0, 0].tolist() == list(range(144, 152))
    assert biases[0][0].tolist() == list(range(152, 160)) and biases[2][0].item() == 168
    with pytest.raises(ValueError):
        split_dynamic_params(torch.zeros(1, 168))


def test_relative_coordinates_by_hand():
    rel = relative_coordinates(torch.tensor([[8.0, 0.0]]), torch.tensor([8.0]), (2, 3), grid_stride=8.0)
    assert rel[0, 0].tolist() == [1, 0, -1, 1, 0, -1]      # (8 - 8 c) / 8
    assert rel[0, 1].tolist() == [0, 0, 0, -1, -1, -1]      # (0 - 8 r) / 8


def _hand_params() -> torch.Tensor:
    """ch0 = relu(rx), ch1 = relu(-rx), ch2 = relu(proto0), ch3 = relu(-ry); identity; then
    out = 0.25 - ch0 - ch1 + 0.5 ch2 - 0.5 ch3 (= 1.25 - |rx| - 0.5 |ry| with proto0 = 2)."""
    w1, w2, w3 = torch.zeros(8, 10), torch.eye(8), torch.zeros(1, 8)
    w1[0, 0], w1[1, 0], w1[2, 2], w1[3, 1] = 1.0, -1.0, 1.0, -1.0
    w3[0, :4] = torch.tensor([-1.0, -1.0, 0.5, -0.5])
    biases = torch.cat((torch.zeros(16), torch.tensor([0.25])))
    return torch.cat((w1.flatten(), w2.flatten(), w3.flatten(), biases))[None]


def test_dynamic_mask_logits_by_hand():
    protos = torch.zeros(8, 2, 3)
    protos[0] = 2.0
    logits = dynamic_mask_logits(_hand_params(), protos, torch.tensor([[8.0, 0.0]]), torch.tensor([8.0]),
                                 grid_stride=8.0)
    assert logits.shape == (1, 2, 3)
    torch.testing.assert_close(logits[0], torch.tensor([[0.25, 1.25, 0.25], [-0.25, 0.75, -0.25]]))
    assert dynamic_mask_logits(torch.zeros(0, 169), protos, torch.zeros(0, 2), torch.zeros(0), 8.0).shape == (0, 2, 3)


def _grouped_conv_reference(params, protos, centers, norms, stride):
    """mmdet's formulation: coords + prototypes per instance, grouped 1x1 convs."""
    num, (height, width) = params.shape[0], protos.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height) * stride, torch.arange(width) * stride, indexing='ij')
    rel = torch.stack((centers[:, 0, None, None] - xs, centers[:, 1, None, None] - ys), 1) / norms[:, None, None, None]
    x = torch.cat((rel, protos[None].expand(num, -1, -1, -1)), 1).reshape(1, -1, height, width)
    w = torch.split(params, [80, 64, 8, 8, 8, 1], dim=1)
    shapes = [(num * 8, 10), (num * 8, 8), (num, 8)]
    for i in range(3):
        x = F.conv2d(x, w[i].reshape(*shapes[i], 1, 1), w[3 + i].reshape(-1), groups=num)
        x = F.relu(x) if i < 2 else x
    return x.reshape(num, height, width)


def test_dynamic_mask_logits_equal_grouped_conv():
    gen = torch.Generator().manual_seed(1)
    params, protos = torch.randn(5, 169, generator=gen), torch.randn(8, 6, 7, generator=gen)
    centers, norms = torch.rand(5, 2, generator=gen) * 50, torch.tensor([64.0, 64, 128, 256, 64])
    ours = dynamic_mask_logits(params, protos, centers, norms, grid_stride=8.0)
    torch.testing.assert_close(ours, _grouped_conv_reference(params, protos, centers, norms, 8), atol=1e-4, rtol=1e-4)


def test_resample_taps_bilinear_by_hand():
    taps = resample_taps(2, lambda t: F.interpolate(t, size=(4, 1), mode='bilinear', align_corners=False))
    torch.testing.assert_close(taps.matrix, torch.tensor([[1.0, 0], [0.75, 0.25], [0.25, 0.75], [0, 1.0]]))
    assert taps.first.tolist() == [0, 0, 0, 1] and taps.last.tolist() == [0, 1, 1, 1]
    cropped = resample_taps(2, lambda t: F.interpolate(t, size=(4, 1), mode='bilinear'), out_size=3)
    assert cropped.matrix.shape == (3, 2)


def _chain_taps(grid: int, first: int, second: int, keep: int):
    return resample_taps(grid, lambda t: F.interpolate(F.interpolate(t, size=(first, 1), mode='bilinear'),
                                                       size=(second, 1), mode='bilinear'), out_size=keep)


def _paste(rois, hw):
    out = np.zeros((len(rois), *hw), dtype=bool)
    for i, roi in enumerate(rois):
        if roi is not None:
            x0, y0, crop = roi
            out[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return out


def test_mask_rois_equal_full_frame_resize_and_are_tight():
    gen = torch.Generator().manual_seed(2)
    logits = F.avg_pool2d(torch.randn(12, 1, 20, 20, generator=gen) * 4, 3, 1, 1)[:, 0] - 0.3
    logits[3] = -5.0  # no pixel above the threshold -> None
    logits[4, 5:9, 2:6] += 6.0
    taps_y, taps_x = _chain_taps(20, 160, 150, 141), _chain_taps(20, 160, 200, 190)
    rois = mask_rois(logits, taps_y, taps_x, threshold=0.5, max_elements=20_000)
    full = F.interpolate(F.interpolate(logits[None], scale_factor=8, mode='bilinear'), size=(150, 200),
                         mode='bilinear')[0, :, :141, :190].sigmoid() > 0.5
    assert rois[3] is None
    np.testing.assert_array_equal(_paste(rois, (141, 190)), full.numpy())
    for roi in rois:
        if roi is not None:
            crop = roi[2]
            assert crop.flags['C_CONTIGUOUS'] and crop.dtype == bool
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
    assert mask_rois(logits[:0], taps_y, taps_x) == []


def test_mask_rois_threshold_other_than_half():
    logits = torch.full((1, 4, 4), -3.0)
    logits[0, 1, 1] = 1.0
    taps = resample_taps(4, lambda t: t)
    (x0, y0, crop), = mask_rois(logits, taps, taps, threshold=0.7)  # logit(0.7) = 0.85
    assert (x0, y0, crop.tolist()) == (1, 1, [[True]])
    assert mask_rois(logits, taps, taps, threshold=0.9) == [None]


# ---------------------------------------------------------------- preprocessing geometry
def test_letterbox_as_mmcv():
    assert letterbox((480, 640), 640) == ((480, 640), (480, 640), (1.0, 1.0))
    geometry = letterbox((375, 500), 640)
    assert geometry.resized_hw == (480, 640) and geometry.scale_wh == (640 / 500, 480 / 375)
    assert letterbox((300, 401), 640).resized_hw == (479, 640)  # int(300 * 640 / 401 + 0.5)


def test_mask_taps_rows_use_width_factor():
    geometry = letterbox((250, 333), 640)  # w scale 640/333, h scale 426/250 differ slightly
    taps_y, taps_x = mask_taps((80, 80), 8, 640, geometry)
    assert taps_y.matrix.shape == (250, 80) and taps_x.matrix.shape == (333, 80)
    rows = math.ceil(640 * (1 / geometry.scale_wh[0]))  # mmdet: rows x width factor
    assert rows == 333 != math.ceil(640 * (1 / geometry.scale_wh[1]))
    expected = F.interpolate(F.interpolate(torch.eye(80).reshape(1, 80, 80, 1), size=(640, 1), mode='bilinear'),
                             size=(rows, 1), mode='bilinear')[0, :, :250, 0].T
    torch.testing.assert_close(taps_y.matrix, expected)


# ---------------------------------------------------------------- golden detections (mmdet)
def test_golden_detections_match_mmdet(golden_segmenter):
    golden = json.loads((DATA / 'rtmdet_golden.json').read_text())
    det = golden_segmenter.predict_rois(golden_image(), params=rtmdet.MMDET_TEST_PARAMS)
    top = len(golden['scores'])
    assert len(det.scores) == golden['count'] and top > 0
    np.testing.assert_allclose(det.scores[:top], golden['scores'], atol=1e-4)
    np.testing.assert_allclose(det.boxes_xyxy[:top], golden['boxes_xyxy'], atol=0.5)
    assert det.labels[:top].tolist() == golden['labels']
    pixels = [0 if r is None else int(r[2].sum()) for r in det.rois[:top]]
    np.testing.assert_allclose(pixels, golden['mask_pixels'], rtol=0.01, atol=3)


def test_segmenter_interface(golden_segmenter):
    seg = golden_segmenter
    assert isinstance(seg, Segmenter)
    assert seg.name == 'rtmdet_ins_tiny' and seg.backend == 'torch' and seg.precision == 'fp32'
    assert seg.class_names[:2] == ('c0', 'c1') and seg.device == torch.device('cpu')
    image = golden_image()
    bgr = seg.predict_rois(image, params=rtmdet.MMDET_TEST_PARAMS)
    assert set(seg.last_timings_ms) == {'preprocess', 'forward', 'postprocess'}
    rgb = seg.predict_rois(np.ascontiguousarray(image[:, :, ::-1]), color_order='rgb',
                           params=rtmdet.MMDET_TEST_PARAMS)
    np.testing.assert_array_equal(bgr.scores, rgb.scores)
    small = image[:150, :200].copy()
    both = seg.predict_rois_batch([image, small], params=rtmdet.MMDET_TEST_PARAMS)
    np.testing.assert_allclose(both[0].scores, bgr.scores, atol=1e-4)  # batched convs round differently
    np.testing.assert_allclose(both[1].scores, seg.predict_rois(small, params=rtmdet.MMDET_TEST_PARAMS).scores,
                               atol=1e-4)
    instances = seg(image, params=rtmdet.MMDET_TEST_PARAMS)
    assert instances.masks.shape == (len(bgr.scores), 300, 400) and instances.image_size == (300, 400)
    np.testing.assert_array_equal(instances.masks.numpy(), _paste(bgr.rois, (300, 400)))
    seg.warmup((60, 80))


def test_inference_params_filter(golden_segmenter):
    base = rtmdet.MMDET_TEST_PARAMS
    det = golden_segmenter.predict_rois(golden_image(), params=base)
    wanted = int(det.labels[0])
    only = golden_segmenter.predict_rois(golden_image(), params=InferenceParams(
        score_threshold=0.05, nms_threshold=0.6, conf_threshold=0.05, class_ids=(wanted,)))
    assert len(only.scores) > 0 and set(only.labels.tolist()) == {wanted}
    fewer = golden_segmenter.predict_rois(golden_image(), params=InferenceParams(
        score_threshold=float(det.scores[2]), nms_threshold=0.6, conf_threshold=0.05, max_detections=100))
    assert len(fewer.scores) == int((det.scores > det.scores[2]).sum())


# ---------------------------------------------------------------- checkpoints and errors
def test_preset_from_file_name():
    name = 'rtmdet-ins_tiny_8xb32-300e_coco_20221130_151134-af2cf8b6.pth'
    assert rtmdet.preset_from_file_name(name) == 'rtmdet_ins_tiny'
    assert rtmdet.preset_from_file_name('/x/rtmdet-ins_s_8xb32-300e_coco_20221121_212604-fdc5d7ec.pth') == 'rtmdet_ins_s'
    assert rtmdet.preset_from_file_name('rtmdet_ins_m.pth') == 'rtmdet_ins_m'
    assert rtmdet.preset_from_file_name('rtmdet-ins_l_8xb32-300e_coco.pth') is None
    assert rtmdet.preset_from_file_name('yolact_base_54_800000.pth') is None


def test_preset_from_shapes_and_coco_fallback(tmp_path):
    sd = RTMDetIns(get_config('rtmdet_ins_s')).state_dict()
    seg = rtmdet.build_segmenter(save_published(sd, tmp_path / 'renamed.pth'))
    assert seg.name == 'rtmdet_ins_s' and seg.class_names == COCO_CLASSES
    with pytest.raises(CheckpointError) as excinfo:
        rtmdet.build_segmenter(tmp_path / 'renamed.pth', preset='rtmdet_ins_m')
    assert 'rtmdet_ins_s' in one_line_error(excinfo)


def test_training_run_file_keeps_state_dict(tmp_path):
    sd = RTMDetIns(get_config('rtmdet_ins_tiny', num_classes=3)).state_dict()
    path = save_published(sd, tmp_path / 'epoch_12.pth', classes=['a', 'b', 'c'], seed=np.int64(7),
                          best_score=np.float64(0.41),
                          optimizer={'state': {}, 'param_groups': [{'lr': 0.004}]}, message_hub={'runtime_info': {}})
    seg = rtmdet.build_segmenter(path)
    assert seg.class_names == ('a', 'b', 'c') and seg.cfg.num_classes == 3


def test_wrong_family_is_refused(tmp_path):
    yolact_like = {'proto_net.0.weight': torch.zeros(256, 256, 3, 3), 'backbone.layers.0.0.conv1.weight': torch.zeros(1)}
    torch.save(yolact_like, tmp_path / 'yolact_base_54_800000.pth')
    with pytest.raises(CheckpointError) as excinfo:
        rtmdet.build_segmenter(tmp_path / 'yolact_base_54_800000.pth')
    assert 'not an RTMDet-Ins checkpoint' in one_line_error(excinfo) and 'YOLACT' in str(excinfo.value)


def test_truncated_and_missing_files(tmp_path, golden_file):
    data = golden_file.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        rtmdet.build_segmenter(tmp_path / 'cut.pth')
    assert 'cannot read checkpoint' in one_line_error(excinfo)
    with pytest.raises(CheckpointError) as excinfo:
        rtmdet.build_segmenter(tmp_path / 'absent.pth')
    assert 'not found' in one_line_error(excinfo)


def test_class_names_count_mismatch(golden_file):
    with pytest.raises(CheckpointError) as excinfo:
        rtmdet.build_segmenter(golden_file, class_names=['a', 'b'])
    assert '80 classes but 2 class names' in one_line_error(excinfo)


def test_missing_key_is_refused(tmp_path):
    sd = RTMDetIns(get_config('rtmdet_ins_tiny')).state_dict()
    del sd['neck.out_convs.0.conv.weight']
    with pytest.raises(CheckpointError) as excinfo:
        rtmdet.build_segmenter(save_published(sd, tmp_path / 'rtmdet-ins_tiny_broken.pth'))
    assert 'neck.out_convs.0.conv.weight' in one_line_error(excinfo)


def test_unknown_backend_is_refused(golden_file):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        rtmdet.build_segmenter(golden_file, backend='tensorrt')


def test_dynamic_mask_logits_export_onnx(tmp_path):
    """The dynamic convs export (dynamic instance count) and run in ONNX Runtime."""
    ort = pytest.importorskip('onnxruntime')

    class Masks(torch.nn.Module):
        def forward(self, params, protos, centers, norms):
            return dynamic_mask_logits(params, protos, centers, norms, grid_stride=8.0)

    gen = torch.Generator().manual_seed(4)
    inputs = (torch.randn(3, 169, generator=gen), torch.randn(8, 5, 6, generator=gen),
              torch.rand(3, 2, generator=gen) * 40, torch.tensor([64.0, 128.0, 256.0]))
    path = tmp_path / 'masks.onnx'
    torch.onnx.export(Masks(), inputs, str(path), dynamo=False, opset_version=17,
                      input_names=['params', 'protos', 'centers', 'norms'], output_names=['logits'],
                      dynamic_axes={'params': {0: 'n'}, 'centers': {0: 'n'}, 'norms': {0: 'n'}})
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    more = (torch.randn(5, 169, generator=gen), inputs[1], torch.rand(5, 2, generator=gen) * 40,
            torch.full((5,), 64.0))
    (out,) = session.run(None, {n: t.numpy() for n, t in zip(['params', 'protos', 'centers', 'norms'], more)})
    np.testing.assert_allclose(out, Masks()(*more).numpy(), atol=1e-4, rtol=1e-4)


def test_training_run_with_mmengine_objects_is_refused(tmp_path, monkeypatch):
    sd = RTMDetIns(get_config('rtmdet_ins_tiny')).state_dict()
    path = save_training_run(sd, tmp_path / 'epoch_300.pth', monkeypatch)
    with pytest.raises(CheckpointError) as excinfo:
        rtmdet.build_segmenter(path)
    assert 'publish_model' in one_line_error(excinfo)


def test_no_detections_and_empty_batch(golden_segmenter):
    none = InferenceParams(score_threshold=0.05, conf_threshold=0.9999, nms_threshold=0.6)
    det = golden_segmenter.predict_rois(golden_image(), params=none)
    assert det.boxes_xyxy.shape == (0, 4) and det.scores.shape == (0,) and det.rois == []
    assert golden_segmenter(golden_image(), params=none).masks.shape == (0, 300, 400)
    assert golden_segmenter.predict_rois_batch([]) == []
    with pytest.raises(ValueError, match='uint8'):
        golden_segmenter.predict_rois(golden_image().astype(np.float32))


def test_file_name_contradicting_tensors_warns(tmp_path):
    from instseg_ros.core.checkpoint import PresetMismatchWarning
    sd = RTMDetIns(get_config('rtmdet_ins_tiny')).state_dict()
    path = save_published(sd, tmp_path / 'rtmdet-ins_m_8xb32-300e_coco.pth')
    with pytest.warns(PresetMismatchWarning, match='rtmdet_ins_tiny'):
        assert rtmdet.build_segmenter(path).name == 'rtmdet_ins_tiny'


def test_meta_class_count_mismatch(tmp_path):
    sd = RTMDetIns(get_config('rtmdet_ins_tiny', num_classes=3)).state_dict()
    path = save_published(sd, tmp_path / 'rtmdet-ins_tiny_custom.pth', classes=['a', 'b'])
    with pytest.raises(CheckpointError) as excinfo:
        rtmdet.build_segmenter(path)
    assert "3 classes but 2 names are in its meta" in one_line_error(excinfo)
    assert rtmdet.build_segmenter(path, class_names=['x', 'y', 'z']).class_names == ('x', 'y', 'z')
