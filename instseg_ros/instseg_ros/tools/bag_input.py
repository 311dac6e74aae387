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
from instseg_ros.core.image_codec import (ImageTooLarge, compressed_to_bgr8, image_to_bgr8,
                                          image_to_numpy)
from instseg_ros.core.pipeline import DepthInput
from instseg_ros.core.rgbd_sync import nearest_stamp, stamp_s
from instseg_ros.tools.bag_types import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, stamp_ns

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
#: Image encodings of depth (REP 118); such topics are never taken as the colour image
DEPTH_ENCODINGS = ('16UC1', '32FC1')
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
    notes: list = field(default_factory=list)  # what was chosen automatically, for the user


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


def _first_message(reader: Reader, store, topic: str):
    """The first message of ``topic`` deserialised, or None (no messages, or undecodable)."""
    connections = reader.topics[topic].connections
    try:
        for conn, _, raw in reader.messages(connections):
            return store.deserialize_cdr(raw, conn.msgtype)
    except Exception:  # noqa: BLE001 - a corrupt first message: classified by name below
        return None
    return None


def _looks_like_depth(reader: Reader, store, topic: str) -> bool:
    """An Image topic carrying depth (first message 16UC1 / 32FC1, REP 118), or a CompressedImage
    topic in compressedDepth format; by the topic name ('depth') when there is no readable message.
    """
    msg = _first_message(reader, store, topic) if store is not None else None
    if msg is None:
        return 'depth' in topic.lower()
    if reader.topics[topic].msgtype == COMPRESSED_IMAGE:
        return 'compresseddepth' in str(msg.format).lower()
    return str(msg.encoding) in DEPTH_ENCODINGS


def _pick_camera_info(infos: list[str], depth: str, image: str) -> str | None:
    """The only CameraInfo topic, else the one next to the depth topic, else next to the image
    (``/camera/depth/image_raw`` -> ``/camera/depth/camera_info``); None when still ambiguous."""
    if len(infos) == 1:
        return infos[0]
    for topic in (depth, image):
        stem = (topic[:-len('/compressed')] if topic.endswith('/compressed') else topic)
        near = [i for i in infos if i.rsplit('/', 1)[0] == stem.rsplit('/', 1)[0]]
        if len(near) == 1:
            return near[0]
    return None


def select_topics(reader: Reader, image: str | None, depth: str | None,
                  camera_info: str | None, *, store=None, auto_depth: bool = True) -> Topics:
    """Resolve and type-check the topics.

    Defaults (None): the image topic is the only colour image topic of the bag (depth-encoded
    Image and compressedDepth topics are not colour); with ``auto_depth`` the depth topic is the
    only depth-encoded (16UC1 / 32FC1) Image topic, paired with the CameraInfo topic found by
    :func:`_pick_camera_info` (no or several candidates: no depth, said in ``Topics.notes``).
    ``store`` (typestore) lets the first message of each image topic be read for its encoding;
    without it, topic names decide ('depth').

    Raises:
        InputError: a topic is missing (the message lists the bag's topics of that kind), has an
            unsupported type, or depth is given without camera_info (and the bag has not one).
    """
    topics = reader.topics
    images = [t for t in _topics_of(reader, IMAGE_TYPES) if t != depth]
    listing = ', '.join(f'{t} ({topics[t].msgtype.split("/")[-1]})' for t in images) or 'none'
    depth_like = ({t for t in images if _looks_like_depth(reader, store, t)}
                  if image is None or (depth is None and auto_depth) else set())
    if image is None:
        colour = [t for t in images if t not in depth_like]
        if len(colour) != 1:
            raise InputError(f'give --image-topic: the bag has {len(colour)} colour image topics '
                             f'(image topics: {listing})')
        image = colour[0]
    if image not in topics:
        raise InputError(f'image topic {image!r} is not in the bag; its image topics: {listing}')
    image_type = topics[image].msgtype
    if image_type not in IMAGE_TYPES:
        raise InputError(f'image topic {image!r} has type {image_type}, expected '
                         f'sensor_msgs/msg/Image or CompressedImage; image topics: {listing}')
    result = Topics(image=topics[image].connections, image_type=image_type)
    infos = _topics_of(reader, (CAMERA_INFO,))
    if depth is None:
        if auto_depth:
            _auto_depth(result, reader, image, sorted(depth_like - {image}), infos, camera_info)
        return result
    depths = ', '.join(t for t in _topics_of(reader, (IMAGE,)) if t != image) or 'none'
    if depth not in topics or topics[depth].msgtype != IMAGE:
        found = f'has type {topics[depth].msgtype}' if depth in topics else 'is not in the bag'
        raise InputError(f'depth topic {depth!r} {found}; sensor_msgs/msg/Image topics: {depths}')
    if camera_info is None:
        camera_info = _pick_camera_info(infos, depth, image)
        if camera_info is None:
            raise InputError(f'give --camera-info-topic: the bag has {len(infos)} CameraInfo '
                             f'topics: {", ".join(infos) or "none"}')
    _check_camera_info(topics, camera_info, infos)
    result.depth = topics[depth].connections
    result.camera_info = topics[camera_info].connections
    return result


