"""Mask ops: assembly, crop with float bounds and padding, upsample, threshold, empty inputs, and the
windowed upsampling (paste_masks) against the full-frame reference."""

import math

import numpy as np
import pytest
import torch

from instseg_ros.core.encoding import masks_to_rois
from instseg_ros.core.ops.masks import (
    assemble_masks,
    binarize_masks,
    crop_masks,
    cropped_soft_masks,
    masks_to_image,
    paste_mask_rois,
    paste_masks,
    rois_from_windows,
    upsample_masks,
)


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


# ---- windowed upsampling == full-frame F.interpolate + "> threshold" --------------------------------

NEAR = 1e-5  # a pixel may differ from the reference only where the reference value is this close


def _random_crops(num: int, proto_hw: tuple[int, int], seed: int) -> torch.Tensor:
    """Cropped soft masks: smooth random fields (many values near 0.5) in random boxes, plus boxes
    touching the borders, tiny, zero-size, full-size and outside the image."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num, 1, max(proto_hw[0] // 8, 2), max(proto_hw[1] // 8, 2), generator=generator)
    soft = torch.sigmoid(3 * torch.nn.functional.interpolate(coarse, size=proto_hw, mode='bilinear',
                                                             align_corners=False)[:, 0])
    boxes = torch.rand(num, 4, generator=generator) * 1.3 - 0.15
    special = torch.tensor([[0.0, 0.0, 1.0, 1.0],      # full size
                            [-0.5, -0.5, 1.5, 1.5],    # larger than the image
                            [0.0, 0.0, 0.02, 0.03],    # tiny, top-left corner
                            [0.97, 0.96, 1.0, 1.0],    # tiny, bottom-right corner
                            [0.4, 0.4, 0.4, 0.4],      # zero size (the padding keeps 2 px)
                            [0.9, 0.0, 1.0, 0.1],      # touches the right/top border
                            [0.0, 0.8, 0.3, 1.0],      # touches the left/bottom border
                            [2.0, 2.0, 3.0, 3.0],      # outside: empty crop
                            [0.7, 0.2, 0.1, 0.6]])     # corners swapped
    boxes[:min(num, len(special))] = special[:num]
    return crop_masks(soft, boxes, padding=1)


def _assert_matches_reference(crops: torch.Tensor, size_hw: tuple[int, int], threshold: float = 0.5,
                              method: str = 'auto') -> None:
    reference_soft = upsample_masks(crops, size_hw)
    reference = reference_soft > threshold
    pasted = paste_masks(crops, size_hw, threshold, method=method)
    assert pasted.masks.dtype == torch.bool and pasted.masks.shape == reference.shape
    flipped = pasted.masks != reference
    near = (reference_soft - threshold).abs() <= NEAR
    assert int((flipped & ~near).sum()) == 0
    # every True pixel lies inside its window, windows lie inside the image
    windows = pasted.windows
    assert windows.shape == (crops.shape[0], 4) and windows.dtype == torch.int64
    height, width = size_hw
    for mask, (x0, y0, x1, y1) in zip(pasted.masks, windows.tolist()):
        assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
        inside = torch.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        assert not bool((mask & ~inside).any())


RATIOS = [((96, 96), (480, 640)),    # 550-input prototypes (x5, x6.67)
          ((138, 138), (480, 640)),  # 550-input YOLACT prototypes
          ((97, 83), (301, 517)),    # non-integer ratios
          ((138, 138), (100, 120)),  # downsampling
          ((40, 200), (130, 70)),    # up in y, down in x
          ((24, 32), (24, 32))]      # equal sizes: a copy


@pytest.mark.parametrize('proto_hw,size_hw', RATIOS)
@pytest.mark.parametrize('method', ['loop', 'batched'])
def test_paste_masks_equals_full_frame_reference(proto_hw, size_hw, method):
    crops = _random_crops(14, proto_hw, seed=proto_hw[0] * 7 + size_hw[1])
    _assert_matches_reference(crops, size_hw, method=method)


def _kernel_weights_match(proto_hw: tuple[int, int], size_hw: tuple[int, int]) -> bool:
    """Whether this PyTorch build's bilinear weights are the ones paste_masks reproduces, probed by
    interpolating unit vectors (the weights of an axis depend only on its input/output sizes)."""
    from instseg_ros.core.ops.masks import _axis
    for in_size, out_size in zip(proto_hw, size_hw):
        unit = torch.eye(in_size)[:, None, None, :]  # [in, 1, 1, in]
        probed = torch.nn.functional.interpolate(unit, size=(1, out_size), mode='bilinear',
                                                 align_corners=False)[:, 0, 0, :]  # [in, out]
        axis = _axis(in_size, out_size)
        expected = torch.zeros(in_size, out_size)
        columns = torch.arange(out_size)
        expected[torch.tensor(axis.index0), columns] = torch.tensor(axis.weight0, dtype=torch.float32)
        expected[torch.tensor(axis.index1), columns] += torch.tensor(axis.weight1)
        two_neighbours = torch.tensor(axis.index0 != axis.index1)
        if not torch.equal(probed[:, two_neighbours], expected[:, two_neighbours]):
            return False
    return True


@pytest.mark.parametrize('proto_hw,size_hw', RATIOS[:5])
def test_paste_masks_bit_exact_near_the_threshold(proto_hw, size_hw):
    """Values within a few float32 ulps of 0.5 everywhere: any deviation from the kernel's indices,
    weights or rounding would flip pixels. Checked where this build's weights are the reproduced ones."""
    if not _kernel_weights_match(proto_hw, size_hw):
        pytest.skip('this PyTorch build computes the bilinear weights with other rounding')
    generator = torch.Generator().manual_seed(5)
    soft = 0.5 + (torch.rand(3, *proto_hw, generator=generator) - 0.5) * 4e-7
    crops = crop_masks(soft, torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.7, 0.9], [0.5, 0.0, 1.0, 0.4]]))
    reference = upsample_masks(crops, size_hw) > 0.5
    for method in ('loop', 'batched'):
        assert torch.equal(paste_masks(crops, size_hw, method=method).masks, reference)


