"""Box ops: hand-computed decode/encode, IoU of known boxes, conversions, empty inputs."""

import math

import pytest
import torch

from instseg_ros.core.ops.boxes import (box_iou, box_iou_batched, boxes_rel_to_pixels, center_size, decode,
                                        encode, point_form, sanitize_boxes, sanitize_coordinates)


def test_decode_hand_computed():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -2.0, 0.0, math.log(2.0) / 0.2]])
    # cx = 0.5 + 1*0.1*0.2 = 0.52, cy = 0.5 - 2*0.1*0.4 = 0.42, w = 0.2, h = 0.4*2 = 0.8
    expected = torch.tensor([[0.42, 0.02, 0.62, 0.82]])
    torch.testing.assert_close(decode(loc, priors), expected)


def test_decode_zero_regression_gives_prior_box_and_batch_dims():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.2, 0.2, 0.2]])
    loc = torch.zeros(3, 2, 4)
    boxes = decode(loc, priors)
    assert boxes.shape == (3, 2, 4)
    torch.testing.assert_close(boxes[2], torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.0, 0.1, 0.2, 0.3]]))


def test_encode_hand_computed_and_round_trip():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]], dtype=torch.float64)
    matched = torch.tensor([[0.42, 0.02, 0.62, 0.82]], dtype=torch.float64)
    expected = torch.tensor([[1.0, -2.0, 0.0, math.log(2.0) / 0.2]], dtype=torch.float64)
    torch.testing.assert_close(encode(matched, priors), expected)
    gen = torch.Generator().manual_seed(0)
    priors = torch.cat((torch.rand(50, 2, generator=gen, dtype=torch.float64),
                        0.05 + torch.rand(50, 2, generator=gen, dtype=torch.float64)), dim=1)
    loc = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(encode(decode(loc, priors), priors), loc)
    boxes = point_form(priors + 0.01)
    torch.testing.assert_close(decode(encode(boxes, priors), priors), boxes)


def test_point_form_and_center_size_are_inverse():
    cxcywh = torch.tensor([[1.0, 2.0, 4.0, 6.0]])
    xyxy = point_form(cxcywh)
    torch.testing.assert_close(xyxy, torch.tensor([[-1.0, -1.0, 3.0, 5.0]]))
    torch.testing.assert_close(center_size(xyxy), cxcywh)


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 4.0]])
    # (a0,b0): inter 1, union 4+4-1=7; (a0,b1): identical; (a0,b2): inter 2, union 4+4-2=6
    expected = torch.tensor([[1 / 7, 1.0, 1 / 3], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(box_iou(a, b), expected)


def test_box_iou_batched_matches_per_batch_and_zero_area_gives_zero():
    a = torch.tensor([[[0.0, 0.0, 2.0, 2.0]], [[0.0, 0.0, 0.0, 0.0]]])
    b = torch.tensor([[[1.0, 1.0, 3.0, 3.0]], [[0.0, 0.0, 0.0, 0.0]]])
    iou = box_iou_batched(a, b)
    assert iou.shape == (2, 1, 1)
    torch.testing.assert_close(iou, torch.tensor([[[1 / 7]], [[0.0]]]))


def test_box_iou_empty():
    assert box_iou(torch.zeros(0, 4), torch.zeros(3, 4)).shape == (0, 3)
    assert box_iou(torch.zeros(2, 4), torch.zeros(0, 4)).shape == (2, 0)
    assert decode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)


def test_sanitize_coordinates_orders_pads_and_clamps():
    low, high = sanitize_coordinates(torch.tensor([0.5, 0.9]), torch.tensor([0.25, 1.5]), 8, padding=1)
    # 0.5*8=4, 0.25*8=2 -> (2-1, 4+1) = (1, 5);  0.9*8=7.2, 1.5*8=12 -> (6.2, clamp 13 -> 8)
    torch.testing.assert_close(low, torch.tensor([1.0, 6.2]))
    torch.testing.assert_close(high, torch.tensor([5.0, 8.0]))


def test_boxes_rel_to_pixels_clamps_and_truncates():
    boxes = torch.tensor([[0.5, 0.25, 1.2, -0.1], [0.123, 0.51, 0.2, 0.99]])
    pixels = boxes_rel_to_pixels(boxes, (10, 20))  # (height, width)
    # row 0: x 10, 24 -> [10, 20]; y 2.5, -1 -> [0, 2.5] -> 2.   row 1: x 2.46->2, 4.0 ; y 5.1->5, 9.9->9
    expected = torch.tensor([[10.0, 0.0, 20.0, 2.0], [2.0, 5.0, 4.0, 9.0]])
    assert pixels.dtype == torch.float32
    torch.testing.assert_close(pixels, expected)
    assert boxes_rel_to_pixels(torch.zeros(0, 4), (10, 20)).shape == (0, 4)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_decode_keeps_dtype(dtype):
    out = decode(torch.zeros(2, 4, dtype=dtype), torch.ones(2, 4, dtype=torch.float32))
    assert out.dtype == dtype


def test_sanitize_boxes_equals_sanitize_coordinates_per_axis():
    boxes = torch.rand(200, 4, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.3
    for padding in (0, 1):
        both = sanitize_boxes(boxes, 138, 97, padding)
        x_low, x_high = sanitize_coordinates(boxes[:, 0], boxes[:, 2], 138, padding)
        y_low, y_high = sanitize_coordinates(boxes[:, 1], boxes[:, 3], 97, padding)
        assert torch.equal(both, torch.stack((x_low, y_low, x_high, y_high), dim=1))
    assert sanitize_boxes(torch.tensor([[0.5, 0.2, 0.1, 0.9]]), 10, 20, 1).tolist() == [[0.0, 3.0, 6.0, 19.0]]
