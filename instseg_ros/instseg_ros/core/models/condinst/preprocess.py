"""mmdetection's CondInst test preprocessing (``ms-poly-90k_coco-instance``: Detectron2-aligned,
Pillow resize): keep-ratio resize into (1333, 800) with **Pillow** bilinear on the uint8 image
(mmcv ``imrescale(backend='pillow')``: same sizes as the OpenCV path, different pixels, and
antialiased when shrinking), BGR -> RGB, ``(x - mean) / std`` in float32, zero padding
(bottom/right) of the batch to a multiple of ``size_divisor``."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from instseg_ros.core.models.solov2.preprocess import Batch, check_image
from instseg_ros.core.models.solov2.preprocess import preprocess_batch as solov2_preprocess_batch

__all__ = ['Batch', 'check_image', 'pillow_resize', 'preprocess_batch']


def pillow_resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> uint8 ``[h, w, 3]`` by Pillow's bilinear filter (channels
    independent, so the channel order does not matter)."""
    from PIL import Image
    resample = getattr(Image, 'Resampling', Image).BILINEAR
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((int(size_hw[1]), int(size_hw[0])), resample)
    return np.array(resized)  # a writable copy


def preprocess_batch(images: Sequence[np.ndarray], color_order: str, scale: tuple[int, int],
                     size_divisor: int, mean_rgb: Sequence[float], std_rgb: Sequence[float],
                     device: torch.device) -> Batch:
    """uint8 ``[H, W, 3]`` images (sizes may differ) -> :class:`Batch` (float32 ``[B, 3, Hp, Wp]``
    normalised RGB on ``device``, resized and source sizes): SOLOv2's steps with Pillow's resize."""
    return solov2_preprocess_batch(images, color_order, scale, size_divisor, mean_rgb, std_rgb,
                                   device, resize=pillow_resize)