def test_values_near_the_threshold_are_recomputed_as_the_kernel_does(monkeypatch):
    """The matrix-product values decide every pixel except those within the band around the
    threshold (few for ordinary masks, all for a field within ulps of 0.5) and non-finite ones, which
    are recomputed exactly; the masks are the kernel's either way."""
    from instseg_ros.core.ops import masks as masks_module
    recomputed = []
    exact = masks_module._kernel_values
    monkeypatch.setattr(masks_module, '_kernel_values',
                        lambda soft, rows, cols, *axes: recomputed.append(len(rows)) or exact(soft, rows, cols, *axes))
    crops = _random_crops(12, (96, 96), seed=2)
    assert torch.equal(paste_masks(crops, (480, 640)).masks, upsample_masks(crops, (480, 640)) > 0.5)
    assert sum(recomputed) < 20  # pixels, of ~10^6 in the windows
    near = 0.5 + (torch.rand(2, 30, 40, generator=torch.Generator().manual_seed(1)) - 0.5) * 4e-7
    recomputed.clear()
    assert torch.equal(paste_masks(near, (90, 100)).masks, upsample_masks(near, (90, 100)) > 0.5)
    assert recomputed == [90 * 100, 90 * 100]
    with_nan = crops[:2].clone()
    with_nan[1, 40, 40] = float('nan')
    recomputed.clear()
    assert torch.equal(paste_masks(with_nan, (480, 640)).masks, upsample_masks(with_nan, (480, 640)) > 0.5)
    assert sum(recomputed) > 1000  # the NaN spreads through the products of its rows and columns


def test_paste_masks_other_thresholds_and_fallbacks():
    crops = _random_crops(6, (30, 40), seed=3)
    for threshold in (0.0, 0.25, 0.9):
        _assert_matches_reference(crops, (90, 100), threshold)
    # a negative threshold lets the zeros pass: full-frame path, full windows
    negative = paste_masks(crops, (9, 10), threshold=-0.1)
    assert bool(negative.masks.all()) and negative.windows.tolist() == [[0, 0, 10, 9]] * 6
    # float64 masks take the plain path (interpolated in float64)
    as_f64 = crops.double()
    assert torch.equal(paste_masks(as_f64, (90, 100)).masks, upsample_masks(as_f64, (90, 100)) > 0.5)
    with pytest.raises(ValueError):
        paste_masks(crops, (90, 100), method='nearest')


def test_paste_masks_empty_and_all_zero():
    empty = paste_masks(torch.zeros(0, 138, 138), (480, 640))
    assert empty.masks.shape == (0, 480, 640) and empty.masks.dtype == torch.bool
    assert empty.windows.shape == (0, 4)
    zeros = paste_masks(torch.zeros(3, 20, 20), (50, 60))
    assert not bool(zeros.masks.any()) and zeros.windows.tolist() == [[0, 0, 0, 0]] * 3
    assert rois_from_windows(zeros.masks, zeros.windows) == [None] * 3
    assert paste_masks(torch.zeros(3, 20, 20), (50, 60), method='batched').masks.shape == (3, 50, 60)


def test_single_pixel_support_window():
    """One non-zero proto pixel influences the output pixels whose neighbours include it, no others."""
    soft = torch.zeros(1, 10, 10)
    soft[0, 4, 7] = 1.0
    pasted = paste_masks(soft, (40, 40), threshold=0.0)
    reference = upsample_masks(soft, (40, 40))[0] > 0
    assert torch.equal(pasted.masks[0], reference)
    rows = torch.nonzero(reference.any(dim=1)).flatten()
    cols = torch.nonzero(reference.any(dim=0)).flatten()
    x0, y0, x1, y1 = pasted.windows[0].tolist()
    # the window is the tight range of output pixels with that pixel as a (possibly 0-weight) neighbour
    assert x0 <= int(cols[0]) and int(cols[-1]) < x1 and y0 <= int(rows[0]) and int(rows[-1]) < y1
    assert (x1 - x0, y1 - y0) == (8, 8)


