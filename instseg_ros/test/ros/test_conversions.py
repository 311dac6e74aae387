"""Tests for instseg_ros.ros.conversions (no nodes, no middleware)."""

import struct
from types import SimpleNamespace

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from instseg_ros.ros.conversions import (bgr8_to_compressed, compressed_to_bgr8, encoding_info,
                                         InstancesPacker, image_to_bgr8, image_to_numpy, instances_to_msg,
                                         msg_to_masks, numpy_to_image, roi_to_msgs)

pytestmark = pytest.mark.ros

HEADER = Header(stamp=Time(sec=17, nanosec=250), frame_id='cam_optical')


def _raw(encoding, height, width, step, data, bigendian=0):
    """A hand-built Image message."""
    return Image(height=height, width=width, encoding=encoding, is_bigendian=bigendian,
                 step=step, data=bytes(data))


# ------------------------------------------------------------------ image_to_numpy / numpy_to_image

ROUND_TRIP = [
    ('bgr8', np.uint8, (3, 4, 3)), ('rgb8', np.uint8, (3, 4, 3)),
    ('bgra8', np.uint8, (2, 5, 4)), ('rgba8', np.uint8, (2, 5, 4)),
    ('mono8', np.uint8, (3, 5)), ('8UC1', np.uint8, (3, 5)), ('8UC3', np.uint8, (2, 3, 3)),
    ('mono16', np.uint16, (3, 5)), ('16UC1', np.uint16, (4, 3)), ('32FC1', np.float32, (3, 2)),
    ('rgb16', np.uint16, (2, 2, 3)), ('yuv422', np.uint8, (2, 4, 2)),
    ('yuv422_yuy2', np.uint8, (2, 4, 2)), ('bayer_rggb8', np.uint8, (4, 4)),
    ('bayer_bggr8', np.uint8, (4, 4)), ('bayer_gbrg8', np.uint8, (4, 4)),
    ('bayer_grbg8', np.uint8, (4, 4)), ('bayer_rggb16', np.uint16, (4, 4)),
]


@pytest.mark.parametrize('encoding,dtype,shape', ROUND_TRIP)
def test_numpy_image_round_trip(encoding, dtype, shape):
    array = (np.arange(np.prod(shape)) * 997 % 60000).astype(dtype).reshape(shape)
    if dtype == np.float32:
        array = array / np.float32(7.0)
    msg = numpy_to_image(array, encoding, HEADER)
    bpp = np.dtype(dtype).itemsize * (shape[2] if len(shape) == 3 else 1)
    assert (msg.height, msg.width, msg.step, msg.is_bigendian) == (shape[0], shape[1],
                                                                   shape[1] * bpp, 0)
    assert msg.encoding == encoding and msg.header.frame_id == 'cam_optical'
    assert len(msg.data) == shape[0] * shape[1] * bpp
    back = image_to_numpy(msg)
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_image_to_numpy_does_not_alias_message():
    msg = numpy_to_image(np.zeros((2, 2), np.uint8), 'mono8')
    pixels = image_to_numpy(msg)
    pixels[0, 0] = 9
    assert msg.data[0] == 0


def test_mono16_little_and_big_endian_known_values():
    little = _raw('mono16', 1, 2, 4, [0x34, 0x12, 0xff, 0x00])
    np.testing.assert_array_equal(image_to_numpy(little), [[0x1234, 0x00ff]])
    big = _raw('16UC1', 1, 2, 4, [0x12, 0x34, 0x00, 0xff], bigendian=1)
    pixels = image_to_numpy(big)
    assert pixels.dtype == np.uint16 and pixels.dtype.isnative
    np.testing.assert_array_equal(pixels, [[0x1234, 0x00ff]])


def test_32fc1_little_and_big_endian_known_values():
    values = [1.5, -2.25, 0.0, 1000.125]
    little = _raw('32FC1', 2, 2, 8, struct.pack('<4f', *values))
    big = _raw('32FC1', 2, 2, 8, struct.pack('>4f', *values), bigendian=1)
    for msg in (little, big):
        pixels = image_to_numpy(msg)
        assert pixels.dtype == np.float32 and pixels.dtype.isnative
        np.testing.assert_array_equal(pixels, [[1.5, -2.25], [0.0, 1000.125]])


