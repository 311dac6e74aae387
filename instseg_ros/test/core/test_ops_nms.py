"""Fast NMS semantics (reference fast_nms / cc_fast_nms) on hand-made boxes."""

import pytest
import torch
from torchvision.ops import nms as greedy_nms

from instseg_ros.core.ops.boxes import box_iou
from instseg_ros.core.ops.nms import fast_nms, fast_nms_class_agnostic, fast_nms_indices

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


def _fast_nms_by_definition(boxes, scores, iou_threshold, top_k, max_detections):
    """The reference algorithm written out: per class its top_k, full IoU matrix, suppression by any
    higher-ranked box, global stable sort. Returns (prior index, label, score) triples."""
    found = []
    for label in range(scores.shape[0]):
        order = scores[label].sort(descending=True, stable=True).indices[:top_k]
        iou = box_iou(boxes[order], boxes[order]).tolist()
        for rank, prior in enumerate(order.tolist()):
            if max(iou[rank][:rank], default=0.0) <= iou_threshold:
                found.append((prior, label, float(scores[label, prior])))
    found.sort(key=lambda item: -item[2])  # stable: class-major, rank order on ties
    return found[:max_detections]


def _clustered_boxes(num, generator, spread, clusters):
    """Boxes around ``clusters`` centres with per-cluster sizes, jittered by ``spread`` (relative units)."""
    member = torch.randint(0, clusters, (num,), generator=generator)
    centres = torch.rand(clusters, 2, generator=generator)[member] + spread * torch.randn(num, 2, generator=generator)
    half = (0.02 + 0.1 * torch.rand(clusters, 2, generator=generator))[member]
    half = half * (1 + spread * torch.randn(num, 2, generator=generator))
    return torch.cat((centres - half, centres + half), dim=1)


@pytest.mark.parametrize('seed,spread,clusters,top_k,max_detections', [
    (0, 0.2, 40, 200, 20),    # scattered boxes: one round
    (1, 0.02, 40, 200, 20),   # overlapping boxes, still one round
    (2, 0.002, 6, 200, 20),   # 6 stacks of boxes, most suppressed: the ranks must grow
    (3, 0.01, 40, 200, 100),  # many detections wanted: all top_k ranks at once
    (4, 0.05, 40, 7, 5),      # top_k below the first round
    (5, 0.02, 40, 150, 1)])
def test_fast_nms_equals_its_definition(seed, spread, clusters, top_k, max_detections):
    rounds = _check_against_definition(seed, spread, clusters, top_k, max_detections)
    # boxes looked at per round (3 classes x ranks): max(32, 2 x max_detections) ranks, x4 while needed
    assert rounds == {0: [120], 1: [120], 2: [120, 480, 600], 3: [600], 4: [21], 5: [96]}[seed]


def _check_against_definition(seed, spread, clusters, top_k, max_detections):
    generator = torch.Generator().manual_seed(seed)
    boxes = _clustered_boxes(300, generator, spread, clusters)
    scores = torch.rand(3, 300, generator=generator)
    scores[1, :40] = 0.5  # ties
    coeffs = torch.arange(300, dtype=torch.float32)[:, None]
    expected = _fast_nms_by_definition(boxes, scores, 0.5, top_k, max_detections)
    out = fast_nms(boxes, coeffs, scores, iou_threshold=0.5, top_k=top_k, max_detections=max_detections)
    got = list(zip(out.coeffs[:, 0].long().tolist(), out.labels.tolist(), out.scores.tolist()))
    # equal scores may come in any order (the reference's sort is not stable either)
    assert sorted(got) == sorted(expected)
    assert [s for _, _, s in got] == [s for _, _, s in expected]
    looked_at = []
    ranked = fast_nms_indices(scores, lambda index: looked_at.append(len(index)) or boxes[index], 0.5, top_k,
                              max_detections)
    assert ranked.indices.tolist() == out.coeffs[:, 0].long().tolist()
    return looked_at


def test_top_scores_equals_a_sort_cut_to_k():
    from instseg_ros.core.ops.nms import top_scores
    scores = torch.rand(5000, generator=torch.Generator().manual_seed(4))
    values, order = top_scores(scores, 1000)  # the top-k branch
    want_values, want_order = scores.sort(descending=True)
    assert torch.equal(values, want_values[:1000]) and torch.equal(order, want_order[:1000])
    values, order = top_scores(scores[:300], 1000)  # fewer than k: everything, sorted
    assert torch.equal(values, scores[:300].sort(descending=True).values) and order.numel() == 300
