"""Mask R-CNN behind the segmenter interface: strict loading of torchvision-layout files, and results
equal to torchvision's own model for the same weights and image (small inputs for speed)."""

import pathlib
import sys
import warnings

import numpy as np
import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'ros'))
from launch_args import make_maskrcnn_checkpoint  # noqa: E402

from instseg_ros.core.checkpoint import CheckpointError, PresetMismatchWarning  # noqa: E402
from instseg_ros.core.classes import COCO_CATEGORY_IDS, COCO_CLASSES  # noqa: E402
from instseg_ros.core.models.maskrcnn import MaskRcnnSegmenter, load_model  # noqa: E402
from instseg_ros.core.models.yolact import YolactSegmenter  # noqa: E402
from instseg_ros.core.pipeline import FramePipeline  # noqa: E402
from instseg_ros.core.segmenter import InferenceParams, Segmenter, load_segmenter, model_family  # noqa: E402

PRESETS = ('maskrcnn_resnet50_fpn', 'maskrcnn_resnet50_fpn_v2')
FILE_NAMES = {'maskrcnn_resnet50_fpn': 'maskrcnn_resnet50_fpn_coco-random.pth',
              'maskrcnn_resnet50_fpn_v2': 'maskrcnn_resnet50_fpn_v2_coco-random.pth'}
SIZE = 320  # min_size = max_size: a 240x320 image runs at 240x320


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('maskrcnn')
    return {preset: make_maskrcnn_checkpoint(folder / FILE_NAMES[preset], preset, seed=i)
            for i, preset in enumerate(PRESETS)}


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    img[60:180, 80:240] = (40, 160, 220)  # a block the random backbone responds to
    return img


