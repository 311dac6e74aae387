"""Reading the input bag: topic checks, time range and sampling, depth pairing, decoding.

Colour frames come out in bag order, each with the depth image whose header stamp is nearest to
its own within ``depth_slop`` (``core.rgbd_sync.nearest_stamp``, on the node's pairing arithmetic) and the
newest camera_info read so far (the node uses the newest it received). A colour frame waits until a
depth stamp later than its own stamp + ``depth_slop`` has been read (or the bag ends), so every
depth image that could pair with it has been seen: none is missed by reading order.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
from rosbags.rosbag2 import Reader

from instseg_ros.core.geometry import CameraIntrinsics, depth_to_meters
from instseg_ros.core.image_codec import compressed_to_bgr8, image_to_bgr8, image_to_numpy
from instseg_ros.core.pipeline import DepthInput
from instseg_ros.core.rgbd_sync import nearest_stamp, stamp_s
from instseg_ros.tools.bag_types import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, stamp_ns

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
#: colour frames held back waiting for later depth (bounds memory when depth stops early)
MAX_PENDING = 64
#: depth images kept for pairing (the node keeps 30; offline the bag order is known, so more)
DEPTH_BUFFER = 120


class InputError(ValueError):
    """The input bag cannot be used as asked (missing topic, wrong type)."""


@dataclass
class Topics:
    """The connections to read: image (Image or CompressedImage), optional depth + camera_info."""

    image: list
    image_type: str
    depth: list = field(default_factory=list)
    camera_info: list = field(default_factory=list)


@dataclass
class Frame:
    """One decoded colour frame ready for the model.

    Attributes:
        index: position among the frames selected (0-based).
        timestamp_ns: the source image message's bag (log) timestamp: results are written there.
        header: the source image's header (rosbags object), copied into every output message.
        image_bgr: uint8 [H, W, 3].
        depth: paired depth in metres with intrinsics, or None (no depth topic or none in range).
    """

    index: int
    timestamp_ns: int
    header: Any
    image_bgr: np.ndarray
    depth: DepthInput | None = None


def _topics_of(reader: Reader, types: tuple[str, ...]) -> list[str]:
    return sorted(t for t, info in reader.topics.items() if info.msgtype in types)


def select_topics(reader: Reader, image: str | None, depth: str | None,
                  camera_info: str | None) -> Topics:
    """Resolve and type-check the topics (image auto-chosen when the bag has exactly one).

    Raises:
        InputError: a topic is missing (the message lists the bag's topics of that kind), has an
            unsupported type, or depth is given without camera_info (and the bag has not one).
    """
    topics = reader.topics
    images = [t for t in _topics_of(reader, IMAGE_TYPES) if t != depth]
    listing = ', '.join(f'{t} ({topics[t].msgtype.split("/")[-1]})' for t in images) or 'none'
    if image is None:
        if len(images) != 1:
            raise InputError(f'give --image-topic: the bag has {len(images)} image topics: {listing}')
        image = images[0]
    if image not in topics:
        raise InputError(f'image topic {image!r} is not in the bag; its image topics: {listing}')
    image_type = topics[image].msgtype
    if image_type not in IMAGE_TYPES:
        raise InputError(f'image topic {image!r} has type {image_type}, expected '
                         f'sensor_msgs/msg/Image or CompressedImage; image topics: {listing}')
    result = Topics(image=topics[image].connections, image_type=image_type)
    if depth is None:
        return result
    depths = ', '.join(t for t in _topics_of(reader, (IMAGE,)) if t != image) or 'none'
    if depth not in topics or topics[depth].msgtype != IMAGE:
        found = f'has type {topics[depth].msgtype}' if depth in topics else 'is not in the bag'
        raise InputError(f'depth topic {depth!r} {found}; sensor_msgs/msg/Image topics: {depths}')
    infos = _topics_of(reader, (CAMERA_INFO,))
    if camera_info is None:
        if len(infos) != 1:
            raise InputError(f'give --camera-info-topic: the bag has {len(infos)} CameraInfo '
                             f'topics: {", ".join(infos) or "none"}')
        camera_info = infos[0]
    if camera_info not in topics or topics[camera_info].msgtype != CAMERA_INFO:
        raise InputError(f'camera_info topic {camera_info!r} is not a sensor_msgs/msg/CameraInfo '
                         f'topic of the bag; CameraInfo topics: {", ".join(infos) or "none"}')
    result.depth = topics[depth].connections
    result.camera_info = topics[camera_info].connections
    return result


@dataclass
class Selection:
    """Which colour frames to process: bag time range [start_ns, end_ns) and every N-th frame."""

    start_ns: int | None = None
    end_ns: int | None = None
    every: int = 1


@dataclass
class DepthOptions:
    """The node parameters used for pairing and depth conversion."""

    slop_s: float = 0.05
    scale: float | None = None  # metres per unit; None = from the encoding


class FrameStream:
    """Iterates the input bag and yields decoded :class:`Frame` objects (see module docstring).

    Args:
        reader: open rosbags Reader.  store: typestore for deserialisation.
        on_message: called with (connection, timestamp_ns, rawdata) for every message read in the
            range (for copying the input topics into the output bag).
        on_problem: called with (kind, text) for a skipped frame ('image') or a frame without depth
            ('depth', 'camera_info').
        max_pixels: larger images are skipped (ImageTooLarge).

    Attributes (counters): selected, skipped (undecodable), without_depth.
    """

    def __init__(self, reader: Reader, store, topics: Topics, selection: Selection,
                 depth: DepthOptions, *, extra_connections: list = (),
                 on_message: Callable | None = None, on_problem: Callable[[str, str], None],
                 max_pixels: int | None = None):
        self.reader, self.store, self.topics = reader, store, topics
        self.selection, self.depth_options = selection, depth
        self.extra = list(extra_connections)
        self.on_message, self.on_problem, self.max_pixels = on_message, on_problem, max_pixels
        self.selected = self.skipped = self.without_depth = 0
        self._seen = 0
        self._depth: collections.deque = collections.deque(maxlen=DEPTH_BUFFER)
        self._max_depth_ns = -1
        self._camera_info = None
        self._pending: collections.deque = collections.deque()

    def __iter__(self) -> Iterator[Frame]:
        topics = self.topics
        image_ids = {c.id for c in topics.image}
        depth_ids = {c.id for c in topics.depth}
        info_ids = {c.id for c in topics.camera_info}
        connections = {c.id: c for c in
                       topics.image + topics.depth + topics.camera_info + self.extra}
        sel = self.selection
        for conn, timestamp, raw in self.reader.messages(list(connections.values()),
                                                         start=sel.start_ns, stop=sel.end_ns):
            if self.on_message is not None:
                self.on_message(conn, timestamp, raw)
            if conn.id in image_ids:
                self._seen += 1
                if (self._seen - 1) % sel.every == 0:
                    msg = self.store.deserialize_cdr(raw, conn.msgtype)
                    self._pending.append((timestamp, msg))
            elif conn.id in depth_ids:
                msg = self.store.deserialize_cdr(raw, conn.msgtype)
                self._depth.append((stamp_s(msg.header), msg))
                self._max_depth_ns = max(self._max_depth_ns, stamp_ns(msg.header))
            elif conn.id in info_ids:
                self._camera_info = self.store.deserialize_cdr(raw, conn.msgtype)
            else:
                continue
            yield from self._release(final=False)
        yield from self._release(final=True)

    def _release(self, final: bool) -> Iterator[Frame]:
        slop_ns = int(round(self.depth_options.slop_s * 1e9))
        while self._pending:
            timestamp, msg = self._pending[0]
            ready = (final or not self.topics.depth or len(self._pending) > MAX_PENDING
                     or self._max_depth_ns > stamp_ns(msg.header) + slop_ns)
            if not ready:
                return
            self._pending.popleft()
            frame = self._make_frame(timestamp, msg)
            if frame is not None:
                yield frame

    def _make_frame(self, timestamp: int, msg) -> Frame | None:
        try:
            if self.topics.image_type == COMPRESSED_IMAGE:
                image = compressed_to_bgr8(msg, self.max_pixels)
            else:
                image = image_to_bgr8(msg, self.max_pixels)
        except ValueError as exc:
            self.skipped += 1
            self.on_problem('image', f'frame at {timestamp} ns skipped: {exc}')
            return None
        frame = Frame(index=self.selected, timestamp_ns=timestamp, header=msg.header,
                      image_bgr=image)
        self.selected += 1
        if self.topics.depth:
            frame.depth = self._pair_depth(msg.header)
            if frame.depth is None:
                self.without_depth += 1
        return frame

    def _pair_depth(self, header) -> DepthInput | None:
        """The depth nearest in stamp (within depth_slop) with the newest camera_info, else None."""
        if self._camera_info is None:
            self.on_problem('camera_info', 'no camera_info read yet: frame without 3D')
            return None
        buffered = list(self._depth)
        index = nearest_stamp([s for s, _ in buffered], stamp_s(header), self.depth_options.slop_s)
        if index is None:
            return None
        depth_msg, info = buffered[index][1], self._camera_info
        try:
            depth_m = depth_to_meters(image_to_numpy(depth_msg), depth_msg.encoding,
                                      self.depth_options.scale)
            intrinsics = CameraIntrinsics.from_k(list(info.k), int(info.width), int(info.height))
            intrinsics = intrinsics.scaled_to(depth_m.shape[1], depth_m.shape[0])
        except ValueError as exc:
            self.on_problem('depth', f'bad depth image or camera_info, frame without 3D: {exc}')
            return None
        return DepthInput(depth_m=depth_m, intrinsics=intrinsics)
