"""RViz markers from a FrameResult with known 3D boxes; reused message objects stay correct."""

import numpy as np
import pytest

from instseg_ros.core.geometry import Instance3D
from instseg_ros.core.pipeline import FrameResult
from instseg_ros.core.visualization import class_color_rgb_float

pytestmark = pytest.mark.ros
NAMES = ('ball', 'box', 'cup')


def _result(boxes_3d):
    """FrameResult with one instance per entry: (label, score, center or None, size)."""
    count = len(boxes_3d)
    instances_3d = [Instance3D(True, center, center, size, 50) if center is not None
                    else Instance3D.invalid() for _label, _score, center, size in boxes_3d]
    return FrameResult(image_size=(48, 64), boxes_xyxy=np.zeros((count, 4), np.float32),
                       scores=np.array([b[1] for b in boxes_3d], np.float32),
                       labels=np.array([b[0] for b in boxes_3d], np.int64),
                       rois=[(0, 0, np.ones((2, 2), bool))] * count, instances_3d=instances_3d)


def _xyz(vector):
    return (vector.x, vector.y, vector.z)


def test_markers_one_cube_and_label_per_placed_instance():
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from instseg_ros.ros.markers import MarkerBuilder, result_to_markers
    header = Header(frame_id='camera_color_optical_frame')
    header.stamp.sec = 12
    result = _result([(2, 0.9, (0.1, -0.2, 1.5), (0.2, 0.3, 0.004)),
                      (0, 0.8, None, (0.0, 0.0, 0.0)),
                      (1, 0.5, (-0.4, 0.0, 2.0), (0.1, 0.1, 0.1))])
    builder = MarkerBuilder()
    for markers in (builder.build(result, header, NAMES), result_to_markers(result, header, NAMES)):
        first, *rest = markers.markers
        assert first.action == Marker.DELETEALL and first.header.frame_id == header.frame_id
        assert [(m.ns, m.id, m.type) for m in rest] == [
            ('boxes', 0, Marker.CUBE), ('labels', 0, Marker.TEXT_VIEW_FACING),
            ('boxes', 2, Marker.CUBE), ('labels', 2, Marker.TEXT_VIEW_FACING)]
        cube, label = rest[0], rest[1]
        assert all(m.header.stamp.sec == 12 and m.action == Marker.ADD for m in rest)
        assert all(m.lifetime.sec == 1 and m.pose.orientation.w == 1.0 for m in rest)
        assert _xyz(cube.pose.position) == pytest.approx((0.1, -0.2, 1.5))
        assert _xyz(cube.scale) == pytest.approx((0.2, 0.3, 0.01))  # 4 mm thickness -> 1 cm
        assert (cube.color.r, cube.color.g, cube.color.b) == pytest.approx(class_color_rgb_float(2))
        assert cube.color.a == pytest.approx(0.4)
        # 5 cm above the box top in the optical frame (y down): y = -0.2 - 0.15 - 0.05
        assert _xyz(label.pose.position) == pytest.approx((0.1, -0.4, 1.5))
        assert label.text == 'cup 0.90' and label.scale.z == pytest.approx(0.05)
        assert rest[3].text == 'box 0.50'
        assert _xyz(rest[2].scale) == pytest.approx((0.1, 0.1, 0.1))


def test_builder_reuses_markers_and_updates_every_field():
    from std_msgs.msg import Header

    from instseg_ros.ros.markers import MarkerBuilder
    builder = MarkerBuilder()
    header_a, header_b = Header(frame_id='a'), Header(frame_id='b')
    big = _result([(0, 0.9, (0.0, 0.0, 1.0), (0.1, 0.1, 0.1)),
                   (1, 0.7, (1.0, 1.0, 3.0), (0.5, 0.5, 0.5))])
    cube_before = builder.build(big, header_a, NAMES).markers[1]
    small = _result([(2, 0.6, (0.3, 0.2, 0.9), (0.2, 0.2, 0.2))])
    markers = builder.build(small, header_b, NAMES).markers
    assert len(markers) == 3 and markers[1] is cube_before  # same object, new content
    assert markers[1].header.frame_id == 'b' and _xyz(markers[1].pose.position) == pytest.approx(
        (0.3, 0.2, 0.9))
    assert (markers[1].color.r, markers[1].color.g, markers[1].color.b) == pytest.approx(
        class_color_rgb_float(2))
    assert markers[2].text == 'cup 0.60'
    nothing = builder.build(_result([]), header_a, NAMES).markers
    assert len(nothing) == 1
    assert len(builder.build(FrameResult((4, 4), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                         np.zeros(0, np.int64), []), header_a, NAMES).markers) == 1
