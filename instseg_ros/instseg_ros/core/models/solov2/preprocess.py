"""mmdetection's SOLOv2 test preprocessing: keep-ratio resize into ``test_scale`` (long, short)
with OpenCV bilinear on the uint8 image (mmcv ``imrescale``: factor ``min(long / max(h, w),
short / min(h, w))``, sizes ``int(side * factor + 0.5)``), BGR -> RGB, ``(x - mean) / std`` in
float32, zero padding (bottom/right) of the batch to a multiple of ``size_divisor``."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['Batch', 'opencv_resize', 'preprocess_batch', 'resized_shape']


class Batch(NamedTuple):
    """Network input of B images.

    Attributes:
        images: float ``[B, 3, Hp, Wp]`` normalised RGB, zero-padded, on the device.
        resized_hw: per image (height, width) after the resize (before padding).
        source_hw: per image source (height, width).
    """

    images: torch.Tensor
    resized_hw: list[tuple[int, int]]
    source_hw: list[tuple[int, int]]


def resized_shape(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of mmcv's keep-ratio rescale of an image into ``scale`` (long, short edge)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * float(factor) + 0.5), int(width * float(factor) + 0.5)


def check_image(image: np.ndarray, color_order: str) -> None:
    """ValueError unless ``image`` is a non-empty uint8 ``[H, W, 3]`` array and ``color_order``
    is 'bgr' or 'rgb'."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f'{image.dtype} {image.shape}' if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f'expected a uint8 [H, W, 3] image, got {got}')
    if min(image.shape[:2]) < 1:
        raise ValueError(f'empty image {image.shape}')
    if color_order not in ('bgr', 'rgb'):
        raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")


def opencv_resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> uint8 ``[h, w, 3]`` by OpenCV's bilinear filter (mmcv's default)."""
    return cv2.resize(np.ascontiguousarray(image), (int(size_hw[1]), int(size_hw[0])),
                      interpolation=cv2.INTER_LINEAR)


def preprocess_batch(images: Sequence[np.ndarray], color_order: str, scale: tuple[int, int],
                     size_divisor: int, mean_rgb: Sequence[float], std_rgb: Sequence[float],
                     device: torch.device, dtype: torch.dtype = torch.float32,
                     resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray] = opencv_resize
                     ) -> Batch:
    """uint8 ``[H, W, 3]`` images (sizes may differ) -> :class:`Batch` on ``device``; ``resize``
    maps a uint8 image and its new (height, width) to the resized uint8 image."""
    mean = torch.tensor(mean_rgb, dtype=torch.float32, device=device)[:, None, None]
    std = torch.tensor(std_rgb, dtype=torch.float32, device=device)[:, None, None]
    tensors, resized, sources = [], [], []
    for image in images:
        check_image(image, color_order)
        height, width = image.shape[:2]
        new_h, new_w = resized_shape(height, width, scale)
        tensor = torch.from_numpy(resize(image, (new_h, new_w))).to(device).permute(2, 0, 1)
        if color_order == 'bgr':
            tensor = tensor.flip(0)
        tensors.append((tensor.to(torch.float32) - mean) / std)
        resized.append((new_h, new_w))
        sources.append((height, width))
    pad_h = -(-max(h for h, _ in resized) // size_divisor) * size_divisor
    pad_w = -(-max(w for _, w in resized) // size_divisor) * size_divisor
    batch = torch.stack([F.pad(t, (0, pad_w - t.shape[2], 0, pad_h - t.shape[1])) for t in tensors])
    return Batch(batch.to(dtype), resized, sources)