def test_padded_rows_bgr8_and_mono16():
    # 2x2 bgr8, step 8: 6 pixel bytes + 2 padding bytes (0xEE) per row.
    data = [1, 2, 3, 4, 5, 6, 0xEE, 0xEE, 7, 8, 9, 10, 11, 12, 0xEE, 0xEE]
    pixels = image_to_numpy(_raw('bgr8', 2, 2, 8, data))
    np.testing.assert_array_equal(pixels, [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]])
    np.testing.assert_array_equal(image_to_bgr8(_raw('rgb8', 2, 2, 8, data)),
                                  [[[3, 2, 1], [6, 5, 4]], [[9, 8, 7], [12, 11, 10]]])
    # mono16 with an odd step (5 = 4 + 1 padding byte): rows start at unaligned offsets.
    odd = _raw('mono16', 2, 2, 5, [1, 0, 2, 0, 0xEE, 3, 0, 0, 1, 0xEE])
    np.testing.assert_array_equal(image_to_numpy(odd), [[1, 2], [3, 256]])


def test_longer_data_than_needed_is_accepted():
    pixels = image_to_numpy(_raw('mono8', 1, 2, 2, [5, 6, 7, 8]))
    np.testing.assert_array_equal(pixels, [[5, 6]])


@pytest.mark.parametrize('msg,pattern', [
    (_raw('nv12_magic', 1, 1, 1, [0]), "unsupported image encoding 'nv12_magic'"),
    (_raw('mono8', 2, 3, 3, [0] * 5), r"'mono8' data has 5 bytes, expected height\*step=6"),
    (_raw('bgr8', 2, 2, 8, [0] * 15), r"data has 15 bytes, expected height\*step=16"),
    (_raw('mono8', 0, 3, 3, []), 'zero size'),
    (_raw('bgr8', 2, 0, 0, []), 'zero size'),
    (_raw('bgr8', 1, 2, 5, [0] * 6), r"'bgr8' step=5 is smaller than width\*bytes_per_pixel=6"),
    (_raw('16UC1', 1, 2, 3, [0] * 4), r'step=3 is smaller than width\*bytes_per_pixel=4'),
])
def test_image_to_numpy_errors(msg, pattern):
    with pytest.raises(ValueError, match=pattern):
        image_to_numpy(msg)


def test_numpy_to_image_errors():
    with pytest.raises(ValueError, match="unsupported image encoding 'foo'"):
        numpy_to_image(np.zeros((2, 2), np.uint8), 'foo')
    with pytest.raises(ValueError, match="encoding 'mono8'"):
        numpy_to_image(np.zeros((2, 2), np.float32), 'mono8')
    with pytest.raises(ValueError, match="encoding 'bgr8'"):
        numpy_to_image(np.zeros((2, 2, 4), np.uint8), 'bgr8')
    msg = numpy_to_image(np.zeros((2, 3, 1), np.uint16), 'mono16')
    assert (msg.height, msg.width, msg.step) == (2, 3, 6)


def test_encoding_info_generic_cv_types():
    assert encoding_info('32FC1') == (np.dtype('<f4'), 1)
    assert encoding_info('16SC3') == (np.dtype('<i2'), 3)
    with pytest.raises(ValueError, match="'32FC9'"):
        encoding_info('32FC9')


# ----------------------------------------------------------------------------------- image_to_bgr8

def test_image_to_bgr8_colour_and_mono():
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], np.uint8)
    bgr = rgb[:, :, ::-1]
    for encoding, array in [('rgb8', rgb), ('bgr8', bgr), ('8UC3', bgr)]:
        out = image_to_bgr8(numpy_to_image(array, encoding))
        assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
        np.testing.assert_array_equal(out, bgr)
    alpha = np.full((1, 2, 1), 200, np.uint8)
    np.testing.assert_array_equal(
        image_to_bgr8(numpy_to_image(np.concatenate([rgb, alpha], 2), 'rgba8')), bgr)
    np.testing.assert_array_equal(
        image_to_bgr8(numpy_to_image(np.concatenate([bgr, alpha], 2), 'bgra8')), bgr)
    mono = np.array([[0, 77, 255]], np.uint8)
    expected = np.repeat(mono[:, :, None], 3, axis=2)
    for encoding in ('mono8', '8UC1'):
        np.testing.assert_array_equal(image_to_bgr8(numpy_to_image(mono, encoding)), expected)
    mono16 = np.array([[0, 77 * 256 + 255, 65535]], np.uint16)  # high byte kept
    for encoding in ('mono16', '16UC1'):
        np.testing.assert_array_equal(image_to_bgr8(numpy_to_image(mono16, encoding)), expected)


