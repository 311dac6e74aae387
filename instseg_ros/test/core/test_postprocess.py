"""postprocess / detect on hand-built head outputs (3 priors, 2 classes + background, 4x4 prototypes).

Priors (loc = 0 -> box = prior): A (0, 0, .5, .5), B (.05, 0, .55, .5) with IoU(A, B) = .225/.275 = .82,
C (.65, .65, .85, .85) disjoint from both. Logits are log-probabilities, so softmax returns them exactly.
"""

import math

import numpy as np
import pytest
import torch

from instseg_ros.core.config import get_preset
from instseg_ros.core.encoding import masks_to_rois
from instseg_ros.core.models.yolact.yolact import YolactOutput
from instseg_ros.core.ops.boxes import decode
from instseg_ros.core.ops.masks import (
    assemble_masks,
    crop_masks,
    upsample_masks,
)
from instseg_ros.core.ops.nms import fast_nms
from instseg_ros.core.postprocess import (
    InferenceParams,
    detect,
    postprocess,
    postprocess_rois,
)

V1_CFG = get_preset('yolact_resnet50', num_classes=3)
PLUS_CFG = get_preset('yolact_plus_resnet50', num_classes=3)
IMAGE_SIZE = (8, 8)

# class probabilities (background, class 0, class 1)
PROBS = [[0.10, 0.80, 0.10],   # A
         [0.25, 0.70, 0.05],   # B
         [0.30, 0.10, 0.60]]   # C


def _output() -> YolactOutput:
    priors = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.30, 0.25, 0.5, 0.5], [0.75, 0.75, 0.2, 0.2]])
    conf = torch.tensor(PROBS).log()
    coeffs = torch.tensor([[1.0], [1.0], [1.0]])
    proto = torch.full((1, 4, 4, 1), 10.0)  # sigmoid(10) ~ 1 everywhere before cropping
    return YolactOutput(loc=torch.zeros(1, 3, 4), conf=conf[None], coeffs=coeffs[None], proto=proto,
                        priors=priors, segm=None)


def _block(rows: range, cols: range) -> torch.Tensor:
    mask = torch.zeros(IMAGE_SIZE, dtype=torch.bool)
    mask[rows.start:rows.stop, cols.start:cols.stop] = True
    return mask


def test_detect_fast_nms_order_and_low_scores_survive():
    out = _output()
    dets = detect(out.loc[0], out.conf[0], out.coeffs[0], out.priors, InferenceParams())
    # class 0: A .8 keeps, B .7 suppressed by A, C .1 kept; class 1: C .6, A .1 kept, B .05 suppressed by A
    torch.testing.assert_close(dets.scores, torch.tensor([0.8, 0.6, 0.1, 0.1]))
    assert dets.labels.tolist()[:2] == [0, 1] and sorted(dets.labels.tolist()[2:]) == [0, 1]
    torch.testing.assert_close(dets.boxes_xyxy[0], torch.tensor([0.0, 0.0, 0.5, 0.5]))
    torch.testing.assert_close(dets.boxes_xyxy[1], torch.tensor([0.65, 0.65, 0.85, 0.85]))


def test_postprocess_boxes_masks_scores():
    inst = postprocess(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(score_threshold=0.3))
    assert inst.image_size == IMAGE_SIZE and len(inst) == 2
    torch.testing.assert_close(inst.scores, torch.tensor([0.8, 0.6]))
    assert inst.labels.tolist() == [0, 1] and inst.labels.dtype == torch.int64
    # C: x 5.2 -> 5, 6.8 -> 6 (truncation)
    assert inst.boxes_xyxy.dtype == torch.float32
    assert inst.boxes_xyxy.tolist() == [[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 6.0, 6.0]]
    # A crop at 4x4 with 1 px padding: [0, 3) -> rows/cols 0..2; upsampled x2 -> 0..5 (> .5 at .75*.75)
    assert torch.equal(inst.masks[0], _block(range(6), range(6)))
    # C crop: [1.6, 4) -> rows/cols 2, 3; upsampled -> 4..7
    assert torch.equal(inst.masks[1], _block(range(4, 8), range(4, 8)))


