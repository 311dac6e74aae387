"""Tests of core.visualization: palette, overlay drawing and marker geometry."""

import numpy as np
import pytest

from instseg_ros.core.visualization import (
    box_marker_geometry,
    class_color,
    class_color_rgb_float,
    cube_pose_scale,
    draw_overlay,
    label_rect,
    label_text,
    text_label,
)

NAMES = ('person', 'bicycle', 'car')


def _blended(pixel: int, color: tuple[int, int, int], alpha: float) -> np.ndarray:
    """Expected BGR value of a constant ``pixel`` after blending ``color`` with ``alpha``."""
    return np.rint((1.0 - alpha) * pixel + alpha * np.asarray(color, dtype=np.float64)).astype(np.uint8)


def _single_scene():
    """A 240x320 constant image with one 40x60 rectangular mask inside a 100x80 box, class 2."""
    image = np.full((240, 320, 3), 100, dtype=np.uint8)
    crop = np.ones((40, 60), dtype=bool)
    rois = [(120, 100, crop)]  # columns 120..179, rows 100..139
    boxes = np.array([[100.0, 80.0, 200.0, 160.0]])
    return image, rois, boxes, np.array([2]), np.array([0.87])


# ---------------------------------------------------------------------------------------------
# Palette
# ---------------------------------------------------------------------------------------------

def test_palette_is_deterministic_uint8_and_distinct_for_80_classes():
    colors = [class_color(i) for i in range(80)]
    assert colors == [class_color(i) for i in range(80)]
    assert len(set(colors)) == 80
    for c in colors:
        assert len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
    # Neighbouring classes differ clearly, not by one grey level.
    for a, b in zip(colors, colors[1:]):
        assert np.abs(np.subtract(a, b)).max() >= 40


def test_rgb_float_matches_bgr_palette():
    for i in (0, 1, 17, 79, 200):
        b, g, r = class_color(i)
        rf, gf, bf = class_color_rgb_float(i)
        assert (rf, gf, bf) == pytest.approx((r / 255.0, g / 255.0, b / 255.0))
        assert all(0.0 <= v <= 1.0 for v in (rf, gf, bf))


# ---------------------------------------------------------------------------------------------
# Overlay
# ---------------------------------------------------------------------------------------------

def test_single_mask_blend_exact_and_outside_unchanged():
    image, rois, boxes, labels, scores = _single_scene()
    alpha = 0.45
    out = draw_overlay(image, rois, boxes, labels, scores, NAMES, alpha=alpha)
    assert out.dtype == np.uint8 and out.shape == image.shape
    color = class_color(2)
    expected = _blended(100, color, alpha)
    # Whole mask interior (far from the box lines and below the label) is exactly blended.
    assert np.array_equal(out[100:140, 120:180], np.broadcast_to(expected, (40, 60, 3)))
    # Box edge pixel carries the class colour.
    assert tuple(out[120, 100]) == color
    # Everything outside mask, box outline band and label rectangle is untouched.
    lx0, ly0, lx1, ly1, _ = label_rect(label_text('car', 0.87), 100.0, 80.0, image.shape)
    allowed = np.zeros(image.shape[:2], dtype=bool)
    allowed[100:140, 120:180] = True
    allowed[78:163, 98:203] = True  # box outline with thickness 2 (+ margin), interior included
    allowed[ly0:ly1, lx0:lx1] = True
    changed = (out != image).any(axis=2)
    assert changed[~allowed].sum() == 0
    # Box interior outside the mask is unchanged.
    assert np.array_equal(out[145:155, 110:190], image[145:155, 110:190])
    # The label sits just above the box top (y0 = 80) and is filled in the class colour.
    assert ly1 == 80 and ly0 < 80
    assert tuple(out[ly0, lx0]) == color


