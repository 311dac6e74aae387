"""Image messages -> numpy arrays without cv_bridge and without message types (pure core).

Works on any object with the fields of ``sensor_msgs/Image`` (height, width, encoding,
is_bigendian, step, data) or ``sensor_msgs/CompressedImage`` (format, data): rclpy messages and
rosbags messages alike. Honours ``step`` (padded rows) and big-endian 16-bit data. Every decoder
takes ``max_pixels`` and refuses larger images *before* allocating anything for them; compressed
images are measured from their header (Pillow reads only the header), never decoded to find out.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import cv2
import numpy as np

#: Default bound on width * height of an input image (4096 x 4096).
DEFAULT_MAX_PIXELS = 4096 * 4096


class ImageTooLarge(ValueError):
    """An image whose width * height exceeds the configured ``max_pixels``."""


def check_size(width: int, height: int, max_pixels: int | None, what: str) -> None:
    """Raise ImageTooLarge when ``width * height > max_pixels`` (None: no bound)."""
    if max_pixels is not None and int(width) * int(height) > max_pixels:
        raise ImageTooLarge(f'{what} is {int(width)}x{int(height)} = {int(width) * int(height)} '
                            f'pixels, more than max_image_pixels={max_pixels}: frame skipped '
                            '(raise max_image_pixels to accept it)')


_BAYER_PATTERNS = ('rggb', 'bggr', 'gbrg', 'grbg')

#: encoding -> (little-endian numpy dtype, channels) for the named sensor_msgs encodings.
_NAMED_ENCODINGS: dict[str, tuple[str, int]] = {
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4),
    'rgb16': ('<u2', 3), 'bgr16': ('<u2', 3), 'rgba16': ('<u2', 4), 'bgra16': ('<u2', 4),
    'mono8': ('u1', 1), 'mono16': ('<u2', 1),
    # YUV 4:2:2, 2 bytes per pixel. ROS 'yuv422' (and 'uyvy') is U Y0 V Y1 (UYVY, what usb_cam
    # publishes as 'yuv422'); 'yuv422_yuy2' (and 'yuyv') is Y0 U Y1 V (YUYV).
    'yuv422': ('u1', 2), 'uyvy': ('u1', 2), 'yuv422_yuy2': ('u1', 2), 'yuyv': ('u1', 2),
    **{f'bayer_{p}8': ('u1', 1) for p in _BAYER_PATTERNS},
    **{f'bayer_{p}16': ('<u2', 1) for p in _BAYER_PATTERNS},
}

#: OpenCV-style generic encodings such as 8UC3, 16UC1, 32FC1.
_CV_TYPE = re.compile(r'^(8U|8S|16U|16S|32S|32F|64F)C([1-4])$')
_CV_DTYPES = {'8U': 'u1', '8S': 'i1', '16U': '<u2', '16S': '<i2', '32S': '<i4', '32F': '<f4',
              '64F': '<f8'}


def _opencv_bayer_code(pattern: str) -> int:
    """cv2 code demosaicing the ROS Bayer ``pattern`` (e.g. 'rggb': first row R G) to BGR.

    OpenCV's legacy two-letter names describe the 2nd and 3rd pixels of the 2nd row, so ROS
    'rggb' is ``COLOR_BayerBG2BGR``; newer OpenCV also has the unambiguous four-letter alias
    ``COLOR_BayerRGGB2BGR`` (same value). Prefer the alias, fall back to the legacy name.
    """
    legacy = {'rggb': 'BG', 'bggr': 'RG', 'gbrg': 'GR', 'grbg': 'GB'}[pattern]
    return getattr(cv2, f'COLOR_Bayer{pattern.upper()}2BGR',
                   getattr(cv2, f'COLOR_Bayer{legacy}2BGR'))


#: encoding -> cv2.cvtColor code to BGR (None = already BGR); 16-bit inputs are first scaled
#: to 8 bits.
_TO_BGR_CODES: dict[str, int | None] = {
    'bgr8': None, '8UC3': None, 'bgr16': None,
    'rgb8': cv2.COLOR_RGB2BGR, 'rgb16': cv2.COLOR_RGB2BGR,
    'bgra8': cv2.COLOR_BGRA2BGR, 'bgra16': cv2.COLOR_BGRA2BGR,
    'rgba8': cv2.COLOR_RGBA2BGR, 'rgba16': cv2.COLOR_RGBA2BGR,
    'mono8': cv2.COLOR_GRAY2BGR, '8UC1': cv2.COLOR_GRAY2BGR,
    'mono16': cv2.COLOR_GRAY2BGR, '16UC1': cv2.COLOR_GRAY2BGR,
    'yuv422': cv2.COLOR_YUV2BGR_UYVY, 'uyvy': cv2.COLOR_YUV2BGR_UYVY,
    'yuv422_yuy2': cv2.COLOR_YUV2BGR_YUY2, 'yuyv': cv2.COLOR_YUV2BGR_YUY2,
    **{f'bayer_{p}{bits}': _opencv_bayer_code(p) for p in _BAYER_PATTERNS for bits in (8, 16)},
}


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """Little-endian pixel dtype and channel count of a sensor_msgs image encoding.

    Raises:
        ValueError: the encoding is not supported (the message names it).
    """
    if encoding in _NAMED_ENCODINGS:
        dtype, channels = _NAMED_ENCODINGS[encoding]
        return np.dtype(dtype), channels
    match = _CV_TYPE.match(encoding)
    if match is None:
        raise ValueError(f"unsupported image encoding '{short(encoding)}'")
    return np.dtype(_CV_DTYPES[match.group(1)]), int(match.group(2))


def _pixel_shape(height: int, width: int, channels: int) -> tuple[int, ...]:
    """Array shape of an image: ``(H, W)`` for one channel, else ``(H, W, C)``."""
    return (height, width) if channels == 1 else (height, width, channels)


# ---------------------------------------------------------------------------------------------
# sensor_msgs/Image
# ---------------------------------------------------------------------------------------------

def image_to_numpy(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Pixels of a ``sensor_msgs/Image`` as a new numpy array (never aliases ``msg.data``).

    Returns:
        ``[H, W]`` for one-channel encodings (mono*, bayer_*, *C1), ``[H, W, C]`` otherwise
        (yuv422 variants: ``[H, W, 2]`` raw bytes). dtype from the encoding (uint8 for *8,
        uint16 for *16 / 16UC*, float32 for 32FC*, ...), native byte order.

    Args:
        msg: a sensor_msgs/Image (or an object with its fields).
        max_pixels: refuse (ImageTooLarge) images with more than this many pixels; None = any.

    Raises:
        ImageTooLarge: width * height > max_pixels.
        ValueError: unsupported encoding, zero width / height, ``step`` smaller than
            width * bytes per pixel, or fewer than height * step data bytes.
    """
    dtype, channels = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_size(width, height, max_pixels, f"image '{short(msg.encoding)}'")
    if height == 0 or width == 0:
        raise ValueError(f"image '{msg.encoding}' has zero size (width={width}, height={height})")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(f"image '{msg.encoding}' step={step} is smaller than "
                         f'width*bytes_per_pixel={row_bytes}')
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < height * step:
        raise ValueError(f"image '{msg.encoding}' data has {data.size} bytes, "
                         f'expected height*step={height * step}')
    rows = np.array(data[:height * step].reshape(height, step)[:, :row_bytes])  # contiguous copy
    wire_dtype = dtype.newbyteorder('>' if msg.is_bigendian else '<')
    pixels = rows.view(wire_dtype).reshape(_pixel_shape(height, width, channels))
    return pixels.astype(wire_dtype.newbyteorder('='), copy=False)




