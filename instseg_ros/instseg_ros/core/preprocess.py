"""Image preprocessing of YOLACT (reference ``FastBaseTransform``), on the model's device.

uint8 HWC image -> upload as uint8 -> float -> square bilinear stretch to ``max_size`` (align_corners=False,
no antialias) -> normalise -> RGB NCHW. On the CPU, sizes for which OpenCV's resize is provably bit-identical
(:func:`exact_with_cv2`) use it instead. Resizing and normalising act per channel, so converting to RGB
first (as done here) is numerically identical to the reference's normalise-then-swap order.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from instseg_ros.core.config import MEANS_BGR, NORMALIZATIONS, STD_BGR

COLOR_ORDERS = ('bgr', 'rgb')


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f'expected a uint8 numpy image, got {type(image).__name__} '
                        f'{getattr(image, "dtype", "")}')
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'expected an HxWx3 image, got shape {image.shape}')


def upload_image(image: np.ndarray, device: torch.device | str, color_order: str = 'bgr') -> torch.Tensor:
    """uint8 ``[H, W, 3]`` numpy image -> float32 ``[1, 3, H, W]`` RGB (0..255) on ``device``.

    The uint8 array is uploaded first, the float conversion happens on the device.
    """
    _check_image(image)
    if color_order not in COLOR_ORDERS:
        raise ValueError(f'color_order must be one of {COLOR_ORDERS}, got {color_order!r}')
    image_chw = _upload_float(image, device)
    return image_chw.flip(1) if color_order == 'bgr' else image_chw


def _upload_float(image: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> float32 ``[1, 3, H, W]`` in the image's channel order, as a
    channels-last view (converted while still HWC-contiguous: the fast path for F.interpolate)."""
    image_u8 = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    return image_u8.to(torch.float32).permute(2, 0, 1)[None]


#: largest q for which an axis ratio p / 2**q takes the exact path (see :func:`exact_with_cv2`)
_EXACT_RATIO_BITS = 5


def _dyadic(in_size: int, out_size: int) -> bool:
    ratio = Fraction(int(in_size), int(out_size))
    return ratio.denominator <= 2 ** _EXACT_RATIO_BITS and ratio.denominator & (ratio.denominator - 1) == 0


def exact_with_cv2(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Whether ``cv2.resize(INTER_LINEAR)`` of a uint8-valued float image equals ``F.interpolate``
    (bilinear, ``align_corners=False``) bit for bit, so the CPU can use it (several times faster).

    True when each axis ratio in/out is p / 2**q with q <= 5 (e.g. 640x480 or 1280x720 to 320): both
    libraries then compute the same source indices and weights, every weight is a multiple of
    2**-(q + 1), and every product and sum of the interpolation of 8-bit values fits the float32
    mantissa (at most 8 + 6 + 6 + 2 bits), so no step rounds and the order of operations cannot matter.
    """
    return _dyadic(in_hw[0], out_hw[0]) and _dyadic(in_hw[1], out_hw[1])


def _input_cv2(image: np.ndarray, size: int, color_order: str, normalization: str) -> torch.Tensor:
    """CPU path where :func:`exact_with_cv2` holds: uint8 ``[H, W, 3]`` -> normalised RGB float32
    ``[1, 3, size, size]`` (contiguous), all steps on the small HWC image in numpy with the same
    float32 operations as :func:`normalize`."""
    resized = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    planes = np.empty((3, size, size), dtype=np.float32)
    sources = (2, 1, 0) if color_order == 'bgr' else (0, 1, 2)
    offsets, divisors = _rgb_affine(normalization)
    for channel, source in enumerate(sources):  # scalar operations on planes (no size-3 broadcasting)
        plane = planes[channel]
        plane[...] = resized[:, :, source]
        plane -= np.float32(offsets[channel])
        plane /= np.float32(divisors[channel])
    return torch.from_numpy(planes)[None]


def _rgb_affine(normalization: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per RGB channel (offset, divisor) of a normalisation: ``(x - offset) / divisor``."""
    if normalization == 'resnet':
        return MEANS_BGR[::-1], STD_BGR[::-1]
    if normalization == 'darknet':
        return (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)  # x - 0 is exact: the same as x / 255
    raise ValueError(f'normalization must be one of {NORMALIZATIONS}, got {normalization!r}')


def normalize(images_rgb: torch.Tensor, normalization: str) -> torch.Tensor:
    """Normalise float ``[B, 3, H, W]`` RGB images in 0..255.

    ``'resnet'``: ``(x - mean) / std`` with the BGR constants applied to the matching channel;
    ``'darknet'``: ``x / 255``. Returns a new float tensor of the same shape/device/dtype.
    """
    offsets, divisors = (torch.tensor(values, dtype=images_rgb.dtype, device=images_rgb.device)[:, None, None]
                         for values in _rgb_affine(normalization))
    return (images_rgb - offsets) / divisors


def preprocess(images: np.ndarray | Sequence[np.ndarray], cfg, device: torch.device | str = 'cpu',
               color_order: str = 'bgr', dtype: torch.dtype = torch.float32,
               ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Network input for one image or a list of images (sizes may differ).

    Args:
        images: uint8 ``[H, W, 3]`` numpy image, or a list of them.
        cfg: model config with ``max_size`` (square input side S) and ``normalization``.
        device: where the work happens and the result lives.
        color_order: ``'bgr'`` (OpenCV) or ``'rgb'`` channel order of the input images.
        dtype: dtype of the returned tensor (computation is float32, cast at the end).

    Returns:
        (``[B, 3, S, S]`` normalised RGB tensor on ``device``, list of source (height, width)).
    """
    image_list = [images] if isinstance(images, np.ndarray) else list(images)
    if not image_list:
        raise ValueError('no images given')
    size = int(cfg.max_size)
    if color_order not in COLOR_ORDERS:
        raise ValueError(f'color_order must be one of {COLOR_ORDERS}, got {color_order!r}')
    _rgb_affine(cfg.normalization)  # raises for an unknown normalisation before any work
    inputs = []
    for image in image_list:
        _check_image(image)
        if torch.device(device).type == 'cpu' and exact_with_cv2(image.shape[:2], (size, size)):
            inputs.append(_input_cv2(image, size, color_order, cfg.normalization))
            continue
        resized = F.interpolate(_upload_float(image, device), size=(size, size), mode='bilinear',
                                align_corners=False, antialias=False)
        if color_order == 'bgr':
            resized = resized.flip(1)  # per-channel resize commutes with the channel swap
        inputs.append(normalize(resized, cfg.normalization))
    batch = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=0)
    return batch.to(dtype), [(int(im.shape[0]), int(im.shape[1])) for im in image_list]