def _check_camera_info(topics: dict, camera_info: str, infos: list[str]) -> None:
    if camera_info not in topics or topics[camera_info].msgtype != CAMERA_INFO:
        raise InputError(f'camera_info topic {camera_info!r} is not a sensor_msgs/msg/CameraInfo '
                         f'topic of the bag; CameraInfo topics: {", ".join(infos) or "none"}')


def _auto_depth(result: Topics, reader: Reader, image: str, candidates: list[str],
                infos: list[str], camera_info: str | None) -> None:
    """Fill ``result.depth`` / ``camera_info`` from the only depth Image topic, or add a note."""
    topics = reader.topics
    candidates = [t for t in candidates if topics[t].msgtype == IMAGE]
    if not candidates:
        return
    if len(candidates) > 1:
        result.notes.append(f'no 3D: {len(candidates)} depth topics ({", ".join(candidates)}); '
                            'give --depth-topic')
        return
    depth = candidates[0]
    if camera_info is None:
        camera_info = _pick_camera_info(infos, depth, image)
    else:
        _check_camera_info(topics, camera_info, infos)
    if camera_info is None:
        result.notes.append(f'no 3D: depth topic {depth} but {len(infos)} CameraInfo topics '
                            f'({", ".join(infos) or "none"}); give --camera-info-topic')
        return
    result.depth = topics[depth].connections
    result.camera_info = topics[camera_info].connections
    result.notes.append(f'3D from depth {depth} with {camera_info} (--no-depth: without 3D)')


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
        on_problem: called with (kind, text) for a skipped frame ('image', 'image_too_large',
            'image_message': undeserialisable), a skipped depth / camera_info message
            ('depth_message', 'camera_info_message') or a frame without depth
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
                    msg = self._deserialize(conn, timestamp, raw, 'image_message')
                    if msg is None:
                        self.skipped += 1
                        continue
                    self._pending.append((timestamp, msg))
            elif conn.id in depth_ids:
                msg = self._deserialize(conn, timestamp, raw, 'depth_message')
                if msg is None:
                    continue
                self._depth.append((stamp_s(msg.header), msg))
                self._max_depth_ns = max(self._max_depth_ns, stamp_ns(msg.header))
            elif conn.id in info_ids:
                msg = self._deserialize(conn, timestamp, raw, 'camera_info_message')
                self._camera_info = self._camera_info if msg is None else msg
            else:
                continue
            yield from self._release(final=False)
        yield from self._release(final=True)

    def _deserialize(self, conn, timestamp: int, raw, kind: str):
        """The message, or None after reporting ``kind`` (a truncated or corrupt CDR message)."""
        try:
            return self.store.deserialize_cdr(raw, conn.msgtype)
        except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds for bad bytes
            self.on_problem(kind, f'message on {conn.topic} at {timestamp} ns skipped: cannot '
                                  f'deserialize {conn.msgtype} ({type(exc).__name__})')
            return None

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
            kind = 'image_too_large' if isinstance(exc, ImageTooLarge) else 'image'
            self.on_problem(kind, f'frame at {timestamp} ns skipped: {exc}')
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