def image_to_bgr8(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Any supported colour / mono / YUV422 / Bayer image as uint8 ``[H, W, 3]`` BGR.

    16-bit encodings are scaled to 8 bits by keeping the high byte (v >> 8); mono is
    replicated into the three channels.

    Raises:
        ImageTooLarge: width * height > max_pixels.
        ValueError: unsupported encoding (e.g. 32FC1 depth) or malformed image (see
            :func:`image_to_numpy`; YUV422 needs an even width).
    """
    encoding = msg.encoding
    if encoding not in _TO_BGR_CODES:
        encoding_info(encoding)  # unknown encodings raise here, with the name
        raise ValueError(f"cannot convert image encoding '{short(encoding)}' to bgr8")
    if _TO_BGR_CODES[encoding] in (cv2.COLOR_YUV2BGR_UYVY, cv2.COLOR_YUV2BGR_YUY2) \
            and msg.width % 2:
        raise ValueError(f"image '{encoding}' needs an even width, got width={msg.width}")
    pixels = image_to_numpy(msg, max_pixels)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    code = _TO_BGR_CODES[encoding]
    if code is None:
        return pixels
    try:
        return cv2.cvtColor(pixels, code)
    except cv2.error as exc:
        raise ValueError(f"cannot convert image '{encoding}' "
                         f'{msg.width}x{msg.height} to bgr8: {exc}') from exc




def compressed_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) read from the header of compressed image bytes, or None if unknown.

    Pillow parses only the header here (``Image.open`` is lazy); no pixels are decoded.

    Raises:
        ImageTooLarge: the header declares more pixels than Pillow will even describe.
    """
    from PIL import Image as PilImage, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', PilImage.DecompressionBombWarning)
            with PilImage.open(io.BytesIO(data.tobytes())) as probe:
                return int(probe.size[0]), int(probe.size[1])
    except PilImage.DecompressionBombError as exc:
        found = re.search(r'\((\d+) pixels\)', str(exc))
        raise ImageTooLarge(f'header declares {found.group(1) if found else "too many"} '
                            'pixels') from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def compressed_to_bgr8(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg, png, ...) to uint8 ``[H, W, 3]`` BGR.

    The image size is read from the header first: larger than ``max_pixels`` is refused before
    anything is decoded (a tiny PNG can declare 16384 x 16384 pixels).

    Raises:
        ImageTooLarge: the header declares more than ``max_pixels`` pixels.
        ValueError: empty or undecodable data; the message names ``msg.format``.
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    fmt = short(msg.format)
    try:
        size = compressed_size(data) if data.size else None
    except ImageTooLarge as exc:
        raise ImageTooLarge(f"CompressedImage '{fmt}': {exc}, more than max_image_pixels="
                            f'{max_pixels}: frame skipped') from None
    if size is None:
        raise ValueError(f"cannot decode CompressedImage with format '{fmt}' ({data.size} bytes)")
    check_size(size[0], size[1], max_pixels, f"CompressedImage '{fmt}'")
    image = None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise ValueError(f"cannot decode CompressedImage with format '{fmt}' ({data.size} bytes)")
    return image


def short(text: Any, limit: int = 40) -> str:
    """``text`` as a string cut to ``limit`` characters (untrusted strings in log lines)."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f'...({len(text)} chars)'
