"""Message types for bags without ROS: a rosbags typestore with instseg_msgs, and pure builders.

The typestore is rosbags' built-in ROS 2 Jazzy store (sensor_msgs, std_msgs, geometry_msgs, ...)
plus ``instseg_msgs/msg/InstanceMask`` and ``InstanceMaskArray`` parsed from the package's own
``.msg`` files. :func:`result_to_instances` mirrors ``ros.conversions.instances_to_msg`` field for
field (same values), building rosbags message objects instead of rclpy ones; the CDR bytes
rosbags writes deserialise with rclpy into equal ``instseg_msgs`` messages (tested).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from instseg_ros.core.encoding import (Roi, check_roi_inside, label_image, paste_roi,
                                       roi_to_mono8)

INSTANCE_MASK = 'instseg_msgs/msg/InstanceMask'
INSTANCE_MASK_ARRAY = 'instseg_msgs/msg/InstanceMaskArray'
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
_MSG_NAMES = ('InstanceMask', 'InstanceMaskArray')


def msg_dirs() -> list[Path]:
    """Where ``instseg_msgs/msg/*.msg`` may be, in search order: every ament prefix
    (``share/instseg_msgs/msg``), the source checkout this module lives in, and the copy installed
    with this package (``<prefix>/share/instseg_ros/msg``)."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    dirs = [Path(p) / 'share' / 'instseg_msgs' / 'msg' for p in prefixes]
    dirs.append(Path(__file__).resolve().parents[3] / 'instseg_msgs' / 'msg')
    dirs += [Path(p) / 'share' / 'instseg_ros' / 'msg' for p in (*prefixes, sys.prefix)]
    return dirs


def find_msg_dir() -> Path:
    """The first of :func:`msg_dirs` holding both instseg_msgs .msg files.

    Raises:
        FileNotFoundError: none does (names the places searched).
    """
    for folder in msg_dirs():
        if all((folder / f'{name}.msg').is_file() for name in _MSG_NAMES):
            return folder
    raise FileNotFoundError('instseg_msgs .msg files not found in: '
                            + ', '.join(str(d) for d in msg_dirs()))


def make_typestore(msg_dir: Path | None = None):
    """rosbags Typestore (ROS 2 Jazzy built-ins) with the instseg_msgs types registered."""
    store = get_typestore(Stores.ROS2_JAZZY)
    folder = msg_dir or find_msg_dir()
    types: dict = {}
    for name in _MSG_NAMES:
        types.update(get_types_from_msg((folder / f'{name}.msg').read_text(),
                                        f'instseg_msgs/msg/{name}'))
    store.register(types)
    return store


def stamp_ns(header: Any) -> int:
    """Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def numpy_to_image(store, array: np.ndarray, encoding: str, header: Any):
    """rosbags ``sensor_msgs/Image`` of a C-contiguous array (little-endian, unpadded rows).

    Args:
        array: uint8 [H, W, 3] for bgr8, uint8 [H, W] for mono8, uint16 [H, W] for 16UC1.
    """
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    step = int(array.strides[0]) if height else width * array.itemsize * (
        array.shape[2] if array.ndim == 3 else 1)
    return store.types[IMAGE](header=header, height=int(height), width=int(width),
                              encoding=encoding, is_bigendian=0, step=step,
                              data=array.reshape(-1).view(np.uint8))


def _roi_msgs(store, header: Any, roi: Roi | None):
    """(RegionOfInterest, mono8 mask Image) of one ROI crop; None gives a zero ROI, 0x0 mask."""
    region_type = store.types['sensor_msgs/msg/RegionOfInterest']
    if roi is None:
        return (region_type(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
                store.types[IMAGE](header=header, height=0, width=0, encoding='mono8',
                                   is_bigendian=0, step=0, data=np.zeros(0, np.uint8)))
    x0, y0, crop = roi
    height, width = crop.shape
    region = region_type(x_offset=int(x0), y_offset=int(y0), height=int(height),
                         width=int(width), do_rectify=False)
    return region, numpy_to_image(store, roi_to_mono8(crop), 'mono8', header)


def _xyz(store, typename: str, values: Sequence[float] | None):
    x, y, z = (0.0, 0.0, 0.0) if values is None else (float(v) for v in values)
    return store.types[typename](x=x, y=y, z=z)


def result_to_instances(store, header: Any, result: Any, class_names: Sequence[str],
                        track_ids: Sequence[int] | None = None,
                        track_ages: Sequence[int] | None = None):
    """rosbags ``InstanceMaskArray`` of one ``FrameResult`` (the fields ``instances_to_msg`` sets).

    Args:
        store: typestore from :func:`make_typestore`.
        header: the source image's (rosbags) header, copied into the array and every mask.
        result: ``core.pipeline.FrameResult`` (image_size, rois, scores, labels, instances_3d).
        class_names: names by label; a label outside the list is named by its index.
        track_ids, track_ages: N integers each (core.tracking.Tracker.update), or None: 0.

    Raises:
        ValueError: an ROI lies outside the image, or the lengths differ.
    """
    height, width = (int(v) for v in result.image_size)
    count = len(result.rois)
    items3d = result.instances_3d
    if len(result.scores) != count or len(result.labels) != count or (
            items3d is not None and len(items3d) != count):
        raise ValueError(f'{count} rois but {len(result.scores)} scores, '
                         f'{len(result.labels)} labels')
    mask_type = store.types[INSTANCE_MASK]
    instances = []
    for index, roi in enumerate(result.rois):
        check_roi_inside(roi, height, width)
        label = int(result.labels[index])
        item = None if items3d is None else items3d[index]
        region, mask = _roi_msgs(store, header, roi)
        has = item is not None
        instances.append(mask_type(
            id=index, class_id=label,
            class_name=class_names[label] if 0 <= label < len(class_names) else str(label),
            score=float(result.scores[index]), roi=region, mask=mask,
            has_position=bool(item.has_position) if has else False,
            position=_xyz(store, 'geometry_msgs/msg/Point', item.position_m if has else None),
            box_center=_xyz(store, 'geometry_msgs/msg/Point', item.box_center_m if has else None),
            box_size=_xyz(store, 'geometry_msgs/msg/Vector3', item.box_size_m if has else None),
            num_points=int(item.num_points) if has else 0,
            track_id=int(track_ids[index]) if track_ids is not None else 0,
            track_age=int(track_ages[index]) if track_ids is not None else 0))
    return store.types[INSTANCE_MASK_ARRAY](header=header, height=height, width=width,
                                            instances=instances)


def result_to_label_image(store, header: Any, result: Any):
    """rosbags 16UC1 label ``Image`` (0 = background, i + 1 = instance i), as the node's ``labels``."""
    height, width = result.image_size
    masks = (np.stack([paste_roi(x0, y0, crop, height, width) for x0, y0, crop in result.rois])
             if result.rois else np.zeros((0, height, width), bool))
    labels = np.asarray(label_image(masks), dtype='<u2')
    return numpy_to_image(store, labels, '16UC1', header)
