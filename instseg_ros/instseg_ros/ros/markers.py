"""RViz markers and the instance point cloud, built from a FrameResult.

Geometry (box corners, label placement, colours) comes from core.visualization; this module only
fills visualization_msgs / sensor_msgs fields. Everything is in the colour image's header frame.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from instseg_ros.core.pipeline import FrameResult
from instseg_ros.core.visualization import class_color_rgb_float, cube_pose_scale, text_label

#: Markers vanish after this long unless refreshed (a stopped node leaves no stale boxes).
MARKER_LIFETIME = Duration(sec=1, nanosec=0)


def result_to_markers(result: FrameResult, header: Header,
                      class_names: Sequence[str]) -> MarkerArray:
    """One DELETEALL, then per instance with 3D: a CUBE (namespace 'boxes') and a TEXT label
    ('labels'); instances without 3D get no marker (they are in /instances and the overlay)."""
    markers = MarkerArray()
    markers.markers.append(Marker(header=header, action=Marker.DELETEALL))
    if result.instances_3d is None:
        return markers
    for i, inst in enumerate(result.instances_3d):
        if not inst.has_position:
            continue
        label = int(result.labels[i])
        r, g, b = class_color_rgb_float(label)
        name = class_names[label] if label < len(class_names) else str(label)
        position, scale = cube_pose_scale(inst.box_center_m, inst.box_size_m)
        cube = Marker(header=header, ns='boxes', id=i, type=Marker.CUBE, action=Marker.ADD,
                      lifetime=MARKER_LIFETIME, color=ColorRGBA(r=r, g=g, b=b, a=0.4))
        cube.pose.position = Point(x=float(position[0]), y=float(position[1]),
                                   z=float(position[2]))
        cube.pose.orientation.w = 1.0
        cube.scale.x, cube.scale.y, cube.scale.z = (float(v) for v in scale)
        text, text_position = text_label(name, float(result.scores[i]), inst.box_center_m,
                                         inst.box_size_m)
        label_marker = Marker(header=header, ns='labels', id=i, type=Marker.TEXT_VIEW_FACING,
                              action=Marker.ADD, text=text, lifetime=MARKER_LIFETIME,
                              color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        label_marker.pose.position = Point(x=float(text_position[0]),
                                           y=float(text_position[1]),
                                           z=float(text_position[2]))
        label_marker.pose.orientation.w = 1.0
        label_marker.scale.z = 0.05
        markers.markers.extend((cube, label_marker))
    return markers


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
    cloud.data = cloud_array.tobytes()
    return cloud


def cloud_to_array(cloud: PointCloud2) -> np.ndarray:
    """Inverse of result_to_cloud for consumers and tests: a structured array (x, y, z, ...)."""
    return np.frombuffer(bytes(cloud.data), dtype=_CLOUD_DTYPE)
