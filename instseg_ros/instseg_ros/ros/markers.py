"""RViz markers and the instance point cloud, built from a FrameResult.

Geometry (box corners, label placement, colours) comes from core.visualization; this module only
fills visualization_msgs / sensor_msgs fields. Everything is in the colour image's header frame.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from instseg_ros.core.pipeline import FrameResult
from instseg_ros.ros.conversions import uint8_array
from instseg_ros.core.visualization import (class_color_rgb_float, cube_pose_scale, label_positions,
                                            label_text)

#: Markers vanish after this long unless refreshed (a stopped node leaves no stale boxes).
MARKER_LIFETIME = Duration(sec=1, nanosec=0)
#: Height of the label text in metres.
LABEL_HEIGHT_M = 0.05


def _new_marker(namespace: str, marker_type: int) -> Marker:
    marker = Marker(ns=namespace, type=marker_type, action=Marker.ADD,
                    lifetime=Duration(sec=MARKER_LIFETIME.sec, nanosec=MARKER_LIFETIME.nanosec))
    marker.pose.orientation.w = 1.0
    return marker


class MarkerBuilder:
    """Builds the MarkerArray of each frame: one DELETEALL, then per instance with 3D a CUBE
    (namespace 'boxes', alpha 0.4, class colour) and a TEXT label ('labels', white, 5 cm high)
    with marker id = instance index. Instances without 3D get no marker (they are in /instances
    and the overlay). Everything is in the header's frame.

    Constructing rclpy messages dominates the cost (each Marker builds a dozen nested messages),
    so the markers are created once and updated in place: a returned MarkerArray stays valid
    until the next ``build`` call. Publish it before building the next one (``publish``
    serialises synchronously); use :func:`result_to_markers` for an independent array.
    """

    def __init__(self) -> None:
        self._delete_all = Marker(action=Marker.DELETEALL)
        self._cubes: list[Marker] = []
        self._labels: list[Marker] = []

    def build(self, result: FrameResult, header: Header, class_names: Sequence[str],
              track_ids: Sequence[int] | None = None) -> MarkerArray:
        """Markers of one frame; with ``track_ids`` labels read ``'ring #12 0.98'``."""
        self._delete_all.header = header
        markers = [self._delete_all]
        placed = [(i, inst) for i, inst in enumerate(result.instances_3d or []) if inst.has_position]
        if not placed:
            return MarkerArray(markers=markers)
        centers = np.array([inst.box_center_m for _, inst in placed], dtype=np.float64).reshape(-1, 3)
        sizes = np.array([inst.box_size_m for _, inst in placed], dtype=np.float64).reshape(-1, 3)
        positions, scales = cube_pose_scale(centers, sizes)
        text_positions = label_positions(centers, sizes)
        while len(self._cubes) < len(placed):
            self._cubes.append(_new_marker('boxes', Marker.CUBE))
            label = _new_marker('labels', Marker.TEXT_VIEW_FACING)
            label.color.r = label.color.g = label.color.b = label.color.a = 1.0
            label.scale.z = LABEL_HEIGHT_M
            self._labels.append(label)
        for k, (i, _inst) in enumerate(placed):
            class_id = int(result.labels[i])
            name = class_names[class_id] if class_id < len(class_names) else str(class_id)
            cube, label = self._cubes[k], self._labels[k]
            cube.header = label.header = header
            cube.id = label.id = i
            color = cube.color
            color.r, color.g, color.b = class_color_rgb_float(class_id)
            color.a = 0.4
            _set_xyz(cube.pose.position, positions[k])
            _set_xyz(cube.scale, scales[k])
            _set_xyz(label.pose.position, text_positions[k])
            label.text = label_text(name, float(result.scores[i]),
                                    track_id=int(track_ids[i]) if track_ids is not None else 0)
            markers += (cube, label)
        return MarkerArray(markers=markers)


def _set_xyz(target, values: np.ndarray) -> None:
    target.x, target.y, target.z = values.tolist()


def result_to_markers(result: FrameResult, header: Header,
                      class_names: Sequence[str]) -> MarkerArray:
    """The markers of :class:`MarkerBuilder` as a new, independent MarkerArray."""
    return MarkerBuilder().build(result, header, class_names)


_CLOUD_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('instance', '<u4'),
                         ('class_id', '<u4'), ('rgb', '<f4')])
_CLOUD_FIELDS = [PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=1),
                 PointField(name='y', offset=4, datatype=PointField.FLOAT32, count=1),
                 PointField(name='z', offset=8, datatype=PointField.FLOAT32, count=1),
                 PointField(name='instance', offset=12, datatype=PointField.UINT32, count=1),
                 PointField(name='class_id', offset=16, datatype=PointField.UINT32, count=1),
                 PointField(name='rgb', offset=20, datatype=PointField.FLOAT32, count=1)]


def result_to_cloud(result: FrameResult, header: Header) -> PointCloud2:
    """An unorganised PointCloud2 of every instance's 3D points (x, y, z [m], instance id,
    class_id, rgb packed as float like PCL) in the image header's frame."""
    chunks = []
    for i, points in enumerate(result.points_m or []):
        if points.shape[0] == 0:
            continue
        label = int(result.labels[i])
        r, g, b = (int(round(c * 255)) for c in class_color_rgb_float(label))
        packed = np.array([(r << 16) | (g << 8) | b], dtype='<u4').view('<f4')[0]
        chunk = np.empty(points.shape[0], dtype=_CLOUD_DTYPE)
        chunk['x'], chunk['y'], chunk['z'] = points[:, 0], points[:, 1], points[:, 2]
        chunk['instance'], chunk['class_id'], chunk['rgb'] = i, label, packed
        chunks.append(chunk)
    cloud_array = np.concatenate(chunks) if chunks else np.empty(0, dtype=_CLOUD_DTYPE)
    cloud = PointCloud2(header=header, height=1, width=int(cloud_array.shape[0]),
                        fields=_CLOUD_FIELDS, is_bigendian=False,
                        point_step=_CLOUD_DTYPE.itemsize,
                        row_step=_CLOUD_DTYPE.itemsize * int(cloud_array.shape[0]),
                        is_dense=True)
    cloud.data = uint8_array(cloud_array)
    return cloud


def cloud_to_array(cloud: PointCloud2) -> np.ndarray:
    """Inverse of result_to_cloud for consumers and tests: a structured array (x, y, z, ...)."""
    return np.frombuffer(bytes(cloud.data), dtype=_CLOUD_DTYPE)