def test_score_threshold_is_strict_and_class_filter():
    score_c = torch.softmax(torch.tensor(PROBS).log(), -1)[2, 2].item()  # ~0.6 as computed in float32
    inst = postprocess(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(score_threshold=score_c))
    assert inst.labels.tolist() == [0]  # a score equal to the threshold is dropped
    below = postprocess(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(score_threshold=score_c - 1e-6))
    assert below.labels.tolist() == [0, 1]
    only_1 = postprocess(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(score_threshold=0.05, class_ids=(1,)))
    assert only_1.labels.tolist() == [1, 1]
    torch.testing.assert_close(only_1.scores, torch.tensor([0.6, 0.1]))
    assert only_1.boxes_xyxy[1].tolist() == [0.0, 0.0, 4.0, 4.0]  # A for class 1


def test_max_detections_and_empty_results():
    inst = postprocess(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(score_threshold=0.0, max_detections=3))
    assert len(inst) == 3
    empty = postprocess(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(score_threshold=0.9))
    assert len(empty) == 0 and empty.masks.shape == (0, 8, 8) and empty.boxes_xyxy.shape == (0, 4)
    none_left = postprocess(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(conf_threshold=0.95))
    assert len(none_left) == 0
    no_class = postprocess(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(class_ids=(7,)))
    assert len(no_class) == 0


def _maskiou_by_area(masks_soft: torch.Tensor) -> torch.Tensor:
    """[N,1,Hp,Wp] -> [N,2]: the big (A-like) mask gets (.5, 0), the small one (0, .9)."""
    big = masks_soft.mean(dim=(1, 2, 3)) > 0.4
    return torch.where(big[:, None], torch.tensor([0.5, 0.0]), torch.tensor([0.0, 0.9]))


def test_maskiou_rescoring_resorts_and_rethresholds():
    params = InferenceParams(score_threshold=0.3)
    inst = postprocess(_output(), PLUS_CFG, IMAGE_SIZE, params, rescore_fn=_maskiou_by_area)
    # A: .8 * .5 = .4 ; C: .6 * .9 = .54 -> C first
    assert inst.labels.tolist() == [1, 0]
    torch.testing.assert_close(inst.scores, torch.tensor([0.54, 0.4]))
    assert torch.equal(inst.masks[0], _block(range(4, 8), range(4, 8)))
    strict = postprocess(_output(), PLUS_CFG, IMAGE_SIZE, InferenceParams(score_threshold=0.45),
                         rescore_fn=_maskiou_by_area)
    assert strict.labels.tolist() == [1]
    # a v1 config ignores the rescoring function
    plain = postprocess(_output(), V1_CFG, IMAGE_SIZE, params, rescore_fn=_maskiou_by_area)
    torch.testing.assert_close(plain.scores, torch.tensor([0.8, 0.6]))


def test_empty_prior_set():
    out = YolactOutput(loc=torch.zeros(1, 0, 4), conf=torch.zeros(1, 0, 3), coeffs=torch.zeros(1, 0, 1),
                       proto=torch.zeros(1, 4, 4, 1), priors=torch.zeros(0, 4), segm=None)
    assert len(postprocess(out, V1_CFG, IMAGE_SIZE)) == 0


def test_params_validation():
    assert InferenceParams(class_ids=[2, 1]).class_ids == (2, 1)
    with pytest.raises(ValueError):
        InferenceParams(class_ids=(-1,))
    with pytest.raises(ValueError):
        InferenceParams(nms_threshold=1.5)
    assert math.isclose(InferenceParams().conf_threshold, 0.05)


def _random_output(num_priors: int = 400, num_classes: int = 4, proto_hw=(46, 46), channels: int = 8,
                   seed: int = 0) -> YolactOutput:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(num_priors, 2, generator=generator)
    sizes = 0.05 + 0.6 * torch.rand(num_priors, 2, generator=generator)
    return YolactOutput(loc=0.5 * torch.randn(1, num_priors, 4, generator=generator),
                        conf=2 * torch.randn(1, num_priors, num_classes, generator=generator),
                        coeffs=torch.randn(1, num_priors, channels, generator=generator),
                        proto=torch.randn(1, *proto_hw, channels, generator=generator).relu(),
                        priors=torch.cat((centres, sizes), dim=1), segm=None)