def torchvision_reference(preset, path):
    """torchvision's own builder with the file's weights (what its official weights get: for v1
    BatchNorm eps 0, as torchvision's overwrite_eps does)."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
    builder = {'maskrcnn_resnet50_fpn': maskrcnn_resnet50_fpn,
               'maskrcnn_resnet50_fpn_v2': maskrcnn_resnet50_fpn_v2}[preset]
    model = builder(weights=None, weights_backbone=None, min_size=SIZE, max_size=SIZE).eval()
    # strict; BatchNorm2d fills the num_batches_tracked counters the v1 file does not hold
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    if preset == 'maskrcnn_resnet50_fpn':
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eps = 0.0
    return model


def reference_output(model, image_bgr, score, nms, detections):
    model.roi_heads.score_thresh, model.roi_heads.nms_thresh = score, nms
    model.roi_heads.detections_per_img = detections
    tensor = torch.from_numpy(image_bgr[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
    with torch.inference_mode():
        return model([tensor])[0]


def full_masks(rois, shape):
    masks = np.zeros((len(rois), *shape), dtype=bool)
    for i, roi in enumerate(rois):
        if roi is not None:
            x0, y0, crop = roi
            masks[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return masks


@pytest.mark.parametrize('preset', PRESETS)
def test_random_torchvision_checkpoint_loads_strictly_and_is_inferred(checkpoints, preset):
    model, cfg = load_model(checkpoints[preset])  # preset auto: from the file name
    assert cfg.name == preset and cfg.num_classes == 91
    on_file = torch.load(checkpoints[preset], weights_only=True)
    assert sorted(model.state_dict()) == sorted(on_file)
    key = 'roi_heads.mask_predictor.mask_fcn_logits.bias'
    assert torch.equal(model.state_dict()[key], on_file[key])


def test_wrong_preset_names_the_right_one_and_missing_keys_fail(checkpoints, tmp_path):
    with pytest.raises(CheckpointError, match=r"does not match preset 'maskrcnn_resnet50_fpn_v2'.*"
                       r'pass preset:=maskrcnn_resnet50_fpn\b'):
        load_model(checkpoints['maskrcnn_resnet50_fpn'], preset='maskrcnn_resnet50_fpn_v2')
    state_dict = torch.load(checkpoints['maskrcnn_resnet50_fpn_v2'], weights_only=True)
    del state_dict['roi_heads.box_predictor.bbox_pred.bias']
    cut = tmp_path / 'maskrcnn_resnet50_fpn_v2_cut.pth'
    torch.save(state_dict, cut)
    with pytest.raises(CheckpointError, match=r"1 missing: \['roi_heads.box_predictor.bbox_pred.bias'\]"):
        load_model(cut)
    renamed = tmp_path / 'maskrcnn_resnet50_fpn_v2_renamed.pth'
    renamed.write_bytes(checkpoints['maskrcnn_resnet50_fpn'].read_bytes())
    with pytest.warns(PresetMismatchWarning, match="file name says preset 'maskrcnn_resnet50_fpn_v2'"):
        assert load_model(renamed)[1].name == 'maskrcnn_resnet50_fpn'


@pytest.mark.parametrize('preset', PRESETS)
def test_results_equal_torchvision_for_the_same_weights(checkpoints, image, preset):
    segmenter = load_segmenter(checkpoints[preset], device='cpu', min_size=SIZE, max_size=SIZE)
    assert isinstance(segmenter, (MaskRcnnSegmenter, Segmenter)) and segmenter.name == preset
    params = InferenceParams(score_threshold=0.05, nms_threshold=0.5, max_detections=30)
    ours = segmenter.predict_rois(image, color_order='bgr', params=params)
    ref = reference_output(torchvision_reference(preset, checkpoints[preset]), image, 0.05, 0.5, 30)
    assert len(ours.scores) == len(ref['scores']) == 30
    np.testing.assert_allclose(ours.boxes_xyxy, ref['boxes'].numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(ours.scores, ref['scores'].numpy(), atol=1e-5, rtol=0)
    assert [COCO_CATEGORY_IDS[i] for i in ours.labels] == ref['labels'].tolist()
    ref_masks = (ref['masks'][:, 0] > 0.5).numpy()
    masks = full_masks(ours.rois, image.shape[:2])
    inter = (masks & ref_masks).sum((1, 2))
    union = (masks | ref_masks).sum((1, 2))
    assert union.min() > 0 and (inter / union).min() > 0.99
    for roi in ours.rois:  # tight: every border row and column of the crop has a True pixel
        crop = roi[2]
        assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
    assert set(segmenter.last_timings_ms) == {'preprocess', 'forward', 'postprocess'}
    assert segmenter.class_names == COCO_CLASSES


def test_class_filter_applies_before_nms_and_keeps_scores(checkpoints, image):
    preset = 'maskrcnn_resnet50_fpn_v2'
    segmenter = load_segmenter(checkpoints[preset], device='cpu', min_size=SIZE, max_size=SIZE)
    car = COCO_CLASSES.index('car')
    ours = segmenter.predict_rois(image, params=InferenceParams(score_threshold=0.05,
                                                                max_detections=10, class_ids=(car,)))
    ref = reference_output(torchvision_reference(preset, checkpoints[preset]), image, 0.05, 0.5, 1000)
    cars = ref['labels'] == COCO_CATEGORY_IDS[car]
    assert len(ours.scores) == 10 and set(ours.labels.tolist()) == {car}
    np.testing.assert_allclose(ours.scores, ref['scores'][cars][:10].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.boxes_xyxy, ref['boxes'][cars][:10].numpy(), atol=1e-3, rtol=0)
    instances = segmenter(image, params=InferenceParams(score_threshold=0.05, max_detections=3))
    assert instances.masks.shape == (3, 240, 320) and instances.names == ['person'] * 3


def test_pipeline_runs_mask_rcnn_and_batches(checkpoints, image):
    segmenter = load_segmenter(checkpoints['maskrcnn_resnet50_fpn_v2'], min_size=SIZE, max_size=SIZE)
    pipeline = FramePipeline(segmenter)
    assert pipeline.predictor is segmenter and pipeline.predictor.cfg.name == 'maskrcnn_resnet50_fpn_v2'
    params = InferenceParams(score_threshold=0.05, max_detections=5)
    single = pipeline.process(image, params)
    batch = pipeline.process_batch([image, image[:200, :300].copy()], params)
    assert len(single) == 5 and len(batch) == 2 and batch[1].image_size == (200, 300)
    np.testing.assert_allclose(batch[0].scores, single.scores, atol=1e-4)
    assert {'preprocess', 'forward', 'postprocess', 'encode'} <= set(single.timings_ms)


def test_model_family_follows_preset_then_file_name():
    assert model_family('auto', '/w/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth') == 'maskrcnn'
    assert model_family('auto', '/w/yolact_base_54_800000.pth') == 'yolact'
    assert model_family('maskrcnn_resnet50_fpn_v2', '/w/model.pth') == 'maskrcnn'
    assert model_family('yolact_base', '/w/maskrcnn_x.pth') == 'yolact'
    with pytest.raises(CheckpointError, match="unknown preset 'yolact_huge'"):
        model_family('yolact_huge', '/w/x.pth')
    with pytest.raises(CheckpointError, match='pass model:=maskrcnn'):
        model_family('maskrcnn_resnet50_fpn', '/w/x.pth', model='yolact')


def test_yolact_segmenter_delegates_to_the_predictor():
    from instseg_ros.core.config import get_preset
    from instseg_ros.core.models.yolact.yolact import Yolact
    from instseg_ros.core.predictor import Predictor

    torch.manual_seed(0)
    predictor = Predictor(Yolact(get_preset('yolact_small', num_classes=4)), get_preset('yolact_small', 4))
    segmenter = YolactSegmenter(predictor)
    assert isinstance(segmenter, Segmenter)
    assert (segmenter.name, segmenter.precision, segmenter.device.type) == ('yolact_small', 'fp32', 'cpu')
    image = np.full((120, 160, 3), 90, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        a = segmenter.predict_rois(image, params=InferenceParams(score_threshold=0.0))
    b = predictor.predict_rois(image, params=InferenceParams(score_threshold=0.0))
    np.testing.assert_array_equal(a.scores, b.scores)
    assert segmenter.last_timings_ms is predictor.last_timings_ms