def test_overlay_alpha_value_concrete():
    # alpha 0.5 on grey 100 with a known colour: (100 + c) / 2 per channel (no .5 ties below).
    image = np.full((50, 50, 3), 100, dtype=np.uint8)
    crop = np.zeros((5, 5), dtype=bool)
    crop[2, 2] = True
    out = draw_overlay(image, [(10, 10, crop)], np.array([[0.0, 0.0, 49.0, 49.0]]), np.array([0]),
                       np.array([0.5]), NAMES, alpha=0.5, draw_boxes=False, draw_labels=False)
    color = np.asarray(class_color(0), dtype=np.float64)
    assert np.array_equal(out[12, 12], np.rint((100 + color) / 2).astype(np.uint8))
    changed = np.argwhere((out != image).any(axis=2))
    assert changed.tolist() == [[12, 12]]


def test_masks_blend_in_order_within_one_of_exact():
    """Noise image, two overlapping masks: every covered pixel is within 1 of the exactly rounded
    blend (mostly equal); the overlap is the second colour blended over the first blend."""
    image = np.random.default_rng(4).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    first = np.zeros((20, 30), dtype=bool)
    first[2:18, 3:27] = True
    second = np.ones((25, 25), dtype=bool)
    rois = [(10, 10, first), (30, 20, second)]  # first covers x 13..36, y 12..27; second x 30..54, y 20..44
    alpha = 0.45
    out = draw_overlay(image, rois, np.zeros((2, 4)), np.array([1, 2]), np.array([0.9, 0.8]), NAMES,
                       alpha=alpha, draw_boxes=False, draw_labels=False)

    def blend(pixels, label):
        return np.rint((1 - alpha) * pixels.astype(np.float64)
                       + alpha * np.asarray(class_color(label), dtype=np.float64))
    in_first, in_second = np.zeros((60, 80), bool), np.zeros((60, 80), bool)
    in_first[12:28, 13:37] = True
    in_second[20:45, 30:55] = True
    only_first, only_second, both = in_first & ~in_second, in_second & ~in_first, in_first & in_second
    for where, expected in ((only_first, blend(image, 1)), (only_second, blend(image, 2))):
        assert np.abs(out[where] - expected[where]).max() <= 1
        assert np.mean(out[where] == expected[where]) > 0.95
    twice = blend(blend(image, 1), 2)
    assert both.sum() == 56 and np.abs(out[both] - twice[both]).max() <= 2
    untouched = ~(in_first | in_second)
    assert np.array_equal(out[untouched], image[untouched])


def test_draw_masks_false_leaves_mask_interior_unchanged():
    image, rois, boxes, labels, scores = _single_scene()
    out = draw_overlay(image, rois, boxes, labels, scores, NAMES, draw_masks=False)
    assert np.array_equal(out[100:140, 120:180], image[100:140, 120:180])
    assert tuple(out[120, 100]) == class_color(2)  # the box is still drawn


def test_boxes_and_labels_can_be_disabled():
    image, rois, boxes, labels, scores = _single_scene()
    out = draw_overlay(image, rois, boxes, labels, scores, NAMES, draw_boxes=False, draw_labels=False)
    changed = (out != image).any(axis=2)
    expected = np.zeros(image.shape[:2], dtype=bool)
    expected[100:140, 120:180] = True
    assert np.array_equal(changed, expected)


def test_input_not_modified():
    image, rois, boxes, labels, scores = _single_scene()
    before = image.copy()
    out = draw_overlay(image, rois, boxes, labels, scores, NAMES, depth_text=['1.52 m'])
    assert np.array_equal(image, before)
    assert not np.shares_memory(out, image)


def test_empty_input_returns_equal_copy():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = draw_overlay(image, [], np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                       np.zeros(0, np.float32), NAMES)
    assert np.array_equal(out, image)
    assert out is not image and not np.shares_memory(out, image)


def test_roi_partly_outside_frame_and_none_roi():
    image = np.full((20, 20, 3), 50, dtype=np.uint8)
    crop = np.ones((10, 10), dtype=bool)
    out = draw_overlay(image, [(-5, 15, crop), None], np.array([[0, 0, 5, 5], [0, 0, 5, 5]], float),
                       np.array([1, 1]), np.array([0.9, 0.9]), NAMES,
                       draw_boxes=False, draw_labels=False)
    changed = (out != image).any(axis=2)
    expected = np.zeros((20, 20), dtype=bool)
    expected[15:20, 0:5] = True
    assert np.array_equal(changed, expected)