def test_image_to_bgr8_rejects_depth_and_unknown():
    with pytest.raises(ValueError, match="'32FC1' to bgr8"):
        image_to_bgr8(numpy_to_image(np.zeros((2, 2), np.float32), '32FC1'))
    with pytest.raises(ValueError, match="unsupported image encoding 'hsv8'"):
        image_to_bgr8(_raw('hsv8', 1, 1, 3, [0, 0, 0]))


# BT.601 limited-range YUV of pure red and pure blue (what OpenCV's YUV422 decoders assume).
RED_YUV = (81, 90, 240)
BLUE_YUV = (41, 240, 110)


def _yuv422_bytes(pixel_yuv, order):
    """Pack per-pixel (Y, U, V) [H, W] (equal chroma within each pixel pair) into HxWx2 bytes."""
    height, width = len(pixel_yuv), len(pixel_yuv[0])
    out = np.zeros((height, width * 2), np.uint8)
    for r in range(height):
        for c in range(0, width, 2):
            y0, u, v = pixel_yuv[r][c]
            y1 = pixel_yuv[r][c + 1][0]
            out[r, 2 * c:2 * c + 4] = (u, y0, v, y1) if order == 'uyvy' else (y0, u, y1, v)
    return out.reshape(height, width, 2)


@pytest.mark.parametrize('encoding,order', [('yuv422', 'uyvy'), ('uyvy', 'uyvy'),
                                            ('yuv422_yuy2', 'yuyv'), ('yuyv', 'yuyv')])
def test_yuv422_decodes_red_and_blue(encoding, order):
    row = [RED_YUV] * 4 + [BLUE_YUV] * 4
    packed = _yuv422_bytes([row, row], order)
    out = image_to_bgr8(numpy_to_image(packed, encoding))
    assert out.shape == (2, 8, 3)
    np.testing.assert_allclose(out[:, :4].reshape(-1, 3), [[0, 0, 255]] * 8, atol=3)
    np.testing.assert_allclose(out[:, 4:].reshape(-1, 3), [[255, 0, 0]] * 8, atol=3)


def test_yuv422_odd_width_rejected():
    with pytest.raises(ValueError, match="'yuv422' needs an even width"):
        image_to_bgr8(_raw('yuv422', 1, 3, 6, [128] * 6))


# Four flat 8x8 colour regions (RGB) of a 16x16 image.
REGION_RGB = {(0, 0): (200, 30, 60), (0, 8): (20, 180, 90), (8, 0): (40, 70, 220),
              (8, 8): (250, 250, 10)}


def _rgb_quadrants():
    """uint8 [16, 16, 3] RGB image made of REGION_RGB."""
    image = np.zeros((16, 16, 3), np.uint8)
    for (r, c), colour in REGION_RGB.items():
        image[r:r + 8, c:c + 8] = colour
    return image


def _mosaic(rgb, pattern):
    """Sample an RGB image through a Bayer CFA; ``pattern`` lists the 2x2 cell row-major."""
    channel = {'r': 0, 'g': 1, 'b': 2}
    out = np.zeros(rgb.shape[:2], rgb.dtype)
    for k, letter in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, channel[letter]]
    return out


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
@pytest.mark.parametrize('bits', [8, 16])
def test_bayer_demosaic_recovers_flat_regions(pattern, bits):
    rgb = _rgb_quadrants()
    raw = _mosaic(rgb, pattern)
    if bits == 16:
        raw = raw.astype(np.uint16) * 257
    out = image_to_bgr8(numpy_to_image(raw, f'bayer_{pattern}{bits}'))
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    for (r, c), (red, green, blue) in REGION_RGB.items():
        np.testing.assert_array_equal(out[r + 4, c + 4], [blue, green, red])
        np.testing.assert_array_equal(out[r + 3, c + 3], [blue, green, red])


# ------------------------------------------------------------------------------- CompressedImage

