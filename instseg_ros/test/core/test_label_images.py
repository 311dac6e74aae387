"""Full-frame class / instance label images painted from ROIs, overlaps resolved by score."""

import numpy as np
import pytest

from instseg_ros.core.encoding import (CLASS_LABEL_OFFSET, class_label_image, instance_label_image,
                                       winner_index_image)


def hand_made():
    """A 4x6 frame: instance 0 (class 2, score 0.5) a 2x3 block at rows 0-1, cols 0-2;
    instance 1 (class 0, score 0.9) an L at rows 1-2, cols 2-3 overlapping instance 0 at (1, 2);
    instance 2 empty (None)."""
    a = np.ones((2, 3), dtype=bool)
    b = np.array([[1, 0], [1, 1]], dtype=bool)
    return [(0, 0, a), (2, 1, b), None], [0.5, 0.9, 0.99], [2, 0, 4]


def test_overlap_goes_to_the_higher_score():
    rois, scores, labels = hand_made()
    owner = winner_index_image(rois, scores, (4, 6))
    assert owner.dtype == np.uint16
    assert owner.tolist() == [[1, 1, 1, 0, 0, 0],
                              [1, 1, 2, 0, 0, 0],
                              [0, 0, 2, 2, 0, 0],
                              [0, 0, 0, 0, 0, 0]]
    owner_low = winner_index_image(rois, [0.95, 0.9, 0.99], (4, 6))
    assert owner_low[1, 2] == 1
    classes = class_label_image(owner, labels, num_classes=5)
    assert classes.dtype == np.uint8 and CLASS_LABEL_OFFSET == 1
    assert classes.tolist() == [[3, 3, 3, 0, 0, 0],
                                [3, 3, 1, 0, 0, 0],
                                [0, 0, 1, 1, 0, 0],
                                [0, 0, 0, 0, 0, 0]]
    assert (instance_label_image(owner) == owner).all()
    tracked = instance_label_image(owner, [7, 0, 3])
    assert tracked.dtype == np.uint16
    assert tracked.tolist() == [[7, 7, 7, 0, 0, 0],
                                [7, 7, 0, 0, 0, 0],
                                [0, 0, 0, 0, 0, 0],
                                [0, 0, 0, 0, 0, 0]]
    assert instance_label_image(owner, [65536, 65535, 1])[0, 0] == 1


def test_ties_go_to_the_lower_index():
    block = np.ones((2, 2), dtype=bool)
    owner = winner_index_image([(0, 0, block), (1, 1, block)], [0.5, 0.5], (3, 3))
    assert owner[1, 1] == 1


def test_more_than_254_classes_gives_mono16():
    owner = winner_index_image([(0, 0, np.ones((1, 1), bool))], [1.0], (2, 2))
    image = class_label_image(owner, [299], num_classes=300)
    assert image.dtype == np.uint16 and image[0, 0] == 300
    assert class_label_image(owner, [253], num_classes=254).dtype == np.uint8
    assert class_label_image(owner, [254], num_classes=255).dtype == np.uint16


def test_empty_frame():
    owner = winner_index_image([], [], (3, 4))
    assert owner.shape == (3, 4) and not owner.any()
    assert class_label_image(owner, [], 80).shape == (3, 4)
    assert not instance_label_image(owner, []).any()


def test_bad_input_raises():
    block = np.ones((2, 2), dtype=bool)
    with pytest.raises(ValueError):
        winner_index_image([(3, 0, block)], [1.0], (4, 4))
    with pytest.raises(ValueError):
        winner_index_image([(0, 0, block)], [1.0, 0.5], (4, 4))


def test_labels_show_track_ids():
    from instseg_ros.core.visualization import draw_overlay, label_text
    assert label_text('ring', 0.981, track_id=12) == 'ring #12 0.98'
    assert label_text('ring', 0.981) == 'ring 0.98'
    assert label_text('ring', 0.981, '1.50 m', track_id=3) == 'ring #3 0.98 1.50 m'
    image = np.zeros((60, 80, 3), np.uint8)
    rois, scores, labels = [(10, 20, np.ones((20, 30), bool))], np.array([0.9]), np.array([0])
    boxes = np.array([[10, 20, 40, 40]], np.float32)
    plain = draw_overlay(image, rois, boxes, labels, scores, ['ball'])
    tracked = draw_overlay(image, rois, boxes, labels, scores, ['ball'], track_ids=[12])
    assert (plain != tracked).any()  # the longer label text is drawn
