"""The mmdetection families on the exported runtimes (core/family_export): instseg-export writes a
graph and side-car, ONNX Runtime and OpenVINO run it (also from a checkpoint, exported into the
cache), and the detections equal the torch backend's: same labels, scores within 1e-4, boxes
within 0.5 px, mask IoU > 0.99. SOLOv2 and CondInst graphs take any input size (dynamic height and
width), checked at two image sizes. Also bf16 (torch autocast, OpenVINO) and the refusals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from instseg_ros.core import precision as precision_module  # noqa: E402
from instseg_ros.core.family_export import flatten_outputs, sidecar_family, unflatten_outputs  # noqa: E402
from instseg_ros.core.models import condinst, rtmdet, solov2  # noqa: E402
from instseg_ros.core.models.rtmdet.head import HeadOutput  # noqa: E402
from instseg_ros.core.segmenter import load_segmenter, model_family  # noqa: E402
from instseg_ros.tools.export import main as export_main  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import test_condinst  # noqa: E402
import test_rtmdet  # noqa: E402
from instseg_ros.core.models.solov2.testing import seeded_state_dict  # noqa: E402

#: mmdetection's test settings (score threshold 0.05): many detections to compare
MMDET = rtmdet.MMDET_TEST_PARAMS
RUNTIMES = ['onnxruntime', pytest.param('openvino', marks=pytest.mark.skipif(
    __import__('importlib').util.find_spec('openvino') is None, reason='openvino not installed'))]


def _paste(roi, hw) -> np.ndarray:
    mask = np.zeros(hw, dtype=bool)
    if roi is not None:
        x0, y0, crop = roi
        mask[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def assert_same_detections(got, ref, image_hw, min_count: int = 1, score_tol: float = 1e-3) -> None:
    """The same detections: each of ``ref`` matched to its own one of ``got`` with the same label,
    score within ``score_tol`` and box within 0.5 px (near-equal scores may swap places), and mask
    IoU > 0.99 for at least 99 % of the pairs; at most 2 % of ``ref`` (detections at the cut of
    max_per_img or a threshold) may go unmatched. Masks: IoU > 0.99 for 90 % of the pairs and
    0.97 on average.

    The runtimes' float32 convolutions differ from torch's by ~1e-4 of the output scale on these
    random networks (logits up to ~15; :func:`assert_same_raw` checks that directly), so scores
    move by a few 1e-4 (``score_tol`` 1e-3), and the masks of random weights, whose probabilities
    sit near the 0.5 threshold over wide areas, lose or gain a few pixels.
    """
    assert len(ref.scores) >= min_count
    allowed = int(0.02 * len(ref.scores))
    assert abs(len(got.scores) - len(ref.scores)) <= allowed, (len(got.scores), len(ref.scores))
    free = set(range(len(got.scores)))
    ious, unmatched = [], []
    for i in range(len(ref.scores)):
        fits = [j for j in free if got.labels[j] == ref.labels[i] and abs(got.scores[j] - ref.scores[i]) <= score_tol
                and np.abs(got.boxes_xyxy[j] - ref.boxes_xyxy[i]).max() <= 0.5]
        if not fits:
            unmatched.append((i, int(ref.labels[i]), round(float(ref.scores[i]), 5)))
            continue
        j = min(fits, key=lambda k: np.abs(got.boxes_xyxy[k] - ref.boxes_xyxy[i]).max())
        free.remove(j)
        ious.append(_iou(_paste(got.rois[j], image_hw), _paste(ref.rois[i], image_hw)))
    assert len(unmatched) <= allowed, unmatched
    assert np.mean(np.asarray(ious) > 0.99) >= 0.9 and np.mean(ious) > 0.97, sorted(ious)[:5]


def _network_input(seg, image: np.ndarray) -> torch.Tensor:
    if hasattr(seg, '_preprocess'):
        return seg._preprocess([image], 'bgr')[0]
    from instseg_ros.core.models.solov2.preprocess import preprocess_batch
    cfg = seg.cfg
    return preprocess_batch([image], 'bgr', cfg.test_scale, cfg.size_divisor, cfg.mean_rgb, cfg.std_rgb,
                            torch.device('cpu'), torch.float32).images


def _raw(seg, image: np.ndarray) -> list[torch.Tensor]:
    """The flat network outputs of ``seg`` for ``image`` (float32 for decoding)."""
    with torch.no_grad():
        output = seg._forward(_network_input(seg, image))
    return flatten_outputs(output, [str(i) for i in range(len(output))])[0]


def assert_same_raw(seg, ref_seg, image: np.ndarray) -> None:
    """Every network output of ``seg`` within 5e-4 of its scale (max |value|, at least 1) of the
    torch network's (measured: up to 1.5e-4 on RTMDet-Ins's logits; a wrong graph is off by ~1)."""
    for index, (got, want) in enumerate(zip(_raw(seg, image), _raw(ref_seg, image))):
        assert got.shape == want.shape and got.dtype == torch.float32
        scale = max(float(want.abs().max()), 1.0)
        assert float((got - want).abs().max()) <= 5e-4 * scale, (index, float((got - want).abs().max()), scale)


def _export(weights: Path, out: Path, *extra: str) -> dict:
    assert export_main([str(weights), '--out', str(out), *extra]) == 0
    return json.loads(out.with_suffix('.json').read_text())


# ---------------------------------------------------------------- RTMDet-Ins (fixed 640 x 640)
@pytest.fixture(scope='module')
def rtmdet_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('rtmdet_export')
    weights = test_rtmdet.save_published(test_rtmdet.golden_state_dict(),
                                         folder / 'rtmdet-ins_tiny_8xb32-300e_coco_synthetic.pth',
                                         classes=[f'c{i}' for i in range(80)])
    sidecar = _export(weights, folder / 'tiny.onnx')
    torch_seg = rtmdet.build_segmenter(weights)
    image = test_rtmdet.golden_image()
    return weights, folder / 'tiny.onnx', sidecar, torch_seg, image, torch_seg.predict_rois(image, params=MMDET)


def test_rtmdet_export_sidecar(rtmdet_files):
    _, onnx_path, sidecar, *_ = rtmdet_files
    assert sidecar['family'] == 'rtmdet_ins' and sidecar['preset'] == 'rtmdet_ins_tiny'
    assert sidecar['input']['shape'] == ['batch', 3, 640, 640] and sidecar['input']['channels'] == 'BGR'
    assert sidecar['names'][:2] == ['c0', 'c1'] and len(sidecar['names']) == 80
    assert [f for f, _ in sidecar['fields']] == list(HeadOutput._fields)
    assert sidecar['outputs']['cls_logits_0'] == [80, 80, 80]  # stride 8 of 640
    assert sidecar['outputs']['prototypes'] == [8, 80, 80]
    assert sidecar_family(onnx_path) == 'rtmdet_ins' and model_family('auto', onnx_path) == 'rtmdet_ins'


@pytest.mark.parametrize('backend', RUNTIMES)
def test_rtmdet_runtimes_equal_torch(rtmdet_files, backend):
    _, onnx_path, _, _, image, ref = rtmdet_files
    seg = load_segmenter(onnx_path, backend=backend)
    assert (seg.backend, seg.precision, seg.name) == (backend, 'fp32', 'rtmdet_ins_tiny')
    assert seg.class_names[:2] == ('c0', 'c1')
    assert_same_raw(seg, rtmdet_files[3], image)
    assert_same_detections(seg.predict_rois(image, params=MMDET), ref, image.shape[:2], min_count=20)
    # a batch of two images of different sizes, one forward pass
    small = np.ascontiguousarray(image[:200, :300])
    both = seg.predict_rois_batch([image, small], params=MMDET)
    assert_same_detections(both[0], ref, image.shape[:2], min_count=20)
    assert_same_detections(both[1], rtmdet_files[3].predict_rois(small, params=MMDET), small.shape[:2], min_count=1)


def test_rtmdet_checkpoint_is_exported_into_the_cache(rtmdet_files, tmp_path, monkeypatch):
    weights, _, _, _, image, ref = rtmdet_files
    monkeypatch.setenv('INSTSEG_CACHE_DIR', str(tmp_path / 'cache'))
    seg = load_segmenter(weights, backend='onnxruntime')
    cached = sorted(p.name for p in (tmp_path / 'cache' / 'onnx').iterdir())
    assert len(cached) == 2 and cached[0].endswith('.json') and cached[1].endswith('.onnx'), cached
    assert_same_detections(seg.predict_rois(image, params=MMDET), ref, image.shape[:2], min_count=20)
    load_segmenter(weights, backend='onnxruntime')  # second load: the cache, no new files
    assert sorted(p.name for p in (tmp_path / 'cache' / 'onnx').iterdir()) == cached


def test_exports_are_refused_where_they_do_not_fit(rtmdet_files, tmp_path):
    weights, onnx_path, sidecar, *_ = rtmdet_files
    with pytest.raises(ValueError, match='is an ONNX export: pass backend:=onnxruntime'):
        load_segmenter(onnx_path, backend='torch')
    with pytest.raises(ValueError, match='is an export of rtmdet_ins_tiny, not rtmdet_ins_s'):
        load_segmenter(onnx_path, preset='rtmdet_ins_s', backend='onnxruntime')
    with pytest.raises(ValueError, match='is a rtmdet_ins export, not a condinst one'):
        condinst.build_segmenter(onnx_path, backend='onnxruntime')
    with pytest.raises(ValueError, match='3 class names for a model with 80 classes'):
        load_segmenter(onnx_path, backend='onnxruntime', class_names=['a', 'b', 'c'])
    # a side-car whose fields do not add up to the graph's outputs
    broken = tmp_path / 'broken.onnx'
    broken.write_bytes(onnx_path.read_bytes())
    bad = dict(sidecar, fields=sidecar['fields'][:-1])
    broken.with_suffix('.json').write_text(json.dumps(bad))
    with pytest.raises(ValueError, match='its fields do not match its outputs'):
        load_segmenter(broken, backend='onnxruntime')
    # the YOLACT loader names the family instead of failing on the config
    from instseg_ros.core.exported import load_network
    with pytest.raises(ValueError, match='is a rtmdet_ins export, not a YOLACT one'):
        load_network(onnx_path, 'onnxruntime')


@pytest.mark.skipif(__import__('importlib').util.find_spec('openvino') is None, reason='no openvino')
def test_openvino_bf16(rtmdet_files):
    """OpenVINO's own bf16 inference: on a CPU without native bf16 OpenVINO computes f32 (the
    same detections); with it, the outputs track fp32 (random networks amplify bf16 rounding, so
    only their correlation is checked)."""
    _, onnx_path, _, _, image, ref = rtmdet_files
    seg = load_segmenter(onnx_path, backend='openvino', precision='bf16')
    assert seg.precision == 'bf16' and seg.backend == 'openvino'
    if not precision_module.cpu_has_native_bf16():
        assert_same_detections(seg.predict_rois(image, params=MMDET), ref, image.shape[:2], min_count=20)
    else:
        _assert_tracks_fp32(rtmdet_files[3], seg, image)


def _assert_tracks_fp32(fp32_seg, seg, image) -> None:
    """The network outputs of ``seg`` differ from fp32's (reduced precision did run) but stay
    correlated with them; decoding gets float32."""
    ref, got = _raw(fp32_seg, image), _raw(seg, image)
    for index in range(3, 9):  # box distances and dynamic kernels, 3 levels each
        a, b = ref[index], got[index]
        assert b.dtype == torch.float32
        corr = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
        assert 0.85 < corr < 1.0 - 1e-9, (index, corr)


def test_torch_bf16_autocast(rtmdet_files, monkeypatch):
    """bf16 on the torch backend: autocast, outputs cast to float32 before decoding. A CPU without
    native bf16 gets one warning and fp32 (emulated bf16 is slower than fp32); to run the bf16
    path here the check is told the CPU has it."""
    weights, _, _, fp32_seg, image, _ = rtmdet_files
    if not precision_module.cpu_has_native_bf16():
        with pytest.warns(RuntimeWarning, match='no native bf16'):
            assert rtmdet.build_segmenter(weights, precision='bf16').precision == 'fp32'
    monkeypatch.setattr(precision_module, 'cpu_has_native_bf16', lambda: True)
    seg = rtmdet.build_segmenter(weights, precision='bf16')
    assert seg.precision == 'bf16'
    _assert_tracks_fp32(fp32_seg, seg, image)


# ---------------------------------------------------------------- SOLOv2 and CondInst (dynamic size)
def _scene(height: int, width: int, seed: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack((cols / width * 200, rows / height * 180, 90 + 40 * np.sin(cols / 17.0)), axis=2)
    image[(rows - height / 2) ** 2 + (cols - width / 3) ** 2 < (height / 4) ** 2] = (30, 40, 220)
    noise = np.random.default_rng(seed).normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def solov2_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('solov2_export')
    cfg = solov2.preset_config('solov2_light_r50')
    weights = folder / 'solov2-light_r50_fpn_ms-3x_coco_synthetic.pth'
    torch.save({'meta': {'dataset_meta': {'classes': [f't{i}' for i in range(cfg.num_classes)]}},
                'state_dict': seeded_state_dict(cfg)}, weights)
    sidecar = _export(weights, folder / 'light.onnx')
    return weights, folder / 'light.onnx', sidecar


def test_solov2_export_has_dynamic_size_and_equals_torch(solov2_files):
    weights, onnx_path, sidecar = solov2_files
    assert sidecar['family'] == 'solov2' and sidecar['input']['shape'] == ['batch', 3, 'height', 'width']
    assert [f for f, _ in sidecar['fields']] == ['cls_logits', 'kernels', 'mask_feats']
    torch_seg = load_segmenter(weights)
    seg = load_segmenter(onnx_path, backend='onnxruntime')
    assert seg.name == 'solov2_light_r50' and seg.backend == 'onnxruntime'
    for hw, seed in (((240, 320), 1), ((150, 400), 2)):  # two network input sizes, one graph
        image = _scene(*hw, seed)
        assert_same_raw(seg, torch_seg, image)
        ref = torch_seg.predict_rois(image)
        assert_same_detections(seg.predict_rois(image), ref, hw, min_count=1)


@pytest.mark.skipif(__import__('importlib').util.find_spec('openvino') is None, reason='no openvino')
def test_solov2_on_openvino_equals_torch(solov2_files):
    weights, onnx_path, _ = solov2_files
    image = _scene(200, 300, 3)
    torch_seg, seg = load_segmenter(weights), load_segmenter(onnx_path, backend='openvino')
    assert_same_raw(seg, torch_seg, image)
    assert_same_detections(seg.predict_rois(image), torch_seg.predict_rois(image), image.shape[:2], min_count=1)


def test_condinst_export_equals_torch_at_two_sizes(tmp_path):
    weights = test_condinst.save_published(test_condinst.golden_state_dict(),
                                           tmp_path / 'condinst_r50_fpn_ms-poly-90k_coco_instance_synthetic.pth',
                                           classes=[f'k{i}' for i in range(80)])
    sidecar = _export(weights, tmp_path / 'condinst.onnx')
    assert sidecar['family'] == 'condinst' and sidecar['input']['shape'][2:] == ['height', 'width']
    torch_seg = load_segmenter(weights)
    seg = load_segmenter(tmp_path / 'condinst.onnx', backend='onnxruntime')
    assert seg.name == 'condinst_r50' and seg.class_names[0] == 'k0'
    golden = test_condinst.golden_image()
    assert_same_raw(seg, torch_seg, golden)
    for image in (golden, np.ascontiguousarray(np.concatenate([golden, golden[:20]], axis=0)[:, :480])):
        ref = torch_seg.predict_rois(image, params=condinst.MMDET_TEST_PARAMS)
        assert_same_detections(seg.predict_rois(image, params=condinst.MMDET_TEST_PARAMS), ref,
                               image.shape[:2], min_count=1)


# ---------------------------------------------------------------- the flat output layout
def test_flatten_and_unflatten_are_inverse():
    out = HeadOutput(cls_logits=(torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 2, 2)),
                     box_distances=(torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 2, 2)),
                     kernels=(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 2, 2)), prototypes=torch.ones(1, 8, 8, 8))
    tensors, names, fields = flatten_outputs(out, HeadOutput._fields)
    assert names == ['cls_logits_0', 'cls_logits_1', 'box_distances_0', 'box_distances_1', 'kernels_0',
                     'kernels_1', 'prototypes']
    assert fields == [['cls_logits', 2], ['box_distances', 2], ['kernels', 2], ['prototypes', None]]
    back = unflatten_outputs(tensors, fields, HeadOutput)
    assert isinstance(back, HeadOutput) and back.cls_logits[1] is out.cls_logits[1]
    assert back.prototypes is out.prototypes
    plain = unflatten_outputs(tensors, fields, tuple)
    assert type(plain) is tuple and len(plain) == 4 and len(plain[0]) == 2


def test_instseg_export_random_presets_and_refusals(tmp_path, capsys):
    assert export_main(['--random', 'rtmdet_ins_tiny', '--out', str(tmp_path / 'r.onnx')]) == 0
    sidecar = json.loads((tmp_path / 'r.json').read_text())
    assert sidecar['family'] == 'rtmdet_ins' and sidecar['names'][0] == 'person' and sidecar['source'] == \
        'random:rtmdet_ins_tiny'
    assert capsys.readouterr().out.splitlines()[0] == 'rtmdet_ins_tiny: 80 classes, input 640x640, opset 17'
    assert export_main(['--random', 'maskrcnn_resnet50_fpn', '--out', str(tmp_path / 'm.onnx')]) == 2
    assert capsys.readouterr().err.strip() == ('instseg-export: maskrcnn has no ONNX export; the exported '
                                               'backends run yolact, rtmdet_ins, solov2, condinst')
    assert export_main(['--random', 'rtmdet_ins_s', '--num-classes', '5', '--out', str(tmp_path / 's.onnx')]) == 2
    assert '--num-classes is for YOLACT' in capsys.readouterr().err
    assert not (tmp_path / 'm.onnx').exists() and not (tmp_path / 's.onnx').exists()
