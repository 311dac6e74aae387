"""Write a rosbag2 of synthetic RGB-D frames (``synth.scene``) with rosbags, for tests and benches.

Topics: ``/camera/color/image_raw`` (sensor_msgs/Image bgr8) or
``/camera/color/image_raw/compressed`` (CompressedImage, jpeg or png), ``/camera/depth/image_raw``
(16UC1 millimetres, aligned, same stamp) and ``/camera/color/camera_info``. Frame ``i`` has
header stamp and bag timestamp ``t0 + i * period``.

Command line: ``instseg-synth-bag OUTPUT`` (``python -m instseg_ros.tools.synth_bag``); ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from instseg_ros.cli_help import DefaultsHelpFormatter
from instseg_ros.synth.scene import Camera, Scene, render_scene
from instseg_ros.tools.bag_types import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, make_typestore

COLOR_TOPIC = '/camera/color/image_raw'
DEPTH_TOPIC = '/camera/depth/image_raw'
INFO_TOPIC = '/camera/color/camera_info'
FRAME_ID = 'camera_color_optical_frame'


@dataclass
class SynthBag:
    """What was written: the scenes (ground truth) and per frame the bag timestamp in ns."""

    path: Path
    image_topic: str
    scenes: list[Scene]
    timestamps_ns: list[int]
    encoded: list[bytes | None]  # compressed bytes per frame (None for raw Image)


def _header(store, t_ns: int):
    types = store.types
    stamp = types['builtin_interfaces/msg/Time'](sec=t_ns // 10**9, nanosec=t_ns % 10**9)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=FRAME_ID)


def _camera_info(store, header, camera: Camera):
    types = store.types
    roi = types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    k = np.asarray(camera.k(), dtype=np.float64)
    p = np.array([k[0], 0, k[2], 0, 0, k[4], k[5], 0, 0, 0, 1, 0], dtype=np.float64)
    return types[CAMERA_INFO](header=header, height=camera.height, width=camera.width,
                              distortion_model='plumb_bob', d=np.zeros(5), k=k,
                              r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)


def write_synth_bag(path: str | Path, num_frames: int, *, storage: str = 'mcap',
                    compressed: str | None = None, camera: Camera = Camera(320, 240),
                    seeds: Sequence[int] | None = None, depth: bool = True,
                    t0_ns: int = 1_700_000_000_000_000_000, period_ns: int = 100_000_000,
                    corrupt_frames: Sequence[int] = ()) -> SynthBag:
    """Write ``num_frames`` frames (scene seeds ``seeds[i % len(seeds)]``, default ``0..n-1``).

    Args:
        storage: 'mcap' or 'sqlite3'.
        compressed: None (sensor_msgs/Image bgr8) or 'jpeg' / 'png' (CompressedImage).
        corrupt_frames: indices whose colour message carries undecodable bytes (CompressedImage)
            or a data array too short for its size (Image).
    """
    store = make_typestore()
    seeds = list(range(num_frames)) if seeds is None else list(seeds)
    rendered = {seed: render_scene(seed, camera) for seed in set(seeds[:num_frames])}
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    image_topic = COLOR_TOPIC + ('/compressed' if compressed else '')
    out = SynthBag(Path(path), image_topic, [], [], [])
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        color = writer.add_connection(image_topic, COMPRESSED_IMAGE if compressed else IMAGE,
                                      typestore=store)
        if depth:
            depth_conn = writer.add_connection(DEPTH_TOPIC, IMAGE, typestore=store)
            info_conn = writer.add_connection(INFO_TOPIC, CAMERA_INFO, typestore=store)
        for index in range(num_frames):
            scene = rendered[seeds[index % len(seeds)]]
            t_ns = t0_ns + index * period_ns
            header = _header(store, t_ns)
            if depth:
                writer.write(info_conn, t_ns, store.serialize_cdr(
                    _camera_info(store, header, camera), CAMERA_INFO))
            msg, encoded = _color_msg(store, header, scene, compressed, index in corrupt_frames)
            writer.write(color, t_ns, store.serialize_cdr(msg, msg.__msgtype__))
            if depth:
                depth_msg = store.types[IMAGE](
                    header=header, height=camera.height, width=camera.width, encoding='16UC1',
                    is_bigendian=0, step=camera.width * 2,
                    data=np.ascontiguousarray(scene.depth_mm, dtype='<u2').reshape(-1).view(np.uint8))
                writer.write(depth_conn, t_ns, store.serialize_cdr(depth_msg, IMAGE))
            out.scenes.append(scene)
            out.timestamps_ns.append(t_ns)
            out.encoded.append(encoded)
    return out


def _color_msg(store, header, scene: Scene, compressed: str | None, corrupt: bool):
    height, width = scene.image_bgr.shape[:2]
    if compressed:
        ok, buffer = cv2.imencode('.png' if compressed == 'png' else '.jpg', scene.image_bgr)
        assert ok
        data = np.frombuffer(b'not an image' * 8, np.uint8) if corrupt else buffer.reshape(-1)
        msg = store.types[COMPRESSED_IMAGE](header=header, format=f'bgr8; {compressed} compressed bgr8',
                                            data=np.ascontiguousarray(data))
        return msg, None if corrupt else bytes(data)
    data = scene.image_bgr.reshape(-1)
    if corrupt:
        data = data[: data.size // 2]
    msg = store.types[IMAGE](header=header, height=height, width=width, encoding='bgr8',
                             is_bigendian=0, step=width * 3, data=np.ascontiguousarray(data))
    return msg, None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='instseg-synth-bag', formatter_class=DefaultsHelpFormatter,
        description=f'Write a rosbag2 of synthetic RGB-D frames: {COLOR_TOPIC} (bgr8 Image, or '
                    f'CompressedImage on <topic>/compressed), {DEPTH_TOPIC} (16UC1 mm, aligned, '
                    f'same stamp) and {INFO_TOPIC}.')
    parser.add_argument('output', help='bag folder to create (must not exist)')
    parser.add_argument('--frames', type=int, default=10, help='number of frames (default: %(default)s)')
    parser.add_argument('--width', type=int, default=320, help='image width in pixels (default: %(default)s)')
    parser.add_argument('--height', type=int, default=240, help='image height in pixels (default: %(default)s)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='storage format (default: %(default)s)')
    parser.add_argument('--compressed', choices=('jpeg', 'png'), default=None,
                        help='write the colour as CompressedImage in this format (default: raw)')
    parser.add_argument('--no-depth', dest='depth', action='store_false',
                        help='no depth and camera_info topics (default: written)')
    parser.add_argument('--period-ms', type=float, default=100.0, help='time between frames (default: %(default)s)')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 written, 2 bad options or existing output (one line on stderr)."""
    args = build_parser().parse_args(argv)
    if args.frames < 1 or args.width < 8 or args.height < 8 or args.period_ms <= 0:
        print('instseg-synth-bag: error: --frames >= 1, --width/--height >= 8, --period-ms > 0',
              file=sys.stderr)
        return 2
    if Path(args.output).exists():
        print(f'instseg-synth-bag: error: output {args.output!r} exists', file=sys.stderr)
        return 2
    bag = write_synth_bag(args.output, args.frames, storage=args.storage,
                          compressed=args.compressed, camera=Camera(args.width, args.height),
                          depth=args.depth, period_ns=int(round(args.period_ms * 1e6)))
    topics = [bag.image_topic] + ([DEPTH_TOPIC, INFO_TOPIC] if args.depth else [])
    print(f'instseg-synth-bag: {args.frames} frames -> {args.output} ({args.storage}): '
          + ', '.join(topics))
    return 0


if __name__ == '__main__':
    sys.exit(main())
