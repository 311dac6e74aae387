"""Preprocessing: normalisation constants, channel order, square bilinear stretch, errors."""

from dataclasses import replace
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instseg_ros.core.config import get_preset
from instseg_ros.core.preprocess import exact_with_cv2, normalize, preprocess

RESNET_CFG = replace(get_preset('yolact_resnet50'), max_size=8)
DARKNET_CFG = replace(get_preset('yolact_darknet53'), max_size=4)


def _constant_bgr(height=5, width=7, bgr=(10, 20, 30)):
    return np.broadcast_to(np.array(bgr, dtype=np.uint8), (height, width, 3)).copy()


def test_resnet_normalisation_of_constant_image():
    batch, sizes = preprocess(_constant_bgr(), RESNET_CFG, 'cpu', color_order='bgr')
    assert batch.shape == (1, 3, 8, 8) and batch.dtype == torch.float32
    assert sizes == [(5, 7)]
    # output is RGB: R=30 uses mean 123.68 / std 58.40, G=20 116.78 / 57.12, B=10 103.94 / 57.38
    expected = torch.tensor([(30 - 123.68) / 58.40, (20 - 116.78) / 57.12, (10 - 103.94) / 57.38])
    torch.testing.assert_close(batch[0, :, 3, 5], expected)
    torch.testing.assert_close(batch[0], expected[:, None, None].expand(3, 8, 8))


def test_rgb_input_gives_the_same_tensor():
    bgr = _constant_bgr(bgr=(10, 20, 30))
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    from_bgr, _ = preprocess(bgr, RESNET_CFG, 'cpu', color_order='bgr')
    from_rgb, _ = preprocess(rgb, RESNET_CFG, 'cpu', color_order='rgb')
    torch.testing.assert_close(from_bgr, from_rgb, rtol=0, atol=0)


def test_darknet_scaling_and_bilinear_stretch():
    ramp_2x2 = np.array([[0, 50], [100, 150]], dtype=np.uint8)
    image = np.stack([ramp_2x2] * 3, axis=-1)
    batch, _ = preprocess(image, DARKNET_CFG, 'cpu')
    ramp = torch.tensor([0.0, 0.25, 0.75, 1.0])  # align_corners=False, 2 -> 4
    expected = (100 * ramp[:, None] + 50 * ramp[None, :]) / 255
    for channel in range(3):
        torch.testing.assert_close(batch[0, channel], expected)


def test_matches_cv2_float_resize_and_aspect_is_not_preserved():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    cfg = replace(get_preset('yolact_darknet53'), max_size=32)
    batch, _ = preprocess(image, cfg, 'cpu', color_order='bgr')
    resized = cv2.resize(image.astype(np.float32), (32, 32), interpolation=cv2.INTER_LINEAR)
    expected = torch.from_numpy(resized[:, :, ::-1].copy()).permute(2, 0, 1) / 255
    torch.testing.assert_close(batch[0], expected, rtol=0, atol=0.01 / 255)


def test_batch_of_different_sizes_and_dtype():
    images = [_constant_bgr(5, 7), _constant_bgr(12, 3, (0, 0, 255))]
    batch, sizes = preprocess(images, DARKNET_CFG, 'cpu', dtype=torch.float64)
    assert batch.shape == (2, 3, 4, 4) and batch.dtype == torch.float64
    assert sizes == [(5, 7), (12, 3)]
    torch.testing.assert_close(batch[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


def test_invalid_inputs():
    with pytest.raises(TypeError):
        preprocess(np.zeros((4, 4, 3), dtype=np.float32), RESNET_CFG)
    with pytest.raises(ValueError):
        preprocess(np.zeros((4, 4), dtype=np.uint8), RESNET_CFG)
    with pytest.raises(ValueError):
        preprocess(np.zeros((0, 4, 3), dtype=np.uint8), RESNET_CFG)
    with pytest.raises(ValueError):
        preprocess(_constant_bgr(), RESNET_CFG, color_order='hsv')
    with pytest.raises(ValueError):
        preprocess([], RESNET_CFG)


def test_exact_cv2_condition():
    assert exact_with_cv2((480, 640), (320, 320)) and exact_with_cv2((720, 1280), (320, 320))
    assert exact_with_cv2((1080, 1920), (320, 320)) and exact_with_cv2((240, 320), (320, 320))
    assert not exact_with_cv2((480, 640), (550, 550))   # 64/55
    assert not exact_with_cv2((480, 848), (320, 320))   # 53/20
    assert not exact_with_cv2((480, 640), (320 * 64, 320 * 64))  # 2**-6: beyond the exact range


@pytest.mark.parametrize('height,width,size', [(480, 640, 320), (720, 1280, 320), (1080, 1920, 320),
                                               (240, 320, 320), (600, 800, 320), (96, 200, 64),
                                               (47, 61, 32), (480, 640, 550)])
def test_cpu_input_equals_the_reference_steps_bit_for_bit(height, width, size):
    """The CPU fast path (cv2 and numpy where exact_with_cv2 holds) gives exactly the reference's
    F.interpolate(float image) -> normalise -> RGB, for noise images that use every pixel value."""
    image = np.random.default_rng(height + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    reference = F.interpolate(torch.from_numpy(image).float().permute(2, 0, 1)[None], size=(size, size),
                              mode='bilinear', align_corners=False)
    for normalization in ('darknet', 'resnet'):
        cfg = SimpleNamespace(max_size=size, normalization=normalization)
        for color_order in ('rgb', 'bgr'):
            batch, _ = preprocess(image, cfg, 'cpu', color_order=color_order)
            expected = normalize(reference if color_order == 'rgb' else reference.flip(1), normalization)
            assert batch.is_contiguous() and batch.shape == (1, 3, size, size)
            assert torch.equal(batch, expected)
