"""Message-free image decoding (core.image_codec): size bounds checked before any allocation."""

import resource
import types
import zlib

import cv2
import numpy as np
import pytest

from instseg_ros.core.geometry import check_rgbd_geometry
from instseg_ros.core.image_codec import (ImageTooLarge, compressed_size, compressed_to_bgr8,
                                          image_to_bgr8, image_to_numpy, short)


def raw(width, height, encoding='bgr8', channels=3, data=None):
    step = width * channels
    return types.SimpleNamespace(width=width, height=height, encoding=encoding, step=step,
                                 is_bigendian=0,
                                 data=data if data is not None else bytes(step * height))


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG declaring width x height grey pixels, all zero: ~1000x smaller than its pixels."""
    def chunk(kind, payload):
        return (len(payload).to_bytes(4, 'big') + kind + payload
                + zlib.crc32(kind + payload).to_bytes(4, 'big'))
    row = b'\x00' + bytes(width)
    compressor = zlib.compressobj(9)
    body = b''.join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = width.to_bytes(4, 'big') + height.to_bytes(4, 'big') + bytes([8, 0, 0, 0, 0])
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', body) + chunk(b'IEND', b'')


def test_raw_images_over_the_bound_are_refused_before_conversion():
    msg = raw(64, 48)
    assert image_to_numpy(msg, max_pixels=64 * 48).shape == (48, 64, 3)
    with pytest.raises(ImageTooLarge, match='64x48 = 3072 pixels, more than max_image_pixels=3071'):
        image_to_bgr8(msg, max_pixels=3071)
    # the bound is checked on the declared size, before the data length is even looked at
    with pytest.raises(ImageTooLarge):
        image_to_numpy(raw(100000, 100000, data=b''), max_pixels=4096 * 4096)


def test_compressed_size_from_the_header_only():
    ok, png = cv2.imencode('.png', np.zeros((30, 40, 3), np.uint8))
    ok2, jpg = cv2.imencode('.jpg', np.zeros((30, 40, 3), np.uint8))
    assert ok and ok2
    assert compressed_size(png.reshape(-1)) == (40, 30)
    assert compressed_size(jpg.reshape(-1)) == (40, 30)
    assert compressed_size(np.frombuffer(b'not an image', np.uint8)) is None


def test_16384_squared_png_is_refused_without_decoding():
    data = huge_png(16384, 16384)
    assert len(data) < 1_000_000
    msg = types.SimpleNamespace(format='png', data=data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageTooLarge, match='268435456 pixels'):
        compressed_to_bgr8(msg, max_pixels=4096 * 4096)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 50, f'peak RSS grew by {grown_mib:.0f} MiB'


def test_small_compressed_images_still_decode_within_the_bound():
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    ok, png = cv2.imencode('.png', image)
    msg = types.SimpleNamespace(format='png', data=png.tobytes())
    assert np.array_equal(compressed_to_bgr8(msg, max_pixels=1200), image)
    with pytest.raises(ImageTooLarge):
        compressed_to_bgr8(msg, max_pixels=1199)


def test_untrusted_strings_are_cut_in_messages():
    long_encoding = 'x' * 1000
    with pytest.raises(ValueError) as info:
        image_to_bgr8(raw(4, 4, encoding=long_encoding))
    assert len(str(info.value)) < 120
    assert short('abc') == 'abc' and short('y' * 50).startswith('y' * 40 + '...(50 chars)')


def test_rgbd_geometry_check():
    check_rgbd_geometry((480, 640), (480, 640), (640, 480))
    check_rgbd_geometry((480, 640), (240, 320), (320, 240))      # same aspect, other size
    with pytest.raises(ValueError, match='depth aspect ratio differs'):
        check_rgbd_geometry((480, 640), (720, 1280), (1280, 720))  # 16:9 depth for 4:3 colour
    with pytest.raises(ValueError, match='camera_info aspect ratio differs'):
        check_rgbd_geometry((480, 640), (480, 640), (1280, 720))
    with pytest.raises(ValueError):
        check_rgbd_geometry((480, 640), (0, 640), (640, 480))
