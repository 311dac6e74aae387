"""Conversions between ROS messages and numpy arrays (no cv_bridge).

Images: ``sensor_msgs/Image`` <-> numpy (any supported encoding, padded rows and big-endian
data honoured), any colour / mono / YUV422 / Bayer image -> BGR uint8 for the model,
``sensor_msgs/CompressedImage`` <-> BGR uint8.

Instances: tight ROI crops (see :mod:`instseg_ros.core.encoding`) <-> ``instseg_msgs``.
Masks travel as mono8 crops (255 = object) with their ``RegionOfInterest``.
"""

from __future__ import annotations

import array
from typing import Any, Sequence

import cv2
import numpy as np
from instseg_msgs.msg import InstanceMask, InstanceMaskArray
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from instseg_ros.core.encoding import (Roi, check_roi_inside, mono8_to_mask, paste_roi,
                                       roi_to_mono8)
# Decoding (message -> numpy) lives in the pure core so offline tools share it; re-exported here.
from instseg_ros.core.image_codec import (ImageTooLarge, compressed_to_bgr8,  # noqa: F401
                                          encoding_info, image_to_bgr8, image_to_numpy)


def uint8_array(values: np.ndarray) -> array.array:
    """``array.array('B')`` holding a copy of the bytes of a numpy array (any dtype, C order).

    Assign this, never ``bytes``, to ``uint8[]`` message fields: the generated setters keep an
    ``array.array`` as it is, but check every element of any other sequence in Python (always on
    Humble, under ``if __debug__``), which takes ~0.1 s for one 640x480 bgr8 image.
    """
    out = array.array('B')
    out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return out


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Pack a numpy image into a ``sensor_msgs/Image`` (little-endian, step = width * bpp).

    Args:
        array: ``[H, W]`` (or ``[H, W, 1]``) for one-channel encodings, ``[H, W, C]`` otherwise;
            dtype must equal the encoding's (e.g. uint8 for bgr8, float32 for 32FC1).
        encoding: a sensor_msgs encoding supported by :func:`encoding_info`.
        header: copied into the message (default: empty header).

    Raises:
        ValueError: unsupported encoding, or dtype / shape that does not match it.
    """
    dtype, channels = encoding_info(encoding)
    array = np.asarray(array)
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if (array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels)
            or array.dtype.kind != dtype.kind or array.dtype.itemsize != dtype.itemsize):
        raise ValueError(f"array {array.dtype} {array.shape} does not match encoding '{encoding}' "
                         f'({dtype.name} x {channels} channels)')
    height, width = array.shape[:2]
    msg = Image(header=header if header is not None else Header(), height=height, width=width,
                encoding=encoding, is_bigendian=0, step=width * channels * dtype.itemsize)
    msg.data = uint8_array(np.ascontiguousarray(array, dtype=dtype))
    return msg


_COMPRESSED_EXT = {'jpeg': '.jpg', 'jpg': '.jpg', 'png': '.png'}


def bgr8_to_compressed(image: np.ndarray, fmt: str = 'jpeg', header: Header | None = None,
                       jpeg_quality: int = 95) -> CompressedImage:
    """Encode uint8 ``[H, W, 3]`` BGR as a ``sensor_msgs/CompressedImage``.

    ``format`` follows image_transport's compressed plugin, e.g. ``'bgr8; jpeg compressed bgr8'``.

    Raises:
        ValueError: ``fmt`` is not 'jpeg' / 'jpg' / 'png', or the image is not uint8 HxWx3.
    """
    if fmt not in _COMPRESSED_EXT:
        raise ValueError(f"unsupported compressed format '{fmt}' (use 'jpeg' or 'png')")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected uint8 [H, W, 3] BGR, got {image.dtype} {image.shape}')
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt != 'png' else []
    ok, buffer = cv2.imencode(_COMPRESSED_EXT[fmt], image, params)
    if not ok:
        raise ValueError(f"cv2.imencode failed for format '{fmt}'")
    name = 'jpeg' if fmt == 'jpg' else fmt
    msg = CompressedImage(header=header if header is not None else Header(),
                          format=f'bgr8; {name} compressed bgr8')
    msg.data = uint8_array(buffer)
    return msg


# ---------------------------------------------------------------------------------------------
# instseg_msgs
# ---------------------------------------------------------------------------------------------

def _as_list(values: Any) -> list:
    """Sequence, numpy array or (cpu / gpu) torch tensor -> plain Python list."""
    if hasattr(values, 'detach'):
        values = values.detach().cpu()
    return values.tolist() if hasattr(values, 'tolist') else list(values)


def roi_to_msgs(header: Header, roi: Roi | None) -> tuple[RegionOfInterest, Image]:
    """One ROI crop -> (``RegionOfInterest``, mono8 mask ``Image``, 255 = object).

    ``None`` (empty mask) gives an all-zero ROI and a 0x0 mono8 image.
    """
    region, mask = RegionOfInterest(), Image()
    _fill_roi(region, mask, header, roi)
    return region, mask


def _fill_roi(region: RegionOfInterest, mask: Image, header: Header, roi: Roi | None) -> None:
    """Write one ROI crop into ``region`` and ``mask`` (see :func:`roi_to_msgs`), setting every field
    so that messages can be reused; filling the sub-messages a parent message already holds avoids
    constructing them twice."""
    mask.header = header
    mask.encoding = 'mono8'
    mask.is_bigendian = 0
    region.do_rectify = False
    if roi is None:
        region.x_offset = region.y_offset = region.height = region.width = 0
        mask.height = mask.width = mask.step = 0
        mask.data = array.array('B')
        return
    x0, y0, crop = roi
    height, width = crop.shape
    region.x_offset, region.y_offset = int(x0), int(y0)
    region.height, region.width = height, width
    mask.height, mask.width, mask.step = height, width, width
    mask.data = uint8_array(roi_to_mono8(crop))


def _fill_instance3d(instance: InstanceMask, item: Any) -> None:
    """Copy duck-typed 3D fields (has_position, position_m, box_center_m, box_size_m,
    num_points) into ``instance``; ``None`` gives has_position false and zeros."""
    targets = (instance.position, instance.box_center, instance.box_size)
    if item is None:
        instance.has_position, instance.num_points = False, 0
        for target in targets:
            target.x = target.y = target.z = 0.0
        return
    instance.has_position = bool(item.has_position)
    instance.num_points = int(item.num_points)
    for target, values in zip(targets, (item.position_m, item.box_center_m, item.box_size_m)):
        target.x, target.y, target.z = (float(v) for v in _as_list(values))


def instances_to_msg(header: Header, image_size: tuple[int, int],
                     rois: Sequence[Roi | None], scores: Any, labels: Any,
                     class_names: Sequence[str], instance3d: Sequence[Any] | None = None,
                     reuse: list[InstanceMask] | None = None, track_ids: Any = None,
                     track_ages: Any = None) -> InstanceMaskArray:
    """Build an ``InstanceMaskArray`` for one source image.

    Args:
        header: source image header (copied into the array and every mask image).
        image_size: (height, width) of the source image.
        rois: N ``(x0, y0, bool crop [h, w])`` or ``None`` (empty mask: zero ROI, 0x0 mask).
        scores: N floats (list / numpy / torch), descending.
        labels: N class indices (0-based); ``class_name`` = ``class_names[label]``, or the
            index as a string when the list is too short.
        class_names: names indexed by label.
        instance3d: None, or N items (None or objects with has_position, position_m,
            box_center_m, box_size_m (3 floats each), num_points).
        reuse: optional pool of InstanceMask messages to overwrite (grown as needed) instead of
            constructing new ones, which is most of the cost; the returned message then shares them
            and is valid until the pool is used again (see :class:`InstancesPacker`).
        track_ids, track_ages: None (track_id = track_age = 0: not tracked), or N integers each
            (``Tracker.update``'s outputs; 0 = not yet confirmed).

    Raises:
        ValueError: lengths differ or an ROI lies outside the image.
    """
    height, width = (int(v) for v in image_size)
    scores, labels = _as_list(scores), _as_list(labels)
    count = len(rois)
    track_ids = [0] * count if track_ids is None else _as_list(track_ids)
    track_ages = [0] * count if track_ages is None else _as_list(track_ages)
    if len(scores) != count or len(labels) != count or (
            instance3d is not None and len(instance3d) != count) or (
            len(track_ids) != count or len(track_ages) != count):
        raise ValueError(f'{count} rois but {len(scores)} scores, {len(labels)} labels, '
                         f'{"no" if instance3d is None else len(instance3d)} 3D items, '
                         f'{len(track_ids)} track ids, {len(track_ages)} track ages')
    for roi in rois:
        check_roi_inside(roi, height, width)
    pool = [] if reuse is None else reuse
    while len(pool) < count:
        pool.append(InstanceMask())
    instances = pool[:count]
    for index, (instance, roi) in enumerate(zip(instances, rois)):
        label = int(labels[index])
        instance.id, instance.class_id = index, label
        instance.class_name = class_names[label] if 0 <= label < len(class_names) else str(label)
        instance.score = float(scores[index])
        instance.track_id, instance.track_age = int(track_ids[index]), int(track_ages[index])
        _fill_roi(instance.roi, instance.mask, header, roi)
        _fill_instance3d(instance, None if instance3d is None else instance3d[index])
    return InstanceMaskArray(header=header, height=height, width=width, instances=instances)


class InstancesPacker:
    """:func:`instances_to_msg` reusing its InstanceMask messages from one call to the next (for a
    publisher: ``publish`` serialises synchronously, so the next call may overwrite them)."""

    def __init__(self) -> None:
        self._pool: list[InstanceMask] = []

    def pack(self, header: Header, image_size: tuple[int, int], rois: Sequence[Roi | None], scores: Any,
             labels: Any, class_names: Sequence[str],
             instance3d: Sequence[Any] | None = None, track_ids: Any = None,
             track_ages: Any = None) -> InstanceMaskArray:
        return instances_to_msg(header, image_size, rois, scores, labels, class_names, instance3d,
                                reuse=self._pool, track_ids=track_ids, track_ages=track_ages)


def msg_to_masks(msg: InstanceMaskArray) -> np.ndarray:
    """Full-frame masks of an ``InstanceMaskArray``: bool ``[N, msg.height, msg.width]``.

    Mask pixels > 127 are object pixels; a 0x0 mask gives an all-False frame.
    """
    height, width = int(msg.height), int(msg.width)
    masks = np.zeros((len(msg.instances), height, width), dtype=bool)
    for index, instance in enumerate(msg.instances):
        if instance.mask.height == 0 or instance.mask.width == 0:
            continue
        if instance.mask.encoding != 'mono8':
            raise ValueError(f"instance {index} mask encoding is '{instance.mask.encoding}', "
                             "expected 'mono8'")
        crop = mono8_to_mask(image_to_numpy(instance.mask))
        masks[index] = paste_roi(int(instance.roi.x_offset), int(instance.roi.y_offset), crop,
                                 height, width)
    return masks
