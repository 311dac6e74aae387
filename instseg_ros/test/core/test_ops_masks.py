"""Mask ops: assembly, crop with float bounds and padding, upsample, threshold, empty inputs."""

import math

import torch

from instseg_ros.core.ops.masks import (assemble_masks, binarize_masks, crop_masks, masks_to_image,
                                        upsample_masks)


def test_assemble_masks_hand_computed():
    ln3 = math.log(3.0)
    proto = torch.stack((torch.tensor([[0.0, ln3], [-ln3, 0.0]]),
                         torch.tensor([[1.0, 2.0], [3.0, 4.0]])), dim=-1)  # [Hp=2, Wp=2, K=2]
    coeffs = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    masks = assemble_masks(proto, coeffs)
    assert masks.shape == (3, 2, 2)
    expected = torch.tensor([[[0.5, 0.75], [0.25, 0.5]],
                             [[0.5, 0.5], [0.5, 0.5]],
                             [[0.5, 0.9], [0.1, 0.5]]])  # sigmoid(2 ln 3) = 9/10
    torch.testing.assert_close(masks, expected)


def _kept(mask: torch.Tensor) -> tuple[list[int], list[int]]:
    rows = torch.nonzero(mask.any(dim=1)).flatten().tolist()
    cols = torch.nonzero(mask.any(dim=0)).flatten().tolist()
    return rows, cols


def test_crop_masks_float_bounds_with_and_without_padding():
    masks = torch.ones(3, 6, 6)
    boxes = torch.tensor([[0.3, 0.2, 0.5, 0.6],    # x [1.8, 3.0], y [1.2, 3.6] px
                          [0.5, 0.6, 0.3, 0.2],    # same box, corners swapped
                          [0.9, 0.0, 1.0, 0.1]])   # touches the right/top border
    cropped = crop_masks(masks, boxes, padding=1)
    # padded x in [0.8, 4.0) -> cols 1..3; y in [0.2, 4.6) -> rows 1..4
    assert _kept(cropped[0]) == ([1, 2, 3, 4], [1, 2, 3])
    assert torch.equal(cropped[0], cropped[1])
    # x [4.4, min(7, 6)) -> col 5; y [max(-1, 0), 1.6) -> rows 0, 1
    assert _kept(cropped[2]) == ([0, 1], [5])
    assert cropped[0].sum().item() == 12.0  # a rectangle, values untouched inside
    unpadded = crop_masks(masks, boxes, padding=0)
    assert _kept(unpadded[0]) == ([2, 3], [2])  # x [1.8, 3.0) -> col 2; y [1.2, 3.6) -> rows 2, 3


def test_crop_masks_keeps_values_inside():
    masks = torch.arange(16, dtype=torch.float32).view(1, 4, 4) / 16
    cropped = crop_masks(masks, torch.tensor([[0.25, 0.25, 0.5, 0.5]]), padding=0)  # x, y in [1, 2)
    expected = torch.zeros(1, 4, 4)
    expected[0, 1, 1] = 5 / 16
    torch.testing.assert_close(cropped, expected)


def test_upsample_bilinear_half_pixel_and_binarize():
    masks = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    up = upsample_masks(masks, (4, 4))
    ramp = torch.tensor([0.0, 0.25, 0.75, 1.0])  # source coord (i + 0.5) / 2 - 0.5, clamped
    torch.testing.assert_close(up[0], 2 * ramp[:, None] + ramp[None, :])
    soft = torch.tensor([[[0.25, 0.5], [0.5001, 1.0]]])
    assert binarize_masks(soft).tolist() == [[[False, False], [True, True]]]


def test_masks_to_image_non_square():
    masks = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    out = masks_to_image(masks, (3, 8))
    assert out.dtype == torch.bool and out.shape == (1, 3, 8)
    # columns: source (j + 0.5) / 4 - 0.5 -> values 0, 0, .125, .375, .625, .875, 1, 1
    assert out[0, 0].tolist() == [False] * 4 + [True] * 4


def test_empty_inputs():
    assert assemble_masks(torch.zeros(5, 6, 4), torch.zeros(0, 4)).shape == (0, 5, 6)
    assert crop_masks(torch.zeros(0, 5, 6), torch.zeros(0, 4)).shape == (0, 5, 6)
    assert upsample_masks(torch.zeros(0, 5, 6), (10, 12)).shape == (0, 10, 12)
    assert masks_to_image(torch.zeros(0, 5, 6), (10, 12)).dtype == torch.bool