def test_compressed_png_round_trip_exact():
    bgr = _rgb_quadrants()[:, :, ::-1].copy()
    msg = bgr8_to_compressed(bgr, 'png', HEADER)
    assert msg.format == 'bgr8; png compressed bgr8' and msg.header.stamp.sec == 17
    np.testing.assert_array_equal(compressed_to_bgr8(msg), bgr)


def test_compressed_jpeg_round_trip_close():
    bgr = np.zeros((32, 32, 3), np.uint8)
    bgr[:] = (30, 140, 220)
    msg = bgr8_to_compressed(bgr, 'jpeg')
    assert msg.format == 'bgr8; jpeg compressed bgr8' and bytes(msg.data[:2]) == b'\xff\xd8'
    out = compressed_to_bgr8(msg)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[16, 16], (30, 140, 220), atol=4)


def test_compressed_errors_name_format():
    bad = CompressedImage(format='jpeg', data=b'definitely not a jpeg')
    with pytest.raises(ValueError, match="format 'jpeg'"):
        compressed_to_bgr8(bad)
    with pytest.raises(ValueError, match="format 'png'"):
        compressed_to_bgr8(CompressedImage(format='png'))
    with pytest.raises(ValueError, match="'webm'"):
        bgr8_to_compressed(np.zeros((2, 2, 3), np.uint8), 'webm')


# ------------------------------------------------------------------------------------- instances

def _crop(rows):
    return np.array([[ch == '#' for ch in row] for row in rows], dtype=bool)


ROIS = [(2, 1, _crop(['##.', '.##'])), None, (0, 3, _crop(['#', '#']))]


def test_instances_to_msg_fields():
    item3d = SimpleNamespace(has_position=True, position_m=np.array([0.1, -0.2, 1.5]),
                             box_center_m=(0.1, -0.25, 1.55), box_size_m=[0.3, 0.4, 0.2],
                             num_points=42)
    msg = instances_to_msg(HEADER, (5, 6), ROIS, np.array([0.9, 0.5, 0.25], np.float32),
                           [1, 0, 7], ['person', 'bicycle'], [item3d, None, None])
    assert msg.header == HEADER and (msg.height, msg.width) == (5, 6)
    assert [i.id for i in msg.instances] == [0, 1, 2]
    assert [i.class_id for i in msg.instances] == [1, 0, 7]
    assert [i.class_name for i in msg.instances] == ['bicycle', 'person', '7']
    assert [i.score for i in msg.instances] == pytest.approx([0.9, 0.5, 0.25])
    first = msg.instances[0]
    assert (first.roi.x_offset, first.roi.y_offset, first.roi.width, first.roi.height,
            first.roi.do_rectify) == (2, 1, 3, 2, False)
    assert (first.mask.encoding, first.mask.width, first.mask.height, first.mask.step) == \
        ('mono8', 3, 2, 3)
    assert bytes(first.mask.data) == bytes([255, 255, 0, 0, 255, 255])
    assert first.mask.header == HEADER
    assert first.has_position and first.num_points == 42
    assert (first.position.x, first.position.y, first.position.z) == (0.1, -0.2, 1.5)
    assert (first.box_center.x, first.box_center.y, first.box_center.z) == (0.1, -0.25, 1.55)
    assert (first.box_size.x, first.box_size.y, first.box_size.z) == (0.3, 0.4, 0.2)
    empty = msg.instances[1]
    assert (empty.roi.width, empty.roi.height, empty.mask.width, len(empty.mask.data)) == \
        (0, 0, 0, 0)
    assert not empty.has_position and empty.num_points == 0


def test_msg_to_masks_round_trip():
    msg = instances_to_msg(HEADER, (5, 6), ROIS, [0.9, 0.5, 0.25], [0, 0, 0], ['a'])
    masks = msg_to_masks(msg)
    assert masks.shape == (3, 5, 6) and masks.dtype == np.bool_
    expected0 = np.zeros((5, 6), bool)
    expected0[1, 2:4] = True
    expected0[2, 3:5] = True
    np.testing.assert_array_equal(masks[0], expected0)
    assert not masks[1].any()
    assert masks[2].sum() == 2 and masks[2][3, 0] and masks[2][4, 0]