def _same_rois(left, right) -> bool:
    if len(left) != len(right):
        return False
    for a, b in zip(left, right):
        if (a is None) != (b is None):
            return False
        if a is not None and (a[:2] != b[:2] or a[2].shape != b[2].shape or not np.array_equal(a[2], b[2])
                              or not a[2].flags['C_CONTIGUOUS']):
            return False
    return True


@pytest.mark.parametrize('proto_hw,size_hw', RATIOS)
def test_rois_equal_masks_to_rois_of_the_pasted_masks(proto_hw, size_hw):
    """paste_mask_rois (window buffers, no full frame) and rois_from_windows give exactly the ROIs of
    the full-frame masks."""
    crops = _random_crops(12, proto_hw, seed=11)
    masks = masks_to_image(crops, size_hw)
    expected = masks_to_rois(masks)
    assert _same_rois(paste_mask_rois(crops, size_hw), expected)
    pasted = paste_masks(crops, size_hw)
    assert _same_rois(rois_from_windows(pasted.masks, pasted.windows), expected)
    assert expected[7] is None  # the crop outside the image is empty
    assert sum(roi is not None for roi in expected) >= 8


def test_paste_mask_rois_thresholds_and_fallbacks():
    crops = _random_crops(6, (30, 40), seed=5)
    for threshold in (0.0, 0.25, 0.9):
        assert _same_rois(paste_mask_rois(crops, (90, 100), threshold),
                          masks_to_rois(upsample_masks(crops, (90, 100)) > threshold))
    # negative threshold and float64: the plain full-frame path, same contract
    full = paste_mask_rois(crops, (9, 10), threshold=-0.1)
    assert all(roi[:2] == (0, 0) and roi[2].shape == (9, 10) and roi[2].all() for roi in full)
    as_f64 = crops.double()
    assert _same_rois(paste_mask_rois(as_f64, (90, 100)), masks_to_rois(upsample_masks(as_f64, (90, 100)) > 0.5))
    assert paste_mask_rois(torch.zeros(0, 20, 20), (50, 60)) == []
    assert paste_mask_rois(torch.zeros(3, 20, 20), (50, 60)) == [None] * 3
    assert paste_mask_rois(crops[:2], (0, 60)) == [None] * 2


def test_cropped_soft_masks_equal_assemble_then_crop():
    generator = torch.Generator().manual_seed(3)
    proto = torch.randn(23, 31, 8, generator=generator)
    coeffs = torch.randn(5, 8, generator=generator)
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.7, 0.9, 0.2, 0.3],  # swapped
                          [2.0, 2.0, 3.0, 3.0], [0.33, 0.41, 0.33, 0.41]])  # outside; zero size
    masks, blocks = cropped_soft_masks(proto, coeffs, boxes, padding=1)
    reference = crop_masks(assemble_masks(proto, coeffs), boxes, padding=1)
    assert masks.shape == reference.shape
    torch.testing.assert_close(masks, reference, rtol=0, atol=1e-6)
    assert torch.equal(masks == 0, reference == 0)  # the same pixels are cropped away
    assert blocks.dtype == np.int64 and blocks[3].tolist() == [0, 0, 0, 0]
    for mask, (c0, r0, c1, r1) in zip(masks, blocks.tolist()):
        inside = torch.zeros_like(mask, dtype=torch.bool)
        inside[r0:r1, c0:c1] = True
        assert not bool(mask[~inside].any()) and bool((mask[inside] > 0).all())
    # x in [0.1 * 31 - 1, 0.5 * 31 + 1) = [2.1, 16.5) -> columns 3..16; y in [3.6, 14.8) -> rows 4..14
    assert blocks[0].tolist() == [3, 4, 17, 15]
    empty_masks, empty_blocks = cropped_soft_masks(proto, coeffs[:0], boxes[:0])
    assert empty_masks.shape == (0, 23, 31) and empty_blocks.shape == (0, 4)



@pytest.mark.parametrize('proto_hw,size_hw', [((80, 80), (480, 640)), ((80, 80), (720, 1280)),
                                              ((40, 50), (40, 100)), ((23, 31), (69, 31 * 7)),
                                              ((138, 138), (480, 640))])
def test_masks_match_the_kernel_at_every_distance_from_the_threshold(proto_hw, size_hw):
    """Fields whose values lie 1e-7 .. 1e-3 from 0.5 (inside and just outside the band of exact
    recomputation) give exactly the kernel's masks and ROIs."""
    generator = torch.Generator().manual_seed(sum(size_hw))
    for spread in (1e-6, 1e-5, 1e-4, 1e-3):
        soft = 0.5 + (torch.rand(3, *proto_hw, generator=generator) - 0.5) * spread
        crops = crop_masks(soft, torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.7, 0.9], [0.5, 0.0, 1.0, 0.4]]))
        reference = upsample_masks(crops, size_hw) > 0.5
        assert torch.equal(paste_masks(crops, size_hw).masks, reference), spread
        assert _same_rois(paste_mask_rois(crops, size_hw), masks_to_rois(reference))
