"""Fast NMS semantics (reference fast_nms / cc_fast_nms) on hand-made boxes."""

import torch
from torchvision.ops import nms as greedy_nms

from instseg_ros.core.ops.nms import fast_nms, fast_nms_class_agnostic

# A-B and B-C overlap with IoU 80/120 = 2/3; A-C with IoU 60/140 = 3/7.
BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [2.0, 0.0, 12.0, 10.0]
BOX_C = [4.0, 0.0, 14.0, 10.0]


def _chain():
    boxes = torch.tensor([BOX_A, BOX_B, BOX_C])
    coeffs = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])  # coeff[:, 0] identifies the box
    return boxes, coeffs


def test_suppressed_box_still_suppresses_unlike_greedy():
    boxes, coeffs = _chain()
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    assert greedy_nms(boxes, scores[0], 0.5).tolist() == [0, 2]  # greedy keeps A and C
    out = fast_nms(boxes, coeffs, scores, iou_threshold=0.5, top_k=200, max_detections=100)
    torch.testing.assert_close(out.boxes_xyxy, torch.tensor([BOX_A]))  # Fast NMS: B kills C
    torch.testing.assert_close(out.coeffs, torch.tensor([[1.0, 0.0]]))
    assert out.labels.tolist() == [0]
    torch.testing.assert_close(out.scores, torch.tensor([0.9]))


def test_per_class_suppression_and_no_second_threshold():
    boxes, coeffs = _chain()
    scores = torch.tensor([[0.9, 0.8, 0.7],
                           [0.1, 0.1, 0.6]])
    out = fast_nms(boxes, coeffs, scores, iou_threshold=0.5)
    # class 0 keeps A; class 1 ranks C(.6), A(.1), B(.1): A vs C 3/7 kept, B vs C 2/3 dropped.
    assert out.coeffs[:, 0].tolist() == [1.0, 3.0, 1.0]
    assert out.labels.tolist() == [0, 1, 1]
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.6, 0.1]))


def test_top_k_per_class_and_max_detections():
    boxes, coeffs = _chain()
    scores = torch.tensor([[0.9, 0.8, 0.7],
                           [0.1, 0.1, 0.6]])
    out = fast_nms(boxes, coeffs, scores, iou_threshold=0.5, top_k=1)
    assert out.coeffs[:, 0].tolist() == [1.0, 3.0]
    assert out.labels.tolist() == [0, 1]
    out = fast_nms(boxes, coeffs, scores, iou_threshold=0.5, top_k=1, max_detections=1)
    assert out.labels.tolist() == [0]
    torch.testing.assert_close(out.scores, torch.tensor([0.9]))


def test_iou_equal_to_threshold_is_kept():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 2.0]])  # IoU = 8 / 16 = 0.5 exactly
    coeffs = torch.zeros(2, 3)
    scores = torch.tensor([[0.9, 0.8]])
    assert len(fast_nms(boxes, coeffs, scores, iou_threshold=0.5).scores) == 2
    assert len(fast_nms(boxes, coeffs, scores, iou_threshold=0.49).scores) == 1


def test_class_agnostic_suppresses_across_classes():
    boxes, coeffs = _chain()
    scores = torch.tensor([[0.9, 0.0, 0.0],
                           [0.0, 0.8, 0.0],
                           [0.0, 0.0, 0.7]])
    per_class = fast_nms(boxes, coeffs, scores, iou_threshold=0.5)
    assert per_class.labels.tolist()[:3] == [0, 1, 2]
    agnostic = fast_nms_class_agnostic(boxes, coeffs, scores, iou_threshold=0.5)
    assert agnostic.labels.tolist() == [0]  # B dropped by A, C by B (fast semantics)
    torch.testing.assert_close(agnostic.scores, torch.tensor([0.9]))
    far = torch.tensor([BOX_A, [20.0, 0.0, 30.0, 10.0], BOX_B])
    agnostic = fast_nms_class_agnostic(far, coeffs, scores, iou_threshold=0.5, max_detections=5)
    assert agnostic.labels.tolist() == [0, 1]


def test_empty_inputs():
    for nms in (fast_nms, fast_nms_class_agnostic):
        out = nms(torch.zeros(0, 4), torch.zeros(0, 5), torch.zeros(3, 0))
        assert out.boxes_xyxy.shape == (0, 4) and out.coeffs.shape == (0, 5)
        assert out.labels.shape == (0,) and out.labels.dtype == torch.int64
        assert out.scores.shape == (0,)