def test_roi_to_msgs_and_packed_instances_set_roi_and_mask():
    region, mask = roi_to_msgs(HEADER, ROIS[2])
    assert (region.x_offset, region.y_offset, region.width, region.height) == (0, 3, 1, 2)
    assert (mask.width, mask.height, mask.step, mask.encoding) == (1, 2, 1, 'mono8')
    assert bytes(mask.data) == b'\xff\xff' and mask.header == HEADER
    empty_region, empty_mask = roi_to_msgs(HEADER, None)
    assert empty_region == RegionOfInterest() and (empty_mask.width, empty_mask.height) == (0, 0)
    assert empty_mask.encoding == 'mono8' and len(empty_mask.data) == 0
    instances = instances_to_msg(HEADER, (5, 6), ROIS, [0.9, 0.5, 0.25], [0, 0, 0], ['a']).instances
    assert [i.id for i in instances] == [0, 1, 2]
    assert instances[2].roi == region and instances[2].mask == mask


def test_instances_to_msg_errors():
    with pytest.raises(ValueError, match='3 rois but 2 scores'):
        instances_to_msg(HEADER, (5, 6), ROIS, [0.9, 0.5], [0, 0, 0], ['a'])
    with pytest.raises(ValueError, match='outside the 6x4 image'):
        instances_to_msg(HEADER, (4, 6), ROIS, [0.9, 0.5, 0.1], [0, 0, 0], ['a'])


def test_instances_packer_reuses_messages_and_resets_every_field():
    item3d = SimpleNamespace(has_position=True, position_m=(0.1, -0.2, 1.5), box_center_m=(0.1, -0.2, 1.5),
                             box_size_m=(0.3, 0.2, 0.1), num_points=42)
    packer = InstancesPacker()
    first = packer.pack(HEADER, (5, 6), ROIS, [0.9, 0.5, 0.25], [0, 1, 0], ['a', 'b'], [item3d] * 3)
    kept = first.instances[0]
    second = packer.pack(Header(frame_id='other'), (5, 6), [None, ROIS[0]], [0.4, 0.3], [1, 0],
                         ['a', 'b'], None)
    assert second.instances[0] is kept  # reused, every field rewritten
    fresh = instances_to_msg(Header(frame_id='other'), (5, 6), [None, ROIS[0]], [0.4, 0.3], [1, 0],
                             ['a', 'b'])
    assert second == fresh
    assert not kept.has_position and kept.num_points == 0 and kept.position.z == 0.0
    assert (kept.roi.width, kept.mask.height, len(kept.mask.data)) == (0, 0, 0)
    assert kept.mask.header.frame_id == 'other' and kept.class_name == 'b'


def test_uint8_fields_are_assigned_array_array(monkeypatch):
    """Every uint8[] field we fill gets an array.array: the generated setters keep it as is, while
    bytes or lists are checked element by element in Python (always on Humble: ~0.1 s per image)."""
    import array

    from sensor_msgs.msg import PointCloud2

    from instseg_ros.core.geometry import Instance3D
    from instseg_ros.core.pipeline import FrameResult
    from instseg_ros.ros.markers import cloud_to_array, result_to_cloud
    assigned = []
    for cls in (Image, CompressedImage, PointCloud2):
        prop = cls.data
        monkeypatch.setattr(cls, 'data', property(
            prop.fget, lambda self, value, fset=prop.fset: (assigned.append(type(value)), fset(self, value))[1]))
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    msg = numpy_to_image(image, 'bgr8')
    assert np.array_equal(image_to_numpy(msg), image)
    assert np.array_equal(image_to_numpy(numpy_to_image(np.full((3, 4), 1.5, np.float32), '32FC1')),
                          np.full((3, 4), 1.5, np.float32))
    bgr8_to_compressed(image, 'png')
    instances_to_msg(HEADER, (5, 6), ROIS, [0.9, 0.5, 0.25], [0, 0, 0], ['a'])
    points = np.array([[0.1, 0.2, 1.0], [0.3, 0.4, 2.0]], np.float32)
    result = FrameResult((5, 6), np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.zeros(1, np.int64),
                         [ROIS[0]], [Instance3D(True, (0, 0, 1), (0, 0, 1), (1, 1, 1), 2)], [points])
    assert np.array_equal(np.stack([cloud_to_array(result_to_cloud(result, HEADER))[k] for k in 'xyz'], 1),
                          points)
    assert len(assigned) >= 7 and set(assigned) == {array.array}