def test_label_text_and_depth_and_placement_below_when_no_room():
    assert label_text('person', 0.8712) == 'person 0.87'
    assert label_text('person', 0.8712, '1.52 m') == 'person 0.87 1.52 m'
    x0, y0, x1, y1, base = label_rect('person 0.87', 10.0, 2.0, (100, 200, 3))
    assert y0 == 2 and y1 > y0 and y0 < base < y1  # no room above the box: label inside it
    x0, y0, x1, y1, _ = label_rect('person 0.87', 195.0, 50.0, (100, 200, 3))
    assert x1 == 200 and y1 == 50  # shifted left to stay in the frame


def test_depth_text_widens_label():
    image, rois, boxes, labels, scores = _single_scene()
    plain = draw_overlay(image, rois, boxes, labels, scores, NAMES, draw_masks=False, draw_boxes=False)
    depth = draw_overlay(image, rois, boxes, labels, scores, NAMES, draw_masks=False, draw_boxes=False,
                         depth_text=['1.52 m'])
    assert (depth != image).any(axis=2).sum() > (plain != image).any(axis=2).sum()


def test_mismatched_lengths_raise():
    image, rois, boxes, labels, scores = _single_scene()
    with pytest.raises(ValueError):
        draw_overlay(image, rois, boxes, np.array([0, 1]), scores, NAMES)
    with pytest.raises(ValueError):
        draw_overlay(image, rois * 2, boxes, labels, scores, NAMES)


# ---------------------------------------------------------------------------------------------
# Marker geometry
# ---------------------------------------------------------------------------------------------

def test_box_edges_contain_corners_and_have_axis_aligned_lengths():
    center, size = (1.0, 2.0, 3.0), (0.2, 0.4, 0.6)
    points = box_marker_geometry(center, size)
    assert points.shape == (24, 3) and points.dtype == np.float64
    corners = {(x, y, z) for x in (0.9, 1.1) for y in (1.8, 2.2) for z in (2.7, 3.3)}
    got = {tuple(np.round(p, 9)) for p in points}
    assert got == {tuple(np.round(c, 9)) for c in corners}
    # Every corner is the end of exactly 3 edges.
    rounded = [tuple(np.round(p, 9)) for p in points]
    assert all(rounded.count(tuple(np.round(c, 9))) == 3 for c in corners)
    # Each edge is parallel to one axis with that axis's length; 4 edges per axis.
    deltas = np.abs(points[1::2] - points[0::2])
    lengths = sorted(np.round(deltas.sum(axis=1), 9).tolist())
    assert lengths == [0.2] * 4 + [0.4] * 4 + [0.6] * 4
    assert ((deltas > 1e-12).sum(axis=1) == 1).all()


def test_cube_pose_scale_min_thickness():
    position, scale = cube_pose_scale((0.5, -0.1, 2.0), (0.3, 0.0, 0.002))
    assert np.allclose(position, [0.5, -0.1, 2.0])
    assert np.allclose(scale, [0.3, 0.01, 0.01])
    _, scale = cube_pose_scale((0, 0, 0), (0.3, 0.2, 0.001), min_thickness_m=0.05)
    assert np.allclose(scale, [0.3, 0.2, 0.05])


def test_text_label_above_box_in_optical_frame():
    text, position = text_label('cup', 0.5, (0.1, 0.2, 1.0), (0.1, 0.3, 0.1), margin_m=0.05)
    assert text == 'cup 0.50'
    # Optical frame: y down, so above the top (y = 0.05) by the margin is y = 0.0.
    assert np.allclose(position, [0.1, 0.0, 1.0])
    text, position = text_label('cup', 0.5, (1.0, 0.0, 0.4), (0.1, 0.3, 0.2), margin_m=0.1,
                                up=(0, 0, 1), depth_text='1.00 m')
    assert text == 'cup 0.50 1.00 m'
    assert np.allclose(position, [1.0, 0.0, 0.6])
