"""Tests for instseg_ros.core.encoding with small hand-made masks."""

import numpy as np
import pytest
import torch

from instseg_ros.core.encoding import (label_image, mask_to_roi, masks_to_rois, mono8_to_mask,
                                       paste_roi, roi_to_mono8)


def _mask(rows):
    """bool [H, W] from strings of '.' (False) and '#' (True)."""
    return np.array([[ch == '#' for ch in row] for row in rows], dtype=bool)


MASK_A = _mask(['......',
                '..##..',
                '...#..',
                '..###.',
                '......'])  # 5x6: rows 1..3, cols 2..4
MASK_B = _mask(['#.....',
                '......',
                '......',
                '......',
                '.....#'])  # opposite corners: the whole frame
EMPTY = np.zeros((5, 6), dtype=bool)


def test_mask_to_roi_tight_box():
    x0, y0, crop = mask_to_roi(MASK_A)
    assert (x0, y0) == (2, 1)
    assert crop.dtype == np.bool_ and crop.shape == (3, 3)
    np.testing.assert_array_equal(crop, _mask(['##.', '.#.', '###']))


def test_mask_to_roi_single_pixel_and_empty():
    mask = np.zeros((4, 4), dtype=bool)
    mask[3, 0] = True
    x0, y0, crop = mask_to_roi(mask)
    assert (x0, y0) == (0, 3)
    np.testing.assert_array_equal(crop, [[True]])
    assert mask_to_roi(np.zeros((4, 4), dtype=bool)) is None


def test_mask_to_roi_rejects_3d():
    with pytest.raises(ValueError, match='H, W'):
        mask_to_roi(np.zeros((1, 4, 4), dtype=bool))


def test_masks_to_rois_numpy_mixed_with_empty():
    rois = masks_to_rois(np.stack([MASK_A, EMPTY, MASK_B]))
    assert len(rois) == 3
    assert rois[1] is None
    assert rois[0][:2] == (2, 1)
    x0, y0, crop = rois[2]
    assert (x0, y0) == (0, 0) and crop.shape == (5, 6)
    np.testing.assert_array_equal(crop, MASK_B)
    assert all(isinstance(v, int) for v in rois[0][:2])


def test_masks_to_rois_torch_equals_numpy():
    stack = np.stack([MASK_B, MASK_A, EMPTY])
    from_np = masks_to_rois(stack)
    from_torch = masks_to_rois(torch.from_numpy(stack))
    assert from_torch[2] is None
    for a, b in zip(from_np[:2], from_torch[:2]):
        assert a[:2] == b[:2]
        assert isinstance(b[2], np.ndarray) and b[2].dtype == np.bool_
        np.testing.assert_array_equal(a[2], b[2])


def test_masks_to_rois_uint8_input_and_no_masks():
    rois = masks_to_rois(MASK_A[None].astype(np.uint8) * 7)
    assert rois[0][:2] == (2, 1) and rois[0][2].dtype == np.bool_
    assert masks_to_rois(np.zeros((0, 5, 6), dtype=bool)) == []


def test_roi_to_mono8_and_back():
    crop = _mask(['#.', '.#', '##'])
    mono = roi_to_mono8(crop)
    assert mono.dtype == np.uint8
    np.testing.assert_array_equal(mono, [[255, 0], [0, 255], [255, 255]])
    np.testing.assert_array_equal(mono8_to_mask(mono), crop)


def test_mono8_to_mask_threshold():
    image = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(mono8_to_mask(image), [[False, False, True, True]])
    with pytest.raises(ValueError, match='uint8'):
        mono8_to_mask(image.astype(np.uint16))


def test_paste_roi_round_trip_and_bounds():
    x0, y0, crop = mask_to_roi(MASK_A)
    np.testing.assert_array_equal(paste_roi(x0, y0, crop, 5, 6), MASK_A)
    corner = paste_roi(3, 2, np.ones((2, 1), dtype=bool), 4, 4)
    expected = np.zeros((4, 4), dtype=bool)
    expected[2:4, 3] = True
    np.testing.assert_array_equal(corner, expected)
    with pytest.raises(ValueError, match='does not fit'):
        paste_roi(4, 0, np.ones((1, 1), dtype=bool), 4, 4)
    with pytest.raises(ValueError, match='does not fit'):
        paste_roi(-1, 0, np.ones((1, 1), dtype=bool), 4, 4)


def test_label_image_first_in_order_wins():
    low = _mask(['##..', '##..', '....', '....'])
    high = _mask(['....', '.##.', '.##.', '....'])
    masks = np.stack([high, low])  # index 0 = higher score
    labels = label_image(masks)
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, [[2, 2, 0, 0],
                                           [2, 1, 1, 0],
                                           [0, 1, 1, 0],
                                           [0, 0, 0, 0]])
    reversed_priority = label_image(torch.from_numpy(masks), order=[1, 0])
    np.testing.assert_array_equal(reversed_priority, [[2, 2, 0, 0],
                                                      [2, 2, 1, 0],
                                                      [0, 1, 1, 0],
                                                      [0, 0, 0, 0]])
    only_low = label_image(masks, order=[1])
    assert only_low.max() == 2 and int((only_low == 2).sum()) == 4 and not (only_low == 1).any()


def test_label_image_empty_and_bad_order():
    np.testing.assert_array_equal(label_image(np.zeros((0, 4, 4), dtype=bool)),
                                  np.zeros((4, 4), dtype=np.uint16))
    with pytest.raises(ValueError, match='outside'):
        label_image(np.zeros((2, 4, 4), dtype=bool), order=[0, 2])


def test_device_bounds_path_matches_numpy_path():
    # The torch reduction (used for CUDA tensors) must agree with the numpy one (CPU inputs).
    from instseg_ros.core.encoding import _bounds_numpy, _bounds_torch
    stack = np.stack([MASK_A, EMPTY, MASK_B])
    expected = [[1, 2, 1, 4, 3], [0, 0, 0, 5, 4], [1, 0, 0, 5, 4]]
    np.testing.assert_array_equal(_bounds_numpy(stack)[[0, 2]], [expected[0], expected[2]])
    np.testing.assert_array_equal(_bounds_torch(torch.from_numpy(stack))[[0, 2]],
                                  [expected[0], expected[2]])
    assert _bounds_numpy(stack)[1, 0] == 0 and _bounds_torch(torch.from_numpy(stack))[1, 0] == 0