@pytest.mark.parametrize('image_size', [(120, 160), (37, 29), (480, 640)])
def test_masks_equal_full_frame_reference(image_size):
    """The windowed upsampling gives the reference masks (sigmoid -> crop -> F.interpolate -> > 0.5);
    differences are tolerated only where the reference value is within 1e-5 of 0.5."""
    out = _random_output(seed=sum(image_size))
    params = InferenceParams(score_threshold=0.2, max_detections=25)
    inst = postprocess(out, V1_CFG, image_size, params)
    assert len(inst) > 5
    dets = detect(out.loc[0], out.conf[0], out.coeffs[0], out.priors, params)
    keep = dets.scores > params.score_threshold
    soft = crop_masks(assemble_masks(out.proto[0], dets.coeffs[keep]), dets.boxes_xyxy[keep], padding=1)
    reference_soft = upsample_masks(soft, image_size)
    assert inst.masks.dtype == torch.bool and inst.masks.shape == reference_soft.shape
    flipped = inst.masks != (reference_soft > 0.5)
    assert int((flipped & ((reference_soft - 0.5).abs() > 1e-5)).sum()) == 0
    assert bool(inst.masks.any())


def _assert_same_rois(rois, expected):
    assert len(rois) == len(expected)
    for roi, ref in zip(rois, expected):
        assert (roi is None) == (ref is None)
        if roi is not None:
            assert roi[:2] == ref[:2] and np.array_equal(roi[2], ref[2]) and roi[2].flags['C_CONTIGUOUS']


def test_postprocess_rois_equals_postprocess_then_masks_to_rois():
    out = _random_output(seed=4)
    params = InferenceParams(score_threshold=0.2, max_detections=20)
    plain = postprocess(out, V1_CFG, (96, 128), params)
    assert len(plain) > 5
    dets = postprocess_rois(out, V1_CFG, (96, 128), params)
    assert np.array_equal(dets.boxes_xyxy, plain.boxes_xyxy.numpy()) and dets.boxes_xyxy.dtype == np.float32
    assert np.array_equal(dets.scores, plain.scores.numpy()) and dets.scores.dtype == np.float32
    assert np.array_equal(dets.labels, plain.labels.numpy()) and dets.labels.dtype == np.int64
    _assert_same_rois(dets.rois, masks_to_rois(plain.masks))
    # rescoring re-sorts: the ROIs follow the returned order
    rescored = postprocess_rois(_output(), PLUS_CFG, IMAGE_SIZE, InferenceParams(score_threshold=0.3),
                                rescore_fn=_maskiou_by_area)
    reference = postprocess(_output(), PLUS_CFG, IMAGE_SIZE, InferenceParams(score_threshold=0.3),
                            rescore_fn=_maskiou_by_area)
    assert rescored.labels.tolist() == reference.labels.tolist() == [1, 0]
    _assert_same_rois(rescored.rois, masks_to_rois(reference.masks))
    empty = postprocess_rois(_output(), V1_CFG, IMAGE_SIZE, InferenceParams(score_threshold=0.9))
    assert empty.boxes_xyxy.shape == (0, 4) and empty.scores.shape == (0,) and empty.rois == []




@pytest.mark.parametrize('conf_threshold,class_ids,top_k', [(0.05, None, 200), (0.5, None, 200),
                                                            (0.3, (2, 0), 200), (0.4, None, 3)])
def test_detect_equals_fast_nms_on_the_decoded_candidates(conf_threshold, class_ids, top_k):
    """detect ranks all priors with non-candidates pushed below -1 and decodes lazily; the result is
    the reference order of steps: candidate filter, decode, class rows, Fast NMS."""
    out = _random_output(num_priors=600, seed=9)
    params = InferenceParams(conf_threshold=conf_threshold, class_ids=class_ids, top_k=top_k,
                             max_detections=30)
    got = detect(out.loc[0], out.conf[0], out.coeffs[0], out.priors, params)
    scores = torch.softmax(out.conf[0], dim=-1)[:, 1:].t()
    keep = scores.max(dim=0).values > conf_threshold
    rows = list(class_ids) if class_ids else list(range(scores.shape[0]))
    expected = fast_nms(decode(out.loc[0][keep], out.priors[keep]), out.coeffs[0][keep],
                        scores[:, keep][rows], iou_threshold=0.5, top_k=top_k, max_detections=30)
    assert 0 < len(got.scores) == len(expected.scores)
    assert int(keep.sum()) > top_k or conf_threshold == 0.5  # the top-k limit is exercised
    assert got.labels.tolist() == [rows[i] for i in expected.labels.tolist()]
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.boxes_xyxy, expected.boxes_xyxy, rtol=0, atol=1e-6)
    assert torch.equal(got.coeffs, expected.coeffs)
