"""Image preprocessing of YOLACT (reference ``FastBaseTransform``), on the model's device.

uint8 HWC image -> upload as uint8 -> float -> square bilinear stretch to ``max_size`` (align_corners=False,
no antialias) -> normalise -> RGB NCHW. Resizing and normalising act per channel, so converting to RGB
first (as done here) is numerically identical to the reference's normalise-then-swap order.
"""

from __future__ import annotations

from typing import Sequence

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


def normalize(images_rgb: torch.Tensor, normalization: str) -> torch.Tensor:
    """Normalise float ``[B, 3, H, W]`` RGB images in 0..255.

    ``'resnet'``: ``(x - mean) / std`` with the BGR constants applied to the matching channel;
    ``'darknet'``: ``x / 255``. Returns a new float tensor of the same shape/device/dtype.
    """
    if normalization == 'darknet':
        return images_rgb / 255.0
    if normalization != 'resnet':
        raise ValueError(f'normalization must be one of {NORMALIZATIONS}, got {normalization!r}')
    means = torch.tensor(MEANS_BGR[::-1], dtype=images_rgb.dtype, device=images_rgb.device)
    std = torch.tensor(STD_BGR[::-1], dtype=images_rgb.dtype, device=images_rgb.device)
    return (images_rgb - means[:, None, None]) / std[:, None, None]


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
    resized = []
    for image in image_list:
        _check_image(image)
        resized.append(F.interpolate(_upload_float(image, device), size=(size, size),
                                     mode='bilinear', align_corners=False, antialias=False))
    if color_order not in COLOR_ORDERS:
        raise ValueError(f'color_order must be one of {COLOR_ORDERS}, got {color_order!r}')
    batch = torch.cat(resized, dim=0)
    if color_order == 'bgr':
        batch = batch.flip(1)  # per-channel resize commutes with the channel swap: swap the small image
    batch = normalize(batch, cfg.normalization)
    return batch.to(dtype), [(int(im.shape[0]), int(im.shape[1])) for im in image_list]
